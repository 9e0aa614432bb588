//! openraft's own storage conformance suite against the real RocksDB stores in a temp dir.

use cbdc_consensus::storage::open_db;
use cbdc_consensus::testkit::KvStateMachine;
use cbdc_consensus::{typ, LogStore, StateMachineStore, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageIOError;
use tempfile::TempDir;

struct RocksBuilder;

fn io(e: impl std::error::Error + 'static) -> typ::StorageError {
    StorageIOError::write(openraft::AnyError::new(&e)).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<KvStateMachine>, TempDir>
    for RocksBuilder
{
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore<KvStateMachine>), typ::StorageError> {
        let dir = TempDir::new().map_err(io)?;
        let db = open_db::<KvStateMachine>(dir.path()).map_err(io)?;
        let sm = KvStateMachine::new(db.clone()).map_err(io)?;
        let sm_store = StateMachineStore::new(db.clone(), sm).map_err(io)?;
        let log_store = LogStore::new(db).map_err(io)?;
        Ok((dir, log_store, sm_store))
    }
}

#[test]
fn test_log_store_conformance_suite() -> anyhow::Result<()> {
    Suite::test_all(RocksBuilder)?;
    Ok(())
}
