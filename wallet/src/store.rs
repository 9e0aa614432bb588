//! The wallet file: one SQLite database holding keys, outputs, the history of sends and
//! receipts, and the wallet's configuration.
//!
//! Why SQLite: every change that touches money is several rows (mark inputs, record the
//! send, add change), and a crash between them must leave either all or none. Each
//! multi-step change therefore runs in one `BEGIN IMMEDIATE` transaction ([`Store::write`]),
//! which also serializes two `cbdc-wallet` processes working on the same file, so that two
//! concurrent sends can never select the same output. The database is opened with
//! `synchronous = FULL` in rollback-journal mode: a committed change is on disk, and the
//! wallet stays a single file.
//!
//! Schema (version 1):
//!
//! | table | rows |
//! |---|---|
//! | `meta` | `format = cbdc-wallet`, `schema_version = 1`, `sentinel` (optional endpoint) |
//! | `keys` | one ed25519 key per address: seed, public key, commitment, purpose |
//! | `outputs` | outputs this wallet can spend: outpoint, value, key, UHS id, state, spending tx |
//! | `sends` | every transaction this wallet submitted (send, mint, fan): the signed bytes, the payment, status |
//! | `receipts` | every payment received: tx id, amount, payment, status |
//!
//! Values are stored as SQLite integers (`i64` cents), so an amount above
//! `i64::MAX` cents is refused with [`StoreError::TooLarge`]; sums are taken in Rust with
//! checked arithmetic, never by SQL.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cbdc_core::{
    Amount, Decode, Encode, Hash, OutPoint, PublicKey, SecretKey, Transaction, TxId, UhsId,
    WitnessProgram,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

/// The value of `meta.format` in every wallet file.
pub const FORMAT: &str = "cbdc-wallet";
/// The schema this software writes and reads.
pub const SCHEMA_VERSION: i64 = 1;
/// How long a command waits for another process holding the wallet's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE keys (
    id         INTEGER PRIMARY KEY,
    secret     BLOB NOT NULL CHECK (length(secret) = 32),
    public     BLOB NOT NULL UNIQUE CHECK (length(public) = 32),
    commitment BLOB NOT NULL UNIQUE CHECK (length(commitment) = 32),
    purpose    TEXT NOT NULL CHECK (purpose IN ('receive', 'change')),
    created_at INTEGER NOT NULL
);
CREATE TABLE outputs (
    tx_id      BLOB NOT NULL CHECK (length(tx_id) = 32),
    idx        INTEGER NOT NULL CHECK (idx >= 0),
    value      INTEGER NOT NULL CHECK (value > 0),
    key_id     INTEGER NOT NULL REFERENCES keys (id),
    uhs_id     BLOB NOT NULL UNIQUE CHECK (length(uhs_id) = 32),
    state      TEXT NOT NULL
               CHECK (state IN ('unspent', 'pending_spend', 'spent', 'pending_receive')),
    spend_tx   BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tx_id, idx)
);
CREATE INDEX outputs_by_state ON outputs (state);
CREATE INDEX outputs_by_spend_tx ON outputs (spend_tx);
CREATE TABLE sends (
    tx_id      BLOB PRIMARY KEY CHECK (length(tx_id) = 32),
    kind       TEXT NOT NULL CHECK (kind IN ('send', 'mint', 'fan')),
    amount     INTEGER NOT NULL,
    recipient  TEXT NOT NULL,
    outputs    INTEGER NOT NULL,
    tx         BLOB NOT NULL,
    payment    TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected', 'abandoned')),
    detail     TEXT,
    seq        INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX sends_by_status ON sends (status);
CREATE TABLE receipts (
    tx_id      BLOB PRIMARY KEY CHECK (length(tx_id) = 32),
    amount     INTEGER NOT NULL,
    outputs    INTEGER NOT NULL,
    payment    TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'failed')),
    detail     TEXT,
    seq        INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('history_seq', 0);
";

