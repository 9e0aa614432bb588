//! Tests of the UHS store against real RocksDB instances in temporary directories.
//!
//! One test binary (modules below) so that RocksDB is linked once.

mod atomizer;
mod common;
mod locking;
mod model;
mod range;
mod snapshot;
mod store;
