//! Drift check: every tenant schema's catalog against `template`.
//!
//! Each schema's tables, columns and types, defaults, indexes, constraints
//! and triggers are rendered as text with the schema name taken out, and
//! compared with `template`'s in the database. The text is compared by meaning, not by
//! how PostgreSQL happened to print it: casts and parentheses are left out
//! of expressions, because the same constraint reads differently once
//! `pg_dump` and a restore have been through it (a `varchar` column's
//! `IN` list is stored as an array cast to `text[]`, and comes back as
//! each element cast to `text`). Column types are compared in full: they
//! come from `format_type`, not from expressions. Only the differences
//! leave the database, so checking ten thousand healthy tenants moves no
//! rows at all, and a drifted one is not read a second time.
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

/// Schemas compared per session.
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
SELECT nspname, replace(item, nspname || '.', '') AS item FROM items";

/// A catalog line (`line`) as compared: casts, parentheses and runs of
/// white space taken out.
const COMPARED: &str = "regexp_replace(regexp_replace(regexp_replace(line,
         '::(character varying|bit varying|double precision|time(stamp)? with(out)? time zone|[a-z_][a-z0-9_]*)(\\[\\])?',
         '', 'g'),
       '[()]', '', 'g'),
       '\\s+', ' ', 'g')";

/// How the schemas of `$1` differ from `template`, computed in the
/// database from one snapshot of the catalog. Each schema's lines are
/// fingerprinted as PostgreSQL prints them: a schema printed exactly as
/// `template` is healthy, and most are. Only the others have their lines
/// made comparable ([`COMPARED`], the costly part: regular expressions
/// over every line) and fingerprinted again; those that still differ are
/// compared line by line, as sets: each line a schema has and `template`
/// lacks (`extra`), each line `template` has and the schema lacks
/// (`missing`). Every differing schema is named (`differs`), and a schema
/// with no lines at all is `absent`. A healthy schema sends nothing back,
/// and a drifted one is not read a second time.
const DIFFERENCES: &str = "
WITH printed AS MATERIALIZED (SELECT nspname, item AS line FROM (CATALOG_ITEMS) rendered),
printed_prints AS (
  SELECT nspname, md5(string_agg(line, E'\\n' ORDER BY line COLLATE \"C\")) AS print
  FROM printed GROUP BY nspname
),
suspects AS MATERIALIZED (
  SELECT p.nspname FROM printed_prints p JOIN printed_prints t ON t.nspname = 'template'
  WHERE p.nspname <> 'template' AND p.print <> t.print
),
items AS MATERIALIZED (
  SELECT nspname, COMPARED AS item FROM printed
  WHERE nspname = 'template' OR nspname IN (SELECT nspname FROM suspects)
),
prints AS (
  SELECT nspname, md5(string_agg(item, E'\\n' ORDER BY item COLLATE \"C\")) AS print
  FROM items GROUP BY nspname
),
differing AS MATERIALIZED (
  SELECT p.nspname FROM prints p JOIN prints t ON t.nspname = 'template'
  WHERE p.nspname <> 'template' AND p.print <> t.print
),
template AS MATERIALIZED (SELECT item FROM items WHERE nspname = 'template'),
theirs AS MATERIALIZED (SELECT nspname, item FROM items JOIN differing USING (nspname)),
expected AS MATERIALIZED (SELECT d.nspname, t.item FROM differing d CROSS JOIN template t)
SELECT nspname, 'differs', NULL FROM differing
UNION ALL
(SELECT nspname, 'extra', item FROM theirs EXCEPT SELECT nspname, 'extra', item FROM expected)
UNION ALL
(SELECT nspname, 'missing', item FROM expected EXCEPT SELECT nspname, 'missing', item FROM theirs)
UNION ALL
SELECT s, 'absent', NULL FROM unnest($1::text[]) s
WHERE s <> 'template' AND NOT EXISTS (SELECT 1 FROM printed_prints p WHERE p.nspname = s)";

/// The differences of the schemas of `chunk` from `template`, on a session
/// that closes afterwards. Only drifted schemas appear.
async fn drift_in(
    db: &Database,
    chunk: &[String],
) -> anyhow::Result<BTreeMap<String, Differences>> {
    let session = db.dedicated_connection().await?;
    let mut schemas = chunk.to_vec();
    schemas.push("template".into());
    let template_exists = session
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'template')",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    anyhow::ensure!(
        template_exists,
        "schema `template` is missing: run `atrium migrate`"
    );
    let sql = DIFFERENCES
        .replace("(CATALOG_ITEMS)", &format!("({})", CATALOG_ITEMS.trim()))
        .replace("COMPARED", COMPARED);
    let mut drift: BTreeMap<String, Differences> = BTreeMap::new();
    for row in session.query(&sql, &[&schemas]).await? {
        let differences = drift.entry(row.get(0)).or_default();
        let item: Option<String> = row.get(2);
        match (row.get::<_, &str>(1), item) {
            ("extra", Some(item)) => {
                differences.extra.insert(item);
            }
            ("missing", Some(item)) => {
                differences.missing.insert(item);
            }
            ("absent", _) => differences.absent = true,
            _ => {}
        }
    }
    Ok(drift)
}

#[derive(Default)]
struct Differences {
    missing: BTreeSet<String>,
    extra: BTreeSet<String>,
    /// The schema does not exist (or holds nothing).
    absent: bool,
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

    let drift: Vec<BTreeMap<String, Differences>> = futures::stream::iter(schemas.chunks(CHUNK))
        .map(|chunk| drift_in(db, chunk))
        .buffer_unordered(JOBS)
        .try_collect()
        .await?;
    let mut drifted: Vec<SchemaDrift> = drift
        .into_iter()
        .flatten()
        .map(|(schema, differences)| SchemaDrift {
            cluster: String::new(),
            subdomain: tenants.get(&schema).filter(|s| !s.is_empty()).cloned(),
            missing: if differences.absent {
                vec!["the whole schema".into()]
            } else {
                differences.missing.into_iter().collect()
            },
            extra: differences.extra.into_iter().collect(),
            schema_name: schema,
        })
        .collect();
    drifted.sort_by(|a, b| a.schema_name.cmp(&b.schema_name));
    Ok(CheckReport {
        schemas_checked: tenant_count,
        spares_checked,
        drifted,
    })
}