/// Why the wallet file could not be created, opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `init` on a path that already exists: a wallet is never overwritten.
    #[error(
        "{path} already exists; refusing to overwrite a wallet (choose another --wallet path)"
    )]
    Exists {
        /// The wallet path.
        path: PathBuf,
    },
    /// No wallet at the path.
    #[error("no wallet at {path} (create one with `cbdc-wallet init`, or pass --wallet PATH)")]
    Missing {
        /// The wallet path.
        path: PathBuf,
    },
    /// The file is damaged or is not a database at all.
    #[error("wallet file {path} is corrupt: {detail}")]
    Corrupt {
        /// The wallet path.
        path: PathBuf,
        /// What SQLite or the integrity check said.
        detail: String,
    },
    /// A valid database that is not a cbdc wallet.
    #[error("{path} is not a cbdc wallet")]
    NotAWallet {
        /// The path.
        path: PathBuf,
    },
    /// A wallet written by another version of this software.
    #[error("wallet {path} has schema version {found}; this cbdc-wallet reads version 1")]
    UnsupportedVersion {
        /// The path.
        path: PathBuf,
        /// The version found.
        found: String,
    },
    /// A row that does not hold what the schema promises (a key of the wrong length, an
    /// undecodable transaction).
    #[error("wallet data is damaged: {0}")]
    Damaged(String),
    /// An amount above `i64::MAX` cents, which this file format cannot hold.
    #[error("amount {0} is too large for the wallet file")]
    TooLarge(Amount),
    /// Creating the file failed.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Any other SQLite failure (disk full, locked for longer than the busy timeout…).
    #[error("wallet database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a key is for. Change keys are never shown as addresses, but are otherwise the
/// same: every output has its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Handed out by `address`.
    Receive,
    /// Receives the change of a send.
    Change,
}

/// Where one of this wallet's outputs stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputState {
    /// On the ledger and free to spend.
    Unspent,
    /// An input of a send that is not settled yet; never selected again until the send
    /// is settled.
    PendingSpend,
    /// Spent (kept for history).
    Spent,
    /// Received from a payment whose transaction the ledger has not settled yet.
    PendingReceive,
}

/// Which kind of transaction a send record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// A payment to one address (plus change).
    Send,
    /// An issuance signed with the issuer key.
    Mint,
    /// Many equal outputs to one address in one transaction.
    Fan,
}

/// Where a submitted transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Recorded and submitted (or about to be); its inputs are locked in the wallet.
    Pending,
    /// Settled.
    Confirmed,
    /// Refused by the ledger or by validation; its inputs were returned.
    Rejected,
    /// The ledger never saw it (its inputs were still unspent and it was unknown), so its
    /// inputs were returned. Re-checked by every `sync`, in case it arrives late.
    Abandoned,
}

/// Where a received payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// Some outputs wait for the ledger to settle their transaction.
    Pending,
    /// Its outputs were found unspent and credited.
    Confirmed,
    /// None of its outputs turned out to exist.
    Failed,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            /// The name stored in the wallet file and shown to users.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }

            fn parse(text: &str) -> Result<Self> {
                match text {
                    $($text => Ok($ty::$variant),)*
                    other => Err(StoreError::Damaged(format!(
                        "unknown {} {other:?}", stringify!($ty)
                    ))),
                }
            }
        }
    };
}

text_enum!(KeyPurpose { Receive => "receive", Change => "change" });
text_enum!(OutputState {
    Unspent => "unspent",
    PendingSpend => "pending_spend",
    Spent => "spent",
    PendingReceive => "pending_receive",
});
text_enum!(SendKind { Send => "send", Mint => "mint", Fan => "fan" });
text_enum!(SendStatus {
    Pending => "pending",
    Confirmed => "confirmed",
    Rejected => "rejected",
    Abandoned => "abandoned",
});
text_enum!(ReceiptStatus {
    Pending => "pending",
    Confirmed => "confirmed",
    Failed => "failed",
});

