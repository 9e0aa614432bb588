//! # cbdc-atomizer
//!
//! Ordered settlement. Sentinels send each attested transaction to the shards owning its
//! inputs; each shard checks the inputs it owns at its block height and notifies the
//! atomizer; the atomizer leader gathers notifications until every input is attested and
//! replicates the complete transaction; every `block_interval` it replicates a block cut.
//! Blocks stream to shards (which apply them), to the archiver (which keeps them all) and
//! to the watchtower (which answers status queries).
//!
//! ```text
//!  sentinel ──SubmitTransactions──▶ shards ──Notify──▶ AtomizerService ──▶ Sequencer (leader:
//!     │                              ▲                 (service.rs)         partials, batches,
//!     └──SubmitMints────────────────────────────────────────┘               block ticker)
//!                                    │                                        │ Raft
//!                                    │                                        ▼
//!        watchtower ◀── blocks ── archiver ◀── SubscribeBlocks ◀── AtomizerMachine (every replica)
//! ```
//!
//! Layout:
//! - [`block`]: the stored block and rejection codes;
//! - [`machine`]: [`AtomizerMachine`], the replicated rules (double-spend window, stale
//!   attestations, mint replay, block cuts, pruning);
//! - [`sequencer`]: [`Sequencer`], the leader's in-memory gathering of notifications and
//!   its block clock;
//! - [`service`]: the `cbdc.v1.Atomizer` gRPC service;
//! - [`feed`]: [`follow`], reading blocks in order from the atomizer or the archiver;
//! - [`archiver`]: the block archive on RocksDB and the `cbdc.v1.Archiver` service;
//! - [`watchtower`]: transaction and output status from blocks and error reports, the
//!   `cbdc.v1.Watchtower` service.

pub mod archiver;
pub mod block;
pub mod feed;
pub mod machine;
pub mod sequencer;
pub mod service;
pub mod watchtower;

pub use block::{BlockRejection, RejectCode, StoredBlock};
pub use feed::{follow, BlockSources};
pub use machine::{AtomizerMachine, Candidate, Command, MachineParams, Response, Verdict};

pub use sequencer::{Sequencer, SequencerClient, SequencerParams};
pub use service::AtomizerService;

pub use archiver::{Archiver, ArchiverError, ArchiverParams, ArchiverService};
pub use watchtower::{
    OutputState, StatusBook, TxOutcome, Watchtower, WatchtowerError, WatchtowerParams,
    WatchtowerService,
};
