//! Listening sockets for the roles a process runs.
//!
//! `cbdc run` binds the addresses in the cluster file. An in-process cluster (`cbdc dev`,
//! tests) reserves its ports when it writes the cluster file and hands the very same
//! sockets to the roles, so no other process can take a port in between.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::error::NodeError;

/// Sockets bound ahead of time, by address; anything else is bound on demand.
#[derive(Default)]
pub struct Listeners {
    /// A `std` mutex: taken briefly while a role starts, never across an await.
    reserved: Mutex<HashMap<SocketAddr, std::net::TcpListener>>,
}

impl Listeners {
    /// Binds every address on demand.
    pub fn on_demand() -> Self {
        Self::default()
    }

    /// Serves on `reserved` where an address matches, binds the rest on demand.
    pub fn reserved(reserved: Vec<std::net::TcpListener>) -> Self {
        let map = reserved
            .into_iter()
            .filter_map(|l| l.local_addr().ok().map(|a| (a, l)))
            .collect();
        Listeners {
            reserved: Mutex::new(map),
        }
    }

    /// A tokio listener on `addr`: the reserved socket if there is one, else a new bind.
    /// Must be called inside a tokio runtime.
    pub fn take(&self, addr: SocketAddr) -> Result<tokio::net::TcpListener, NodeError> {
        let bind_error = |source| NodeError::Bind { addr, source };
        let reserved = self
            .reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr);
        let std_listener = match reserved {
            Some(l) => l,
            None => std::net::TcpListener::bind(addr).map_err(bind_error)?,
        };
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        tokio::net::TcpListener::from_std(std_listener).map_err(bind_error)
    }
}