/// One key of the wallet.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// Row id, referenced by outputs.
    pub id: i64,
    /// The signing key.
    pub secret: SecretKey,
    /// What it is for.
    pub purpose: KeyPurpose,
}

impl KeyRecord {
    /// The program outputs paying this key are locked to.
    pub fn program(&self) -> WitnessProgram {
        WitnessProgram::P2pk(self.secret.public_key())
    }
}

/// One output this wallet can spend (or spent, or waits for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Where it was created.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// The key that spends it.
    pub key_id: i64,
    /// Its id in the ledger's unspent set.
    pub uhs_id: UhsId,
    /// Where it stands.
    pub state: OutputState,
    /// The send that spends it (pending or settled), if any.
    pub spend_tx: Option<TxId>,
}

/// A transaction this wallet submitted.
#[derive(Debug, Clone)]
pub struct SendRecord {
    /// Its id.
    pub tx_id: TxId,
    /// Send, mint or fan.
    pub kind: SendKind,
    /// What it pays to the recipient (without change).
    pub amount: Amount,
    /// The recipient's address.
    pub recipient: String,
    /// How many outputs pay the recipient.
    pub outputs: u32,
    /// The signed transaction, kept so that `sync` can settle it and resubmit it.
    pub tx: Transaction,
    /// The payment string for the recipient.
    pub payment: String,
    /// Where it stands.
    pub status: SendStatus,
    /// Rejection reason or note.
    pub detail: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Order in the history.
    pub seq: i64,
}

/// A payment this wallet received.
#[derive(Debug, Clone)]
pub struct ReceiptRecord {
    /// The paying transaction.
    pub tx_id: TxId,
    /// What it credited (or will, once pending outputs settle).
    pub amount: Amount,
    /// How many outputs were for this wallet.
    pub outputs: u32,
    /// The payment string as received.
    pub payment: String,
    /// Where it stands.
    pub status: ReceiptStatus,
    /// A note (outputs that were not found).
    pub detail: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Order in the history.
    pub seq: i64,
}

/// The wallet file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn cents(amount: Amount) -> Result<i64> {
    i64::try_from(amount.cents()).map_err(|_| StoreError::TooLarge(amount))
}

fn amount(cents: i64) -> Result<Amount> {
    u64::try_from(cents)
        .map(Amount::from_cents)
        .map_err(|_| StoreError::Damaged(format!("negative amount {cents}")))
}

fn hash(bytes: &[u8], what: &str) -> Result<Hash> {
    Hash::from_slice(bytes)
        .ok_or_else(|| StoreError::Damaged(format!("{what} has {} bytes", bytes.len())))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

impl Store {
    /// Creates a new wallet file at `path` (readable by its owner only: it holds secret
    /// keys). Refuses if anything exists at `path`.
    pub fn create(path: &Path) -> Result<Store> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(file) => drop(file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        let result = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(StoreError::from)
            .and_then(|conn| Store::initialize(conn, path));
        if result.is_err() {
            // Leave nothing half-made behind: the file was created by us just now.
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// A wallet that lives in memory only (tests, dry runs).
    pub fn create_in_memory() -> Result<Store> {
        Store::initialize(Connection::open_in_memory()?, Path::new(":memory:"))
    }

    fn initialize(mut conn: Connection, path: &Path) -> Result<Store> {
        configure(&conn)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('format', ?1), ('schema_version', ?2)",
            params![FORMAT, SCHEMA_VERSION.to_string()],
        )?;
        tx.commit()?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing wallet, checking that it is an intact cbdc wallet of this
    /// schema version.
    pub fn open(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| corrupt(e.to_string()))?;
        configure(&conn).map_err(|e| corrupt(e.to_string()))?;
        // quick_check reads every page: cheap for a wallet, and it turns a damaged file
        // into one clear error instead of odd failures later.
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| corrupt(e.to_string()))?;
        if check != "ok" {
            return Err(corrupt(check));
        }
        let format: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |row| {
                row.get(0)
            })
            .optional()
            .unwrap_or(None);
        if format.as_deref() != Some(FORMAT) {
            return Err(StoreError::NotAWallet {
                path: path.to_path_buf(),
            });
        }
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| corrupt(e.to_string()))?;
        if version.as_deref() != Some(SCHEMA_VERSION.to_string().as_str()) {
            return Err(StoreError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version.unwrap_or_else(|| "none".into()),
            });
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Where the wallet lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction: all of its changes are committed together, or,
    /// if it fails, none. Takes the write lock at once (`BEGIN IMMEDIATE`), so reads
    /// inside `f` see data no other process can change before the commit.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&StoreTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let value = f(&StoreTx { tx: &tx })?;
        tx.commit().map_err(StoreError::from)?;
        Ok(value)
    }

    /// Runs `f` on a consistent snapshot, changing nothing.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&StoreTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // `&self` is enough: the connection is not shared across threads (`Store` is not
        // `Sync`), and a transaction in progress would make BEGIN fail loudly.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .map_err(StoreError::from)?;
        let value = f(&StoreTx { tx: &tx })?;
        // A read-only transaction: rolling back and committing are the same.
        tx.rollback().map_err(StoreError::from)?;
        Ok(value)
    }
}

