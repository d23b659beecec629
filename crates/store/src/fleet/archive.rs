//! A tenant's data in one file, and back: `atrium tenant export|import`.
//!
//! The archive is line-oriented text, written and read in one pass:
//!
//! ```text
//! ATRIUM TENANT ARCHIVE 1
//! {"format":1,"schema_version":1,"source":{...},"exported_at":"..."}
//! TABLE {"name":"users","columns":["id","email",...]}
//! <the table's rows in COPY text format, one per line>
//! \.
//! TABLE {"name":"pipeline_stages",...}
//! ...
//! END {"tables":[{"name":"users","rows":3,"sha256":"..."},...],"sha256":"..."}
//! ```
//!
//! COPY's text format escapes newlines and backslashes inside values, so a
//! row is always one line and `\.` alone on a line can only end a table.
//! The last line's `sha256` covers every byte before it; each table's
//! covers its rows. An import checks both, and every count, before it
//! commits: a truncated, corrupted or edited archive leaves nothing behind.
//! Table and column names in an archive are only accepted when the schema
//! being loaded has them.

use crate::AdminDatabase;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::{SinkExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use atrium_domain::{Subdomain, Tier};

use crate::connection::database::quote_ident;
use crate::fleet::migrate::{MigrationSets, QueryCounter, apply_pending};
use crate::fleet::provision::create_shell;
use crate::registry::{self, TenantEntry};
use crate::{PooledTx, StoreError};

const MAGIC: &str = "ATRIUM TENANT ARCHIVE";
/// The archive layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The tables an archive carries, parents before children (a table's rows
/// are checked against the tables loaded before it). Within one table,
/// references between rows (a company's parent) are checked when the
/// table's `COPY` ends, so their order does not matter.
pub const ARCHIVED_TABLES: &[&str] = &[
    "users",
    "saved_views",
    "pipeline_stages",
    "custom_field_definitions",
    "companies",
    "contacts",
    "deals",
    "deal_contacts",
    "activities",
    "audit_events",
];

/// Tables an archive leaves out: sign-in sessions and password reset
/// tokens are credentials of the source tenant (users sign in again), and
/// the migration history is rebuilt by the import.
pub const NOT_ARCHIVED: &[&str] = &["sessions", "password_reset_tokens", "schema_migrations"];

/// Rows sent to `COPY FROM` per message.
const SEND_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: u32,
    pub schema_version: i32,
    pub source: Source,
    pub exported_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Source {
    pub id: i32,
    pub name: String,
    pub subdomain: String,
    pub tier: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableHeader {
    name: String,
    columns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableSummary {
    pub name: String,
    pub rows: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    tables: Vec<TableSummary>,
    sha256: String,
}

/// What an export wrote or an import loaded.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    pub header: Header,
    pub tables: Vec<TableSummary>,
    pub bytes: u64,
    pub seconds: f64,
}

impl ArchiveReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Writes `tenant`'s rows to `out`, all read in one snapshot
/// (`REPEATABLE READ READ ONLY`): the tenant keeps serving, and the
/// archive is consistent across tables. Only this tenant's catalog entries
/// are looked up (by name), never the whole catalog.
#[tracing::instrument(name = "archive_export", skip_all, fields(tenant = %tenant.subdomain))]
pub async fn export<W>(
    admin: &AdminDatabase,
    tenant: &TenantEntry,
    out: W,
) -> anyhow::Result<ArchiveReport>
where
    W: AsyncWrite + Unpin,
{
    let db = admin.database();
    let started = Instant::now();
    let mut out = Hashed::new(tokio::io::BufWriter::with_capacity(SEND_BYTES, out));
    let mut session = db.tenant_session(tenant.id).await?;
    session.note_tenant(tenant.id);
    session
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let q_schema = quote_ident(&tenant.schema_name);
    let version: String = session
        .query_one(
            &format!("SELECT max(version) FROM {q_schema}.schema_migrations"),
            &[],
        )
        .await?
        .get(0);
    let header = Header {
        format: FORMAT_VERSION,
        schema_version: version.trim().parse()?,
        source: Source {
            id: tenant.id,
            name: tenant.name.clone(),
            subdomain: tenant.subdomain.clone(),
            tier: tenant.tier.as_str().to_owned(),
        },
        exported_at: Utc::now(),
    };
    out.write_all(format!("{MAGIC} {FORMAT_VERSION}\n").as_bytes())
        .await?;
    out.write_line(&serde_json::to_string(&header)?).await?;
    let mut tables = Vec::new();
    for table in ARCHIVED_TABLES {
        let columns = copy_columns(&session, &tenant.schema_name, table).await?;
        let line = serde_json::to_string(&TableHeader {
            name: (*table).to_owned(),
            columns: columns.clone(),
        })?;
        out.write_line(&format!("TABLE {line}")).await?;
        let sql = format!(
            "COPY {q_schema}.{} ({}) TO STDOUT",
            quote_ident(table),
            column_list(&columns)
        );
        let stream = session.copy_out(&sql).await?;
        let mut stream = std::pin::pin!(stream);
        let mut data = Sha256::new();
        let mut rows = 0u64;
        while let Some(chunk) = stream.try_next().await? {
            data.update(&chunk);
            rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            out.write_all(&chunk).await?;
        }
        out.write_all(b"\\.\n").await?;
        tables.push(TableSummary {
            name: (*table).to_owned(),
            rows,
            sha256: hex::encode(data.finalize()),
        });
    }
    session.batch_execute("COMMIT").await?;
    let manifest = Manifest {
        tables: tables.clone(),
        sha256: hex::encode(out.hasher.clone().finalize()),
    };
    out.write_line(&format!("END {}", serde_json::to_string(&manifest)?))
        .await?;
    out.inner.flush().await?;
    Ok(ArchiveReport {
        header,
        tables,
        bytes: out.written,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Where an imported tenant goes.
pub struct ImportTarget<'a> {
    pub subdomain: &'a Subdomain,
    /// The source tenant's name when not given.
    pub name: Option<&'a str>,
}

/// Creates a new tenant from an archive, in one transaction: the shell
/// (registry row, schema, role), the migrations up to the archive's
/// schema version, every table's rows with their ids, sequences past the
/// highest id, then the newer migrations. Any fault in the archive rolls
/// all of it back.
#[tracing::instrument(name = "archive_import", skip_all, fields(tenant = %target.subdomain.as_str()))]
pub async fn import<R>(
    admin: &AdminDatabase,
    sets: &MigrationSets,
    input: R,
    target: &ImportTarget<'_>,
) -> Result<(TenantEntry, ArchiveReport), StoreError>
where
    R: AsyncRead + Unpin,
{
    let db = admin.database();
    let started = Instant::now();
    let mut reader = Reader::new(input);
    let magic = reader.line().await?;
    let format = magic
        .strip_prefix(format!("{MAGIC} ").as_bytes())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| refused("this is not an Atrium tenant archive"))?;
    if format != FORMAT_VERSION {
        return Err(refused(format!(
            "archive format {format} is not the one this Atrium reads ({FORMAT_VERSION})"
        )));
    }
    let header: Header = serde_json::from_slice(&reader.line().await?)
        .map_err(|e| refused(format!("the archive header cannot be read: {e}")))?;
    let latest = sets.latest_tenant_version();
    if header.schema_version < 1 || header.schema_version > latest {
        return Err(refused(format!(
            "the archive holds schema version {}; this Atrium knows versions 1 to {latest}",
            header.schema_version
        )));
    }
    let tier = Tier::parse(&header.source.tier)
        .map_err(|e| refused(format!("the archive's tier: {e}")))?;
    let name = target.name.unwrap_or(&header.source.name);

    let mut tx = PooledTx::begin(db, "").await?;
    let loaded = load(&mut tx, sets, &mut reader, &header, name, target, tier).await;
    let (shell_id, tables) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(e);
        }
    };
    tx.commit().await?;
    let tenant = registry::find_by_id(db, shell_id).await?;
    Ok((
        tenant,
        ArchiveReport {
            header,
            tables,
            bytes: reader.read,
            seconds: started.elapsed().as_secs_f64(),
        },
    ))
}

/// Everything of an import inside its transaction: the new tenant's id
/// and what it loaded.
async fn load<R: AsyncRead + Unpin>(
    tx: &mut PooledTx,
    sets: &MigrationSets,
    reader: &mut Reader<R>,
    header: &Header,
    name: &str,
    target: &ImportTarget<'_>,
    tier: Tier,
) -> Result<(i32, Vec<TableSummary>), StoreError> {
    let latest = sets.latest_tenant_version();
    let shell = create_shell(tx, name, target.subdomain, tier).await?;
    let older: Vec<_> = sets
        .tenant
        .iter()
        .filter(|f| f.version <= header.schema_version)
        .map(|f| crate::fleet::migrate::MigrationFile { ..*f })
        .collect();
    let counter = QueryCounter::default();
    apply_pending(tx.client(), &shell.schema, &older, &counter)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;

    let mut tables: Vec<TableSummary> = Vec::new();
    let manifest = loop {
        let line = reader.line().await?;
        if let Some(json) = line.strip_prefix(b"END ") {
            let whole = hex::encode(reader.hash_before_last_line());
            let manifest: Manifest = serde_json::from_slice(json)
                .map_err(|e| refused(format!("the archive's closing line cannot be read: {e}")))?;
            if manifest.sha256 != whole {
                return Err(refused(
                    "the archive's checksum does not match its contents",
                ));
            }
            break manifest;
        }
        let json = line
            .strip_prefix(b"TABLE ")
            .ok_or_else(|| refused("the archive holds a line that is not a table"))?;
        let table: TableHeader = serde_json::from_slice(json)
            .map_err(|e| refused(format!("a table header cannot be read: {e}")))?;
        check_table(tx, &shell.schema, &table, &tables).await?;
        let loaded = load_table(tx, &shell.schema, &table, reader).await?;
        tables.push(loaded);
    };
    if !reader.at_end().await? {
        return Err(refused("the archive goes on after its closing line"));
    }
    if manifest.tables != tables {
        let differs = manifest
            .tables
            .iter()
            .zip(&tables)
            .find(|(said, found)| said != found)
            .map_or("the list of tables".to_owned(), |(said, _)| {
                format!("table {}", said.name)
            });
        return Err(refused(format!(
            "the archive's contents do not match its manifest ({differs})"
        )));
    }

    let client = tx.client();
    for table in &tables {
        let q_table = format!(
            "{}.{}",
            quote_ident(&shell.schema),
            quote_ident(&table.name)
        );
        client
            .batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{q_table}', 'id'),
                               COALESCE((SELECT max(id) FROM {q_table}), 0) + 1, false)
                  WHERE pg_get_serial_sequence('{q_table}', 'id') IS NOT NULL"
            ))
            .await?;
    }
    apply_pending(client, &shell.schema, sets.tenant, &counter)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    client
        .execute(
            "UPDATE public.tenants SET schema_version = $1 WHERE id = $2",
            &[&latest, &shell.id],
        )
        .await?;
    Ok((shell.id, tables))
}

