//! The database roles of a production install (`atrium db roles`).
//!
//! - `atrium_application`: the server's login. NOINHERIT and a member of
//!   every tenant role, so it reaches a tenant's data only by switching to
//!   that tenant's role inside a tenant transaction; of its own it may read
//!   the registry, claim and mark queued emails, and nothing else: no DDL,
//!   no tenant rows.
//! - `atrium_readonly`: reporting; reads everything (`pg_read_all_data`),
//!   writes nothing.
//! - `atrium_backup`: `pg_dump`; reads everything.
//! - `atrium_admin`: migrations and provisioning; creates schemas and roles.
//!
//! Every statement is idempotent: the command can run again after each
//! upgrade, and grants the application role the tenant roles made since.

use crate::AdminDatabase;
use crate::Database;
use crate::connection::database::quote_ident;
use crate::registry::naming::{tenant_group_role, tenant_role_name};

pub const APPLICATION: &str = "atrium_application";
pub const READONLY: &str = "atrium_readonly";
pub const BACKUP: &str = "atrium_backup";
pub const ADMIN: &str = "atrium_admin";

/// Why the login of `db` is too powerful to serve requests with: it is a
/// superuser, may create roles, or owns the tenant tables (through
/// membership too). Empty for `atrium_application`. Requests must run
/// with a login whose own rights are nothing but the registry: then a
/// query mistake in tenant context is refused by PostgreSQL instead of
/// reaching other tenants or changing the schema.
pub async fn excess_privileges(db: &Database) -> anyhow::Result<Vec<String>> {
    let session = db.connection().await?;
    let row = session
        .query_one(
            "SELECT r.rolname::text, r.rolsuper, r.rolcreaterole,
                    EXISTS (SELECT 1 FROM pg_class c
                             JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = 'template' AND c.relkind = 'r'
                              AND pg_has_role(r.oid, c.relowner, 'USAGE'))
               FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let (name, superuser, createrole, owner): (String, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let mut excess = Vec::new();
    if superuser {
        excess.push(format!("{name} is a superuser"));
    }
    if createrole {
        excess.push(format!("{name} has CREATEROLE"));
    }
    if owner {
        excess.push(format!("{name} owns the tenant tables"));
    }
    Ok(excess)
}

#[derive(Debug, Default, serde::Serialize)]
pub struct RolesReport {
    pub created: Vec<String>,
    pub tenant_roles_granted: usize,
}

/// Creates or updates the four roles and their grants in this database.
/// Needs a superuser (or a role with CREATEROLE that owns the registry).
pub async fn ensure(admin: &AdminDatabase) -> anyhow::Result<RolesReport> {
    let db = admin.database();
    let session = db.connection().await?;
    let mut report = RolesReport::default();
    let roles = [
        (APPLICATION, "LOGIN NOINHERIT"),
        (READONLY, "LOGIN"),
        (BACKUP, "LOGIN BYPASSRLS"),
        (ADMIN, "LOGIN CREATEROLE"),
    ];
    for (role, options) in roles {
        let exists = session
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await?
            .is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        session
            .batch_execute(&format!("{verb} ROLE {} {options}", quote_ident(role)))
            .await?;
        if !exists {
            report.created.push(role.to_owned());
        }
    }
    let database: String = session
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    let prefix = crate::registry::role_prefix(&session).await?;
    let database = quote_ident(&database);
    session
        .batch_execute(&format!(
            "BEGIN;
             SET LOCAL client_min_messages = warning;
             GRANT CONNECT ON DATABASE {database} TO {APPLICATION}, {READONLY}, {BACKUP}, {ADMIN};
             GRANT CREATE ON DATABASE {database} TO {ADMIN};
             GRANT pg_read_all_data TO {READONLY}, {BACKUP};
             GRANT USAGE ON SCHEMA public, shared, extensions, template TO {APPLICATION};
             GRANT SELECT ON public.tenants, public.installation, public.tenant_counters,
                             public.schema_migrations, template.schema_migrations TO {APPLICATION};
             GRANT SELECT, UPDATE ON public.outbox TO {APPLICATION};
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.tenant_metrics, public.servers TO {APPLICATION};
             DROP POLICY IF EXISTS outbox_sender ON public.outbox;
             CREATE POLICY outbox_sender ON public.outbox TO {APPLICATION} USING (true) WITH CHECK (true);
             GRANT {group} TO {ADMIN} WITH ADMIN OPTION;
             DROP POLICY IF EXISTS invitations_readonly ON public.invitations;
             CREATE POLICY invitations_readonly ON public.invitations FOR SELECT TO {READONLY} USING (true);
             DROP POLICY IF EXISTS outbox_readonly ON public.outbox;
             CREATE POLICY outbox_readonly ON public.outbox FOR SELECT TO {READONLY} USING (true);
             REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC;
             COMMIT;",
            group = quote_ident(&tenant_group_role(&prefix)),
        ))
        .await?;
    let tenants = session
        .query("SELECT id FROM public.tenants ORDER BY id", &[])
        .await?;
    for row in tenants {
        let role = tenant_role_name(&prefix, row.get(0));
        session
            .batch_execute(&format!("GRANT {} TO {APPLICATION}", quote_ident(&role)))
            .await?;
        report.tenant_roles_granted += 1;
    }
    Ok(report)
}
