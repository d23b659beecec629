//! What the operator does to many tenants at once: migrate, move, provision
//! (with the pool of spare schemas), check for drift, maintain, archive
//! and back up, set up roles, and read the database's statistics per
//! tenant. Each works through the registry; none takes a tenant's role.

pub mod archive;
pub mod backup;
pub mod capacity;
pub mod check;
pub mod index_health;
pub mod maintain;
pub mod migrate;
pub mod moving;
pub mod observe;
pub mod provision;
pub mod roles;
pub mod servers;
pub mod spares;
pub mod tenant_metrics;