fn refused(message: impl Into<String>) -> StoreError {
    StoreError::Damaged(message.into())
}

/// The columns `COPY` carries: every stored column, generated ones left
/// out (they are computed again on load).
async fn copy_columns(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT attname::text FROM pg_attribute
              WHERE attrelid = to_regclass(quote_ident($1) || '.' || quote_ident($2))
                AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
              ORDER BY attnum",
            &[&schema, &table],
        )
        .await?;
    anyhow::ensure!(!rows.is_empty(), "table {schema}.{table} does not exist");
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table an archive names must be one the schema has at the archive's
/// version, carried by archives, not loaded twice, and its columns must be
/// the table's own.
async fn check_table(
    tx: &PooledTx,
    schema: &str,
    table: &TableHeader,
    loaded: &[TableSummary],
) -> Result<(), StoreError> {
    if NOT_ARCHIVED.contains(&table.name.as_str()) || loaded.iter().any(|t| t.name == table.name) {
        return Err(refused(format!(
            "the archive holds table {} where it may not",
            table.name
        )));
    }
    let columns = copy_columns(tx.client(), schema, &table.name)
        .await
        .map_err(|_| refused(format!("the archive holds an unknown table {}", table.name)))?;
    if let Some(unknown) = table.columns.iter().find(|c| !columns.contains(c)) {
        return Err(refused(format!(
            "the archive holds an unknown column {}.{unknown}",
            table.name
        )));
    }
    Ok(())
}