/// The operations on the wallet file, inside one transaction (see [`Store::write`]).
pub struct StoreTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

const OUTPUT_COLUMNS: &str = "tx_id, idx, value, key_id, uhs_id, state, spend_tx";
const SEND_COLUMNS: &str =
    "tx_id, kind, amount, recipient, outputs, tx, payment, status, detail, created_at, seq";
const RECEIPT_COLUMNS: &str = "tx_id, amount, outputs, payment, status, detail, created_at, seq";

fn output_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawOutput> {
    Ok(RawOutput {
        tx_id: row.get(0)?,
        idx: row.get(1)?,
        value: row.get(2)?,
        key_id: row.get(3)?,
        uhs_id: row.get(4)?,
        state: row.get(5)?,
        spend_tx: row.get(6)?,
    })
}

/// An output row before its fields are checked.
struct RawOutput {
    tx_id: Vec<u8>,
    idx: i64,
    value: i64,
    key_id: i64,
    uhs_id: Vec<u8>,
    state: String,
    spend_tx: Option<Vec<u8>>,
}

impl RawOutput {
    fn check(self) -> Result<OutputRecord> {
        Ok(OutputRecord {
            outpoint: OutPoint {
                tx_id: TxId(hash(&self.tx_id, "output tx id")?),
                index: u32::try_from(self.idx)
                    .map_err(|_| StoreError::Damaged(format!("output index {}", self.idx)))?,
            },
            value: amount(self.value)?,
            key_id: self.key_id,
            uhs_id: UhsId(hash(&self.uhs_id, "uhs id")?),
            state: OutputState::parse(&self.state)?,
            spend_tx: self
                .spend_tx
                .map(|b| hash(&b, "spending tx id").map(TxId))
                .transpose()?,
        })
    }
}

/// A send row before its fields are checked.
struct RawSend {
    tx_id: Vec<u8>,
    kind: String,
    amount: i64,
    recipient: String,
    outputs: i64,
    tx: Vec<u8>,
    payment: String,
    status: String,
    detail: Option<String>,
    created_at: i64,
    seq: i64,
}

fn send_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawSend> {
    Ok(RawSend {
        tx_id: row.get(0)?,
        kind: row.get(1)?,
        amount: row.get(2)?,
        recipient: row.get(3)?,
        outputs: row.get(4)?,
        tx: row.get(5)?,
        payment: row.get(6)?,
        status: row.get(7)?,
        detail: row.get(8)?,
        created_at: row.get(9)?,
        seq: row.get(10)?,
    })
}

