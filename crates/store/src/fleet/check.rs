//! Drift check: every tenant schema's catalog against `template`.
//!
//! Each schema's tables, columns and types, defaults, indexes, constraints
//! and triggers are rendered as text with the schema name taken out, then
//! fingerprinted in the database. The text is compared by meaning, not by
//! how PostgreSQL happened to print it: casts and parentheses are left out
//! of expressions, because the same constraint reads differently once
//! `pg_dump` and a restore have been through it (a `varchar` column's
//! `IN` list is stored as an array cast to `text[]`, and comes back as
//! each element cast to `text`). Column types are compared in full: they
//! come from `format_type`, not from expressions. Only schemas whose fingerprint differs
//! from the template's are read in detail, so checking ten thousand healthy
//! tenants moves one row per tenant, not their whole catalogs.
//!
//! The schemas are checked in chunks, each on a session of its own that
//! closes afterwards: rendering a schema's catalog loads it into the
//! backend's caches, which would otherwise grow with the whole fleet. Two
//! chunks run at once. Relations are found through `pg_depend`'s index on
//! the namespace, so a chunk reads its own schemas' catalog entries, not
//! all of `pg_class`.

use crate::AdminDatabase;
use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};

use crate::Database;

/// Schemas fingerprinted per session.
const CHUNK: usize = 500;
/// Chunks checked at once.
const JOBS: usize = 2;

/// Catalog items of the schemas in `$1`, one line of text each.
const CATALOG_ITEMS: &str = "
WITH s AS (
  SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY($1::text[])
), rel AS (
  SELECT s.nspname, c.oid, c.relname, c.relkind
  FROM s JOIN pg_depend d ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = s.oid
    AND d.classid = 'pg_class'::regclass
  JOIN pg_class c ON c.oid = d.objid
), items AS (
  SELECT c.nspname, 'column ' || c.relname || '.' || a.attname || ' ' ||
         format_type(a.atttypid, a.atttypmod) ||
         CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ||
         COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '') ||
         CASE WHEN a.attgenerated = 's' THEN ' generated' ELSE '' END AS item
  FROM rel c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  WHERE c.relkind IN ('r', 'p')
  UNION ALL
  SELECT c.nspname, 'index ' || pg_get_indexdef(i.indexrelid)
  FROM rel c JOIN pg_index i ON i.indrelid = c.oid
  UNION ALL
  SELECT c.nspname, 'constraint ' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM rel c JOIN pg_constraint k ON k.conrelid = c.oid
  UNION ALL
  SELECT c.nspname, 'trigger ' || pg_get_triggerdef(t.oid)
  FROM rel c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
  UNION ALL
  SELECT c.nspname, 'sequence ' || c.relname FROM rel c WHERE c.relkind = 'S'
)
SELECT nspname, regexp_replace(regexp_replace(regexp_replace(
         replace(item, nspname || '.', ''),
         '::(character varying|bit varying|double precision|time(stamp)? with(out)? time zone|[a-z_][a-z0-9_]*)(\\[\\])?',
         '', 'g'),
       '[()]', '', 'g'),
       '\\s+', ' ', 'g') AS item
FROM items";

/// The schemas of `chunk` whose fingerprint differs from `template`'s,
/// both read in one statement (one snapshot of the catalog) on a session
/// that closes afterwards.
async fn differing_in(db: &Database, chunk: &[String]) -> anyhow::Result<Vec<String>> {
    let session = db.dedicated_connection().await?;
    let mut schemas = chunk.to_vec();
    schemas.push("template".into());
    let prints: BTreeMap<String, String> = session
        .query(
            &format!(
                "SELECT nspname, md5(string_agg(item, E'\\n' ORDER BY item))
                 FROM ({CATALOG_ITEMS}) x GROUP BY nspname"
            ),
            &[&schemas],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let template = prints
        .get("template")
        .ok_or_else(|| anyhow::anyhow!("schema `template` is missing: run `atrium migrate`"))?;
    Ok(chunk
        .iter()
        .filter(|s| prints.get(*s) != Some(template))
        .cloned()
        .collect())
}

/// Every catalog item of the schemas of `chunk` and of `template`, read as
/// `differing_in` reads them.
async fn items_of(
    db: &Database,
    chunk: &[String],
) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let session = db.dedicated_connection().await?;
    let mut schemas = chunk.to_vec();
    schemas.push("template".into());
    let mut items: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in session.query(CATALOG_ITEMS, &[&schemas]).await? {
        items.entry(row.get(0)).or_default().insert(row.get(1));
    }
    Ok(items)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaDrift {
    /// The cluster it is on (filled in by the caller that checks several).
    pub cluster: String,
    pub schema_name: String,
    pub subdomain: Option<String>,
    /// In `template` but not in this schema.
    pub missing: Vec<String>,
    /// In this schema but not in `template`.
    pub extra: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    /// Tenant schemas checked.
    pub schemas_checked: usize,
    /// Spare schemas (made ready for new tenants) checked besides them.
    pub spares_checked: usize,
    pub drifted: Vec<SchemaDrift>,
}

pub async fn check(admin: &AdminDatabase) -> anyhow::Result<CheckReport> {
    let db = admin.database();
    let client = db.connection().await?;
    let tenants: BTreeMap<String, String> = client
        .query(
            "SELECT schema_name, subdomain FROM public.tenants ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut tenants = tenants;
    let tenant_count = tenants.len();
    // Spares become tenants by a rename: they must match `template` too.
    let spares = crate::fleet::spares::schema_names(&client).await?;
    let spares_checked = spares.len();
    for spare in spares {
        tenants.insert(spare, String::new());
    }
    let schemas: Vec<String> = tenants.keys().cloned().collect();
    drop(client);

    let differing: Vec<String> = futures::stream::iter(schemas.chunks(CHUNK))
        .map(|chunk| differing_in(db, chunk))
        .buffer_unordered(JOBS)
        .try_concat()
        .await?;
    let mut drifted = Vec::new();
    for chunk in differing.chunks(CHUNK) {
        let mut items = items_of(db, chunk).await?;
        let template = items.remove("template").unwrap_or_default();
        for schema in chunk {
            let mine = items.remove(schema).unwrap_or_default();
            drifted.push(SchemaDrift {
                cluster: String::new(),
                subdomain: tenants.get(schema).filter(|s| !s.is_empty()).cloned(),
                missing: if mine.is_empty() {
                    vec!["the whole schema".into()]
                } else {
                    template.difference(&mine).cloned().collect()
                },
                extra: mine.difference(&template).cloned().collect(),
                schema_name: schema.clone(),
            });
        }
    }
    drifted.sort_by(|a, b| a.schema_name.cmp(&b.schema_name));
    Ok(CheckReport {
        schemas_checked: tenant_count,
        spares_checked,
        drifted,
    })
}
