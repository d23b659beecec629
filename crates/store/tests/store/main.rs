//! The store against a real PostgreSQL: provisioning, the migrator, the
//! drift check and the registry counters.

mod archive;
mod helpers;
mod maintain;
mod migrator;
mod observe;
mod provisioning;
mod registry_counters;
mod roles;
mod search;
mod spans;
mod spares;
mod tenant_context;
mod tls;