impl RawSend {
    fn check(self) -> Result<SendRecord> {
        let tx = Transaction::decode(&self.tx)
            .map_err(|e| StoreError::Damaged(format!("stored transaction: {e}")))?;
        let tx_id = TxId(hash(&self.tx_id, "send tx id")?);
        if tx.tx_id() != tx_id {
            return Err(StoreError::Damaged(format!(
                "stored transaction does not match its id {tx_id}"
            )));
        }
        Ok(SendRecord {
            tx_id,
            kind: SendKind::parse(&self.kind)?,
            amount: amount(self.amount)?,
            recipient: self.recipient,
            outputs: u32::try_from(self.outputs)
                .map_err(|_| StoreError::Damaged("send output count".into()))?,
            tx,
            payment: self.payment,
            status: SendStatus::parse(&self.status)?,
            detail: self.detail,
            created_at: self.created_at,
            seq: self.seq,
        })
    }
}

/// A receipt row before its fields are checked.
struct RawReceipt {
    tx_id: Vec<u8>,
    amount: i64,
    outputs: i64,
    payment: String,
    status: String,
    detail: Option<String>,
    created_at: i64,
    seq: i64,
}

fn receipt_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawReceipt> {
    Ok(RawReceipt {
        tx_id: row.get(0)?,
        amount: row.get(1)?,
        outputs: row.get(2)?,
        payment: row.get(3)?,
        status: row.get(4)?,
        detail: row.get(5)?,
        created_at: row.get(6)?,
        seq: row.get(7)?,
    })
}

impl RawReceipt {
    fn check(self) -> Result<ReceiptRecord> {
        Ok(ReceiptRecord {
            tx_id: TxId(hash(&self.tx_id, "receipt tx id")?),
            amount: amount(self.amount)?,
            outputs: u32::try_from(self.outputs)
                .map_err(|_| StoreError::Damaged("receipt output count".into()))?,
            payment: self.payment,
            status: ReceiptStatus::parse(&self.status)?,
            detail: self.detail,
            created_at: self.created_at,
            seq: self.seq,
        })
    }
}

