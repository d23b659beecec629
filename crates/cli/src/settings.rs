//! Settings: command-line flags over environment variables over an optional
//! `atrium.toml` over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Keys accepted in `atrium.toml`; each has the same meaning as the flag and
/// the `ATRIUM_*` variable of the same name.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub database_url: Option<String>,
    pub admin_database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub bind: Option<SocketAddr>,
    pub base_domain: Option<String>,
    pub platform_token: Option<String>,
    pub public_url: Option<String>,
    pub pool_size: Option<usize>,
    pub trusted_proxies: Option<Vec<ipnet::IpNet>>,
    pub smtp_url: Option<String>,
    /// Seals queued emails' bodies at rest (64 hex digits); else
    /// `ATRIUM_SECRET_KEY`, else the embedded default's own key file.
    pub secret_key: Option<String>,
    pub mail_from: Option<String>,
    pub retention_days: Option<u32>,
    #[serde(alias = "maintenance_interval_minutes")]
    pub maintain_interval_minutes: Option<u32>,
    pub spare_schemas: Option<u32>,
    #[serde(alias = "session_max_tenants")]
    pub connection_max_tenants: Option<u32>,
    pub slow_statement_ms: Option<u64>,
    pub reindex_interval_days: Option<u32>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// More data clusters, by name: `[clusters.eu] database_url = "…"`.
    #[serde(default)]
    pub clusters: std::collections::BTreeMap<String, ClusterUrls>,
}

/// Where a declared data cluster is. Its secrets stay here (or in the
/// environment), never in the registry.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterUrls {
    pub database_url: Option<String>,
    pub admin_database_url: Option<String>,
}

impl std::fmt::Debug for ClusterUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterUrls")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field(
                "admin_database_url",
                &self.admin_database_url.as_deref().map(redact_url),
            )
            .finish()
    }
}

/// A data cluster the operator declared, besides the home database (the
/// cluster `default`).
#[derive(Debug, Clone)]
pub struct DeclaredCluster {
    pub name: String,
    pub urls: ClusterUrls,
}

/// The clusters of `atrium.toml`'s `[clusters.NAME]` tables and of the
/// environment's `ATRIUM_CLUSTER_<NAME>_DATABASE_URL` and
/// `ATRIUM_CLUSTER_<NAME>_ADMIN_DATABASE_URL` (which win), by name.
pub fn declared_clusters(
    file: &FileSettings,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Vec<DeclaredCluster>> {
    let mut clusters = file.clusters.clone();
    for (key, value) in env {
        let Some(rest) = key.strip_prefix("ATRIUM_CLUSTER_") else {
            continue;
        };
        if let Some(name) = rest.strip_suffix("_ADMIN_DATABASE_URL") {
            clusters
                .entry(name.to_ascii_lowercase())
                .or_default()
                .admin_database_url = Some(value);
        } else if let Some(name) = rest.strip_suffix("_DATABASE_URL") {
            clusters
                .entry(name.to_ascii_lowercase())
                .or_default()
                .database_url = Some(value);
        }
    }
    clusters
        .into_iter()
        .map(|(name, urls)| {
            let valid = name.len() <= 40
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            anyhow::ensure!(
                valid,
                "cluster name {name:?}: use 1-40 lower-case letters, digits and _, starting with a letter"
            );
            anyhow::ensure!(
                name != "default",
                "cluster name \"default\" is the home database (--database-url); declare other clusters under other names"
            );
            anyhow::ensure!(
                urls.database_url.is_some() || urls.admin_database_url.is_some(),
                "cluster {name}: give its database_url (ATRIUM_CLUSTER_{}_DATABASE_URL)",
                name.to_ascii_uppercase()
            );
            Ok(DeclaredCluster { name, urls })
        })
        .collect()
}

impl FileSettings {
    /// Reads `explicit` (an error if missing) or `./atrium.toml` if present.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("atrium.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("reading settings from {}", path.display())),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading settings from {}", path.display())),
        }
    }
}

/// Where the data lives.
#[derive(Clone)]
pub enum DatabaseTarget {
    /// A server the operator runs.
    Url {
        url: String,
        /// A URL with rights to change the schema, when the main one (the
        /// application's login) has none.
        admin_url: Option<String>,
    },
    /// The private cluster under the data directory.
    Embedded { data_dir: PathBuf },
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url { url, admin_url } => f
                .debug_struct("Url")
                .field("url", &redact_url(url))
                .field("admin_url", &admin_url.as_deref().map(redact_url))
                .finish(),
            Self::Embedded { data_dir } => f
                .debug_struct("Embedded")
                .field("data_dir", data_dir)
                .finish(),
        }
    }
}

