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

/// Catalog items of the schemas named by `(SCHEMAS)` (a query of names),
/// one line of text each, as PostgreSQL prints the definitions.
const CATALOG_ITEMS: &str = "
WITH s AS (
  SELECT oid, nspname FROM pg_namespace WHERE nspname IN (SCHEMAS)
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

/// The same catalog entries as [`CATALOG_ITEMS`] for the schemas in `$1`,
/// read as stored instead of printed (printing every definition is most
/// of a check's cost): every field the printed line is made from, the
/// objects they point to named relative to the schema (a foreign key's
/// table, a serial column's sequence) or by OID when they are the
/// system's, and expressions as PostgreSQL stores them, which includes
/// their positions in the statement that made them (the same migration
/// files make the same positions; defaults alone are read without them,
/// since the migrator makes `schema_migrations` with a statement of its
/// own per schema). Two schemas read alike here print alike; the converse
/// does not hold (a tenant restored from a dump, say), and such a schema
/// is compared as printed.
const RAW_ITEMS: &str = r"
WITH s AS (
  SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY($1::text[])
), rel AS (
  SELECT s.nspname, s.oid AS nsoid, c.oid, c.relname, c.relkind, c.relnamespace
  FROM s JOIN pg_depend d ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = s.oid
    AND d.classid = 'pg_class'::regclass
  JOIN pg_class c ON c.oid = d.objid
), sequence_defaults AS MATERIALIZED (
  -- By the sequence, through pg_depend's index on what is depended on
  -- (the cast keeps the planner off the other index, which would read
  -- every default of the database per sequence).
  SELECT dd.objid AS adoid, c.oid, c.relname, c.nsoid, c.relnamespace, c.nspname
  FROM rel c JOIN pg_depend dd ON dd.refclassid = 'pg_class'::regclass AND dd.refobjid = c.oid
   AND dd.classid::int8 = 'pg_attrdef'::regclass::int8
  WHERE c.relkind = 'S'
), items AS (
  SELECT c.nspname, concat_ws(' ', 'c', c.relname, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
         a.attgenerated, a.attidentity, a.attcollation,
         -- nextval('<sequence>'): the sequence's OID, in the bytes of the
         -- stored constant, replaced by its name
         CASE WHEN seq.oid IS NULL THEN regexp_replace(d.adbin::text, ' :location -?[0-9]+', '', 'g')
         ELSE replace(regexp_replace(d.adbin::text, ' :location -?[0-9]+', '', 'g'),
                 format(':constvalue 4 [ %s %s %s %s 0 0 0 0 ]',
                        ((seq.oid::int8 & 255) # 128) - 128, (((seq.oid::int8 >> 8) & 255) # 128) - 128,
                        (((seq.oid::int8 >> 16) & 255) # 128) - 128, (((seq.oid::int8 >> 24) & 255) # 128) - 128),
                 ':constvalue ' || CASE WHEN seq.relnamespace = c.nsoid THEN seq.relname
                                        ELSE seq.nspname || '.' || seq.relname END) END) AS item
  FROM rel c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  LEFT JOIN sequence_defaults seq ON seq.adoid = d.oid
  WHERE c.relkind IN ('r', 'p')
  UNION ALL
  SELECT c.nspname, concat_ws(' ', 'i', c.relname, ic.relname, ic.relam, i.indnatts, i.indnkeyatts,
         i.indisunique, i.indisprimary, i.indnullsnotdistinct, i.indimmediate, i.indkey, i.indclass,
         i.indcollation, i.indoption, ic.reloptions,
         i.indexprs,
         i.indpred)
  FROM rel c JOIN pg_index i ON i.indrelid = c.oid JOIN pg_class ic ON ic.oid = i.indexrelid
  UNION ALL
  SELECT c.nspname, concat_ws(' ', 'k', c.relname, k.conname, k.contype, k.condeferrable, k.condeferred,
         k.convalidated, k.conkey, k.confkey, k.confupdtype, k.confdeltype, k.confmatchtype,
         k.confdelsetcols, k.conexclop, ki.relname,
         CASE WHEN fc.relnamespace = c.nsoid THEN fc.relname ELSE fn.nspname || '.' || fc.relname END,
         k.conbin)
  FROM rel c JOIN pg_constraint k ON k.conrelid = c.oid
  LEFT JOIN pg_class ki ON ki.oid = k.conindid
  LEFT JOIN pg_class fc ON fc.oid = k.confrelid LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
  UNION ALL
  SELECT c.nspname, concat_ws(' ', 't', c.relname, t.tgname, t.tgtype, t.tgfoid, t.tgargs, t.tgattr,
         t.tgoldtable, t.tgnewtable, t.tgdeferrable, t.tginitdeferred,
         t.tgqual)
  FROM rel c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
  UNION ALL
  SELECT c.nspname, 's ' || c.relname FROM rel c WHERE c.relkind = 'S'
)
SELECT nspname, item FROM items";

/// Whether `template` holds only tables and what they bring (row types,
/// sequences): then an object a definition points to by OID is the
/// system's or another schema's, the same object whatever schema points
/// to it, and [`RAW_ITEMS`] can tell drift. A function, type, operator,
/// operator class or collation of `template`'s own would print without
/// its schema in `template` and with it elsewhere, so then every schema is
/// compared as printed.
const TEMPLATE_IS_PLAIN: &str = "
SELECT NOT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = t.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_operator WHERE oprnamespace = t.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_opclass WHERE opcnamespace = t.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_collation WHERE collnamespace = t.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_type ty WHERE ty.typnamespace = t.oid AND ty.typrelid = 0
                     AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = ty.typelem AND e.typrelid <> 0))
  FROM pg_namespace t WHERE t.nspname = 'template'";

/// A catalog line (`line`) as compared: casts, parentheses and runs of
/// white space taken out.
const COMPARED: &str = "regexp_replace(regexp_replace(regexp_replace(line,
         '::(character varying|bit varying|double precision|time(stamp)? with(out)? time zone|[a-z_][a-z0-9_]*)(\\[\\])?',
         '', 'g'),
       '[()]', '', 'g'),
       '\\s+', ' ', 'g')";