/// Streams one table's rows into `COPY FROM`, counting and hashing them.
async fn load_table<R: AsyncRead + Unpin>(
    tx: &PooledTx,
    schema: &str,
    table: &TableHeader,
    reader: &mut Reader<R>,
) -> Result<TableSummary, StoreError> {
    let sql = format!(
        "COPY {}.{} ({}) FROM STDIN",
        quote_ident(schema),
        quote_ident(&table.name),
        column_list(&table.columns)
    );
    let sink = tx.client().copy_in::<_, Bytes>(&sql).await?;
    let mut sink = std::pin::pin!(sink);
    let mut data = Sha256::new();
    let mut rows = 0u64;
    let mut pending = BytesMut::with_capacity(SEND_BYTES);
    loop {
        let line = reader.raw_line().await?;
        if line == b"\\.\n" {
            break;
        }
        data.update(line);
        rows += 1;
        pending.extend_from_slice(line);
        if pending.len() >= SEND_BYTES {
            sink.send(pending.split().freeze())
                .await
                .map_err(|e| load_error(&table.name, e))?;
        }
    }
    if !pending.is_empty() {
        sink.send(pending.freeze())
            .await
            .map_err(|e| load_error(&table.name, e))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| load_error(&table.name, e))?;
    Ok(TableSummary {
        name: table.name.clone(),
        rows,
        sha256: hex::encode(data.finalize()),
    })
}