/// Hides the password of a `postgresql://user:password@host` URL or of a
/// `password=...` key-value connection string.
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!(
                "{}{}:********{}",
                &url[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            );
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=********"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password_or_the_platform_token() {
        let database = DatabaseTarget::Url {
            url: "postgresql://app:s3cret@db:5432/atrium".into(),
            admin_url: Some("host=db user=admin password=hunter2 dbname=atrium".into()),
        };
        let server = atrium_http::ServerSettings {
            base_domain: "localhost".into(),
            platform_token: Some("platform-secret".into()),
            ..Default::default()
        };
        let shown = format!("{database:?} {server:?}");
        for secret in ["s3cret", "hunter2", "platform-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("app:********@db:5432/atrium"));
    }

    #[test]
    fn urls_without_passwords_are_left_alone() {
        assert_eq!(redact_url("postgresql://u@h/d"), "postgresql://u@h/d");
        assert_eq!(
            redact_url("postgresql://postgres@/atrium?host=/tmp/x"),
            "postgresql://postgres@/atrium?host=/tmp/x"
        );
    }

    #[test]
    fn the_settings_file_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("atrium.toml");
        std::fs::write(&path, "bind = \"0.0.0.0:9000\"\ndatabse_url = \"x\"\n").unwrap();
        let err = FileSettings::load(Some(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("databse_url"), "{err:#}");
        std::fs::write(&path, "bind = \"0.0.0.0:9000\"\n").unwrap();
        let ok = FileSettings::load(Some(&path)).unwrap();
        assert_eq!(ok.bind.unwrap().port(), 9000);
    }

    #[test]
    fn clusters_are_declared_in_the_file_and_the_environment_which_wins() {
        let file: FileSettings = toml::from_str(
            "[clusters.eu]\ndatabase_url = \"postgresql://file/eu\"\n\
             [clusters.asia]\ndatabase_url = \"postgresql://file/asia\"\n",
        )
        .unwrap();
        let env = [
            ("ATRIUM_CLUSTER_EU_DATABASE_URL", "postgresql://env/eu"),
            (
                "ATRIUM_CLUSTER_EU_ADMIN_DATABASE_URL",
                "postgresql://env/eu-admin",
            ),
            ("ATRIUM_CLUSTER_US_EAST_DATABASE_URL", "postgresql://env/us"),
            ("ATRIUM_DATABASE_URL", "postgresql://home"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let declared = declared_clusters(&file, env).unwrap();
        let found: Vec<(&str, Option<&str>, Option<&str>)> = declared
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.urls.database_url.as_deref(),
                    c.urls.admin_database_url.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("asia", Some("postgresql://file/asia"), None),
                (
                    "eu",
                    Some("postgresql://env/eu"),
                    Some("postgresql://env/eu-admin")
                ),
                ("us_east", Some("postgresql://env/us"), None),
            ]
        );
    }

    #[test]
    fn a_cluster_needs_a_plain_name_other_than_default_and_an_address() {
        let env = |k: &str| vec![(k.to_owned(), "postgresql://x/y".to_owned())];
        let refused = |file: &str, env: Vec<(String, String)>| {
            let file: FileSettings = toml::from_str(file).unwrap();
            declared_clusters(&file, env).unwrap_err().to_string()
        };
        assert!(refused("", env("ATRIUM_CLUSTER_DEFAULT_DATABASE_URL")).contains("home database"));
        assert!(
            refused("[clusters.Bad-Name]\ndatabase_url = \"x\"", vec![]).contains("lower-case")
        );
        assert!(refused("[clusters.eu]\n", vec![]).contains("give its database_url"));
        let unknown: Result<FileSettings, _> = toml::from_str("[clusters.eu]\nurl = \"x\"");
        assert!(unknown.is_err(), "unknown keys in a cluster are refused");
    }

    #[test]
    fn the_old_name_of_connection_max_tenants_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("atrium.toml");
        std::fs::write(&path, "session_max_tenants = 7\n").unwrap();
        let read = FileSettings::load(Some(&path)).unwrap();
        assert_eq!(read.connection_max_tenants, Some(7));
    }
}
