//! The migration files, embedded in the binary, in their two sets.

use sha2::{Digest, Sha256};

/// One SQL file of a migration set.
#[derive(Debug)]
pub struct MigrationFile {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl MigrationFile {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }

    /// Whether the file may create a relation the tenant role must be
    /// granted. Adding columns or indexes needs no grant, and rewriting
    /// every table's ACL would double the cost of such a migration across
    /// the fleet; this errs on the side of granting.
    pub fn creates_objects(&self) -> bool {
        let code: String = self
            .sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
            .to_ascii_lowercase();
        code.split(';').map(str::trim).any(|statement| {
            statement.contains("serial")
                || statement.contains("identity")
                || statement.starts_with("do")
                || (statement.starts_with("create")
                    && !statement.starts_with("create index")
                    && !statement.starts_with("create unique index"))
        })
    }
}

/// The SQL files of `migrations/`, embedded by the build script.
mod embedded {
    use super::MigrationFile;
    include!(concat!(env!("OUT_DIR"), "/migration_files.rs"));
}

/// The two ordered sets a run applies: the embedded ones in production; tests
/// and benchmarks add files of their own.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSets {
    pub control: &'static [MigrationFile],
    pub tenant: &'static [MigrationFile],
}

impl MigrationSets {
    pub fn embedded() -> Self {
        Self {
            control: embedded::CONTROL,
            tenant: embedded::TENANT,
        }
    }

    /// The version every tenant schema reaches after `migrate`.
    pub fn latest_tenant_version(&self) -> i32 {
        self.tenant.last().map_or(0, |m| m.version)
    }

    pub fn latest_control_version(&self) -> i32 {
        self.control.last().map_or(0, |m| m.version)
    }
}

/// The version every tenant schema reaches after `migrate`.
pub fn latest_tenant_version() -> i32 {
    MigrationSets::embedded().latest_tenant_version()
}
