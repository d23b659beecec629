//! The names of tenant and spare schemas and of their roles: one place,
//! so that the registry, the migrator, provisioning, the spare pool and
//! the role setup agree without importing one another.

/// A tenant schema's name as a PostgreSQL regular expression, for
/// catalog queries that look at every tenant schema of a cluster.
pub const TENANT_SCHEMA_PATTERN: &str = "^tenant_[1-9][0-9]*$";

/// `tenant_<digits>`: the only shape a tenant schema name can have.
pub fn is_tenant_schema_name(name: &str) -> bool {
    name.strip_prefix("tenant_")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// A tenant's schema: `tenant_<id>`.
pub fn tenant_schema_name(tenant_id: i32) -> String {
    format!("tenant_{tenant_id}")
}

/// The database role through which the application reaches one tenant's
/// data. The per-database prefix keeps two databases on one server apart.
pub fn tenant_role_name(role_prefix: &str, tenant_id: i32) -> String {
    format!("{role_prefix}_tenant_{tenant_id}")
}

/// The group every tenant role belongs to: it may reach the tenant's own
/// rows of the registry tables a tenant transaction touches (row-level
/// security keyed to the current role).
pub fn tenant_group_role(role_prefix: &str) -> String {
    format!("{role_prefix}_tenants")
}

pub fn spare_schema_name(id: i32) -> String {
    format!("spare_{id}")
}

pub fn spare_role_name(role_prefix: &str, id: i32) -> String {
    format!("{role_prefix}_spare_{id}")
}