impl StoreTx<'_> {
    /// A configuration value (`sentinel`).
    pub fn config(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![format!("config.{key}")],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Sets a configuration value.
    pub fn set_config(&self, key: &str, value: &str) -> Result<()> {
        self.tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![format!("config.{key}"), value],
        )?;
        Ok(())
    }

    /// Generates and stores a fresh key.
    pub fn new_key(&self, purpose: KeyPurpose) -> Result<KeyRecord> {
        let secret = SecretKey::generate(&mut rand::rngs::OsRng);
        let public = secret.public_key();
        let commitment = WitnessProgram::P2pk(public).commitment();
        self.tx.execute(
            "INSERT INTO keys (secret, public, commitment, purpose, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                secret.to_bytes().as_slice(),
                public.0.as_slice(),
                commitment.as_bytes().as_slice(),
                purpose.as_str(),
                now()
            ],
        )?;
        Ok(KeyRecord {
            id: self.tx.last_insert_rowid(),
            secret,
            purpose,
        })
    }

    fn key_where(&self, clause: &str, value: &dyn rusqlite::ToSql) -> Result<Option<KeyRecord>> {
        let row: Option<(i64, Vec<u8>, Vec<u8>, String)> = self
            .tx
            .query_row(
                &format!("SELECT id, secret, public, purpose FROM keys WHERE {clause}"),
                [value],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?;
        let Some((id, secret, public, purpose)) = row else {
            return Ok(None);
        };
        let seed: [u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Damaged(format!("key {id} has a malformed seed")))?;
        let secret = SecretKey::from_bytes(&seed);
        if secret.public_key().0.as_slice() != public.as_slice() {
            return Err(StoreError::Damaged(format!(
                "key {id} does not match its public key"
            )));
        }
        Ok(Some(KeyRecord {
            id,
            secret,
            purpose: KeyPurpose::parse(&purpose)?,
        }))
    }

    /// The key with row id `id`.
    pub fn key(&self, id: i64) -> Result<KeyRecord> {
        self.key_where("id = ?1", &id)?
            .ok_or_else(|| StoreError::Damaged(format!("output refers to missing key {id}")))
    }

    /// The key whose outputs carry `commitment`, if this wallet has it.
    pub fn key_for_commitment(&self, commitment: &Hash) -> Result<Option<KeyRecord>> {
        self.key_where("commitment = ?1", &commitment.as_bytes().as_slice())
    }

    /// Public keys of every key, in creation order.
    pub fn public_keys(&self, purpose: KeyPurpose) -> Result<Vec<PublicKey>> {
        let mut stmt = self
            .tx
            .prepare("SELECT public FROM keys WHERE purpose = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![purpose.as_str()], |row| row.get::<_, Vec<u8>>(0))?;
        rows.map(|r| {
            let bytes = r?;
            hash(&bytes, "public key").map(|h| PublicKey(h.0))
        })
        .collect()
    }

    /// Adds an output, or, if it is already known as pending receipt, sets its state.
    /// Returns whether anything changed (an output already settled is left alone, which
    /// makes settling a confirmed transaction twice harmless).
    pub fn upsert_output(&self, output: &OutputRecord) -> Result<bool> {
        let changed = self.tx.execute(
            &format!(
                "INSERT INTO outputs ({OUTPUT_COLUMNS}, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (tx_id, idx) DO UPDATE SET state = excluded.state
                 WHERE outputs.state = 'pending_receive' AND excluded.state != 'pending_receive'"
            ),
            params![
                output.outpoint.tx_id.as_bytes().as_slice(),
                output.outpoint.index,
                cents(output.value)?,
                output.key_id,
                output.uhs_id.as_bytes().as_slice(),
                output.state.as_str(),
                output.spend_tx.map(|t| t.as_bytes().to_vec()),
                now()
            ],
        )?;
        Ok(changed > 0)
    }

    /// The output created at `outpoint`, if this wallet has it.
    pub fn output(&self, outpoint: &OutPoint) -> Result<Option<OutputRecord>> {
        self.tx
            .query_row(
                &format!("SELECT {OUTPUT_COLUMNS} FROM outputs WHERE tx_id = ?1 AND idx = ?2"),
                params![outpoint.tx_id.as_bytes().as_slice(), outpoint.index],
                output_row,
            )
            .optional()?
            .map(RawOutput::check)
            .transpose()
    }

    /// Every output in `state`, largest first (ties by age), which is the order coin
    /// selection wants.
    pub fn outputs_in_state(&self, state: OutputState) -> Result<Vec<OutputRecord>> {
        self.outputs_where("state = ?1", &state.as_str())
    }

    /// The outputs created by transaction `tx_id`.
    pub fn outputs_of_tx(&self, tx_id: &TxId) -> Result<Vec<OutputRecord>> {
        self.outputs_where("tx_id = ?1", &tx_id.as_bytes().as_slice())
    }

    fn outputs_where(
        &self,
        clause: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Vec<OutputRecord>> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {OUTPUT_COLUMNS} FROM outputs WHERE {clause}
             ORDER BY value DESC, created_at, tx_id, idx"
        ))?;
        let rows = stmt.query_map([value], output_row)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(RawOutput::check))
            .collect()
    }

    /// Sets an output's state and spending transaction, but only if it is currently in
    /// one of `from` (so that a stale decision never overrides a newer one). Returns
    /// whether it changed.
    pub fn set_output_state(
        &self,
        outpoint: &OutPoint,
        from: &[OutputState],
        to: OutputState,
        spend_tx: Option<&TxId>,
    ) -> Result<bool> {
        let allowed: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let changed = self.tx.execute(
            &format!(
                "UPDATE outputs SET state = ?1, spend_tx = ?2
                 WHERE tx_id = ?3 AND idx = ?4 AND state IN ({})",
                allowed.join(", ")
            ),
            params![
                to.as_str(),
                spend_tx.map(|t| t.as_bytes().to_vec()),
                outpoint.tx_id.as_bytes().as_slice(),
                outpoint.index
            ],
        )?;
        Ok(changed > 0)
    }

    /// Removes an output that turned out not to exist (a pending receipt the ledger
    /// never settled).
    pub fn delete_output(&self, outpoint: &OutPoint) -> Result<()> {
        self.tx.execute(
            "DELETE FROM outputs WHERE tx_id = ?1 AND idx = ?2",
            params![outpoint.tx_id.as_bytes().as_slice(), outpoint.index],
        )?;
        Ok(())
    }

    fn next_seq(&self) -> Result<i64> {
        Ok(self.tx.query_row(
            "UPDATE counters SET value = value + 1 WHERE name = 'history_seq' RETURNING value",
            [],
            |row| row.get(0),
        )?)
    }

    /// Records a send (fails if a send with its id exists).
    pub fn insert_send(&self, send: &SendRecord) -> Result<()> {
        let seq = self.next_seq()?;
        let at = now();
        self.tx.execute(
            &format!(
                "INSERT INTO sends ({SEND_COLUMNS}, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10)"
            ),
            params![
                send.tx_id.as_bytes().as_slice(),
                send.kind.as_str(),
                cents(send.amount)?,
                send.recipient,
                send.outputs,
                send.tx.encode(),
                send.payment,
                send.status.as_str(),
                send.detail,
                at,
                seq
            ],
        )?;
        Ok(())
    }

    /// The send with id `tx_id`.
    pub fn send(&self, tx_id: &TxId) -> Result<Option<SendRecord>> {
        self.tx
            .query_row(
                &format!("SELECT {SEND_COLUMNS} FROM sends WHERE tx_id = ?1"),
                params![tx_id.as_bytes().as_slice()],
                send_row,
            )
            .optional()?
            .map(RawSend::check)
            .transpose()
    }

    /// Sends in `status`, oldest first.
    pub fn sends_in_status(&self, status: SendStatus) -> Result<Vec<SendRecord>> {
        self.sends_where("WHERE status = ?1", &[&status.as_str()])
    }

    /// Every send, oldest first.
    pub fn sends(&self) -> Result<Vec<SendRecord>> {
        self.sends_where("", &[])
    }

    fn sends_where(
        &self,
        clause: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<SendRecord>> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {SEND_COLUMNS} FROM sends {clause} ORDER BY seq"
        ))?;
        let rows = stmt.query_map(values, send_row)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(RawSend::check))
            .collect()
    }

    /// Sets a send's status and note, but only if its status is one of `from`, so that a
    /// decision taken on stale information (another process settled the send meanwhile)
    /// never overrides a newer one. Returns whether it changed.
    pub fn set_send_status(
        &self,
        tx_id: &TxId,
        from: &[SendStatus],
        status: SendStatus,
        detail: Option<&str>,
    ) -> Result<bool> {
        let allowed: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let changed = self.tx.execute(
            &format!(
                "UPDATE sends SET status = ?1, detail = ?2, updated_at = ?3
                 WHERE tx_id = ?4 AND status IN ({})",
                allowed.join(", ")
            ),
            params![status.as_str(), detail, now(), tx_id.as_bytes().as_slice()],
        )?;
        Ok(changed > 0)
    }

    /// Records a receipt. Returns `false` (and changes nothing) if one with its tx id
    /// exists.
    pub fn insert_receipt(&self, receipt: &ReceiptRecord) -> Result<bool> {
        if self.receipt(&receipt.tx_id)?.is_some() {
            return Ok(false);
        }
        let seq = self.next_seq()?;
        let at = now();
        self.tx.execute(
            &format!(
                "INSERT INTO receipts ({RECEIPT_COLUMNS}, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7)"
            ),
            params![
                receipt.tx_id.as_bytes().as_slice(),
                cents(receipt.amount)?,
                receipt.outputs,
                receipt.payment,
                receipt.status.as_str(),
                receipt.detail,
                at,
                seq
            ],
        )?;
        Ok(true)
    }

    /// The receipt for `tx_id`.
    pub fn receipt(&self, tx_id: &TxId) -> Result<Option<ReceiptRecord>> {
        self.tx
            .query_row(
                &format!("SELECT {RECEIPT_COLUMNS} FROM receipts WHERE tx_id = ?1"),
                params![tx_id.as_bytes().as_slice()],
                receipt_row,
            )
            .optional()?
            .map(RawReceipt::check)
            .transpose()
    }

    /// Receipts in `status`, oldest first.
    pub fn receipts_in_status(&self, status: ReceiptStatus) -> Result<Vec<ReceiptRecord>> {
        self.receipts_where("WHERE status = ?1", &[&status.as_str()])
    }

    /// Every receipt, oldest first.
    pub fn receipts(&self) -> Result<Vec<ReceiptRecord>> {
        self.receipts_where("", &[])
    }

    fn receipts_where(
        &self,
        clause: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ReceiptRecord>> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts {clause} ORDER BY seq"
        ))?;
        let rows = stmt.query_map(values, receipt_row)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(RawReceipt::check))
            .collect()
    }

    /// Updates a receipt's status, amount and note.
    pub fn update_receipt(
        &self,
        tx_id: &TxId,
        status: ReceiptStatus,
        amount: Amount,
        detail: Option<&str>,
    ) -> Result<()> {
        self.tx.execute(
            "UPDATE receipts SET status = ?1, amount = ?2, detail = ?3, updated_at = ?4
             WHERE tx_id = ?5",
            params![
                status.as_str(),
                cents(amount)?,
                detail,
                now(),
                tx_id.as_bytes().as_slice()
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_store_create_refuses_overwrite_and_open_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut store = Store::create(&path).unwrap();
        store
            .write(|t| t.set_config("sentinel", "127.0.0.1:1"))
            .unwrap();
        drop(store);
        assert!(matches!(
            Store::create(&path),
            Err(StoreError::Exists { .. })
        ));
        let store = Store::open(&path).unwrap();
        let sentinel = store.read(|t| t.config("sentinel")).unwrap();
        assert_eq!(sentinel.as_deref(), Some("127.0.0.1:1"));

        let missing = dir.path().join("none.db");
        assert!(matches!(
            Store::open(&missing),
            Err(StoreError::Missing { .. })
        ));
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        assert!(matches!(
            Store::open(&garbage),
            Err(StoreError::Corrupt { .. })
        ));
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER);")
            .unwrap();
        assert!(matches!(
            Store::open(&other),
            Err(StoreError::NotAWallet { .. })
        ));
    }

    #[test]
    fn test_store_detects_truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut store = Store::create(&path).unwrap();
        store
            .write(|t| {
                for _ in 0..50 {
                    t.new_key(KeyPurpose::Receive)?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn test_store_write_rolls_back_on_error() {
        let mut store = Store::create_in_memory().unwrap();
        let failed: Result<()> = store.write(|t| {
            t.new_key(KeyPurpose::Receive)?;
            Err(StoreError::Damaged("stop".into()))
        });
        assert!(failed.is_err());
        let keys = store.read(|t| t.public_keys(KeyPurpose::Receive)).unwrap();
        assert!(keys.is_empty());
    }

    #[test]
    fn test_store_keys_round_trip() {
        let mut store = Store::create_in_memory().unwrap();
        let key = store.write(|t| t.new_key(KeyPurpose::Change)).unwrap();
        let commitment = key.program().commitment();
        let found = store
            .read(|t| t.key_for_commitment(&commitment))
            .unwrap()
            .unwrap();
        assert_eq!(found.id, key.id);
        assert_eq!(found.secret.to_bytes(), key.secret.to_bytes());
        assert_eq!(found.purpose, KeyPurpose::Change);
        assert!(store
            .read(|t| t.key_for_commitment(&Hash([1; 32])))
            .unwrap()
            .is_none());
    }
}
