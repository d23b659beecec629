//! Per-tenant repositories: each function takes a `&TenantTx`, so it runs
//! in one tenant's schema as that tenant's role, or does not compile.
//! (`outbox` is the exception with a reason: tenants queue emails into a
//! shared table, and the sender reads it.)

pub mod custom_fields;
pub mod invitations;
pub mod outbox;
pub mod password_resets;
pub mod pipeline;
pub mod records;
pub mod saved_views;
pub mod session_cache;
pub mod sessions;
pub mod users;