/// How the schemas of `$1` differ from `template`, computed in the
/// database from one snapshot of the catalog. Each schema's entries are
/// fingerprinted as stored ([`RAW_ITEMS`]); a schema stored exactly as
/// `template` is healthy, and most are (`$2`, [`TEMPLATE_IS_PLAIN`], says
/// whether the stored reading can be trusted at all). Only the others are
/// printed ([`CATALOG_ITEMS`]), made comparable ([`COMPARED`]: casts and
/// parentheses out) and fingerprinted again; those that still differ are
/// compared line by line, as sets: each line a schema has and `template`
/// lacks (`extra`), each line `template` has and the schema lacks
/// (`missing`). Every differing schema is named (`differs`), and a schema
/// with no entries at all is `absent`. A healthy schema sends nothing
/// back, and a drifted one is not read a second time.
const DIFFERENCES: &str = "
WITH stored AS MATERIALIZED (SELECT nspname, item AS line FROM (RAW_ITEMS) read),
stored_prints AS (
  -- Order-free (no sort of every line): the count and the sum of the
  -- lines' 64-bit hashes.
  SELECT nspname, count(*) || ' ' || sum(hashtextextended(line, 0)) AS print
  FROM stored GROUP BY nspname
),
suspects AS MATERIALIZED (
  SELECT p.nspname FROM stored_prints p JOIN stored_prints t ON t.nspname = 'template'
  WHERE p.nspname <> 'template' AND (p.print <> t.print OR NOT $2::bool)
),
printed AS MATERIALIZED (SELECT nspname, item AS line FROM (CATALOG_ITEMS) rendered),
items AS MATERIALIZED (SELECT nspname, COMPARED AS item FROM printed),
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
WHERE s <> 'template' AND NOT EXISTS (SELECT 1 FROM stored_prints p WHERE p.nspname = s)";

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
    // Every catalog read here is best done by index. The planner cannot
    // tell how many schemas the statement's steps hold, and reading all
    // of `pg_trigger` (a quarter of a million rows at 10,000 tenants) to
    // print `template` alone cost a quarter of a second per chunk.
    session.batch_execute("SET enable_seqscan = off").await?;
    let template_is_plain: bool = session.query_one(TEMPLATE_IS_PLAIN, &[]).await?.get(0);
    let printed = CATALOG_ITEMS.trim().replace(
        "(SCHEMAS)",
        "(SELECT 'template' UNION ALL SELECT nspname FROM suspects)",
    );
    let sql = DIFFERENCES
        .replace("(RAW_ITEMS)", &format!("({})", RAW_ITEMS.trim()))
        .replace("(CATALOG_ITEMS)", &format!("({printed})"))
        .replace("COMPARED", COMPARED);
    let mut drift: BTreeMap<String, Differences> = BTreeMap::new();
    for row in session.query(&sql, &[&schemas, &template_is_plain]).await? {
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