/// Rows the database refuses (a broken reference, a malformed value) mean
/// an archive that was altered or damaged.
fn load_error(table: &str, e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => refused(format!(
            "the archive's rows of table {table} cannot be loaded: {}",
            db.message()
        )),
        None => e.into(),
    }
}

/// A writer that hashes and counts what it writes.
struct Hashed<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: AsyncWrite + Unpin> Hashed<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.inner.write_all(bytes).await
    }

    async fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.write_all(line.as_bytes()).await?;
        self.write_all(b"\n").await
    }
}

/// Reads an archive a line at a time, hashing every line but the latest
/// (which may be the closing one, outside the checksum).
struct Reader<R> {
    inner: BufReader<R>,
    hasher: Sha256,
    last: Vec<u8>,
    read: u64,
}

/// No line of an archive's own (magic, headers, closing line) is longer;
/// a longer one means this is not an archive.
const MAX_META_LINE: usize = 16 * 1024 * 1024;

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(SEND_BYTES, inner),
            hasher: Sha256::new(),
            last: Vec::new(),
            read: 0,
        }
    }

    /// The next line with its newline; a missing newline means the archive
    /// was cut short.
    async fn raw_line(&mut self) -> Result<&[u8], StoreError> {
        self.hasher.update(&self.last);
        self.last.clear();
        let n = self
            .inner
            .read_until(b'\n', &mut self.last)
            .await
            .map_err(|e| StoreError::Other(anyhow::anyhow!("reading the archive: {e}")))?;
        self.read += n as u64;
        if self.last.last() != Some(&b'\n') {
            return Err(refused("the archive is truncated"));
        }
        Ok(&self.last)
    }

    /// The next line of the archive's own, without its newline.
    async fn line(&mut self) -> Result<Vec<u8>, StoreError> {
        let mut line = self.raw_line().await?.to_vec();
        if line.len() > MAX_META_LINE {
            return Err(refused("this is not an Atrium tenant archive"));
        }
        line.pop();
        Ok(line)
    }

    /// The hash of everything before the latest line.
    fn hash_before_last_line(&self) -> Vec<u8> {
        self.hasher.clone().finalize().to_vec()
    }

    async fn at_end(&mut self) -> Result<bool, StoreError> {
        let buffered = self
            .inner
            .fill_buf()
            .await
            .map_err(|e| StoreError::Other(anyhow::anyhow!("reading the archive: {e}")))?;
        Ok(buffered.is_empty())
    }
}
