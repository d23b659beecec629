//! The connection machinery: the pool and its lanes, plain and tenant
//! transactions, TLS, the embedded cluster of the default setup, and the
//! database time a request spends.

pub(crate) mod database;
pub mod db_time;
pub mod embedded;
pub mod fleet;
pub(crate) mod listener;
pub(crate) mod pool;
pub(crate) mod tenant;
pub mod tls;
pub(crate) mod tx;
