//! One repository for every CRM record table (companies, contacts, deals,
//! activities), driven by the record types' definitions in the domain.
//!
//! Records travel as JSON objects that PostgreSQL builds itself
//! (`jsonb_build_object`), with money as decimal strings and timestamps in
//! RFC 3339: the answer is the definition's fields, with no second
//! description of them in Rust. Values travel in as [`Datum`]s, bound as
//! text parameters cast in SQL to the column's type. Table and column
//! names come only from the static definitions, never from a request.

mod deal_contacts;
mod list;
mod lookups;

pub use deal_contacts::{deal_contacts, delete_deal_contact, put_deal_contact};
#[cfg(feature = "testing")]
pub use list::list_plan;
pub use list::{Condition, ListQuery, list};

pub use lookups::{
    company_by_name, company_names, company_parent_makes_cycle, contacts_by_email, today_utc,
};

use serde_json::Value;
use serde_json::value::RawValue;
use tokio_postgres::types::{FromSql, Json, ToSql, Type};

use atrium_domain::records::{Changes, Datum, Entity, Kind, NewRecord};

use crate::connection::database::constraint_of;
use crate::{StoreError, TenantTx};

/// The cast that turns a text parameter into the column's type.
fn cast(kind: Kind) -> &'static str {
    match kind {
        Kind::Text { .. } | Kind::Email | Kind::Currency | Kind::Choice(_) | Kind::Stage => {
            "::text"
        }
        Kind::Int { .. } | Kind::Ref(_) | Kind::UserRef => "::text::int",
        Kind::Money { .. } | Kind::Percent => "::text::numeric",
        Kind::Date => "::text::date",
        Kind::Timestamp => "::text::timestamptz",
        Kind::CustomFields => "::text::jsonb",
    }
}

/// The cast of a column a list sorts or filters by: a field, or
/// `created_at`.
fn column_cast(entity: &Entity, column: &str) -> &'static str {
    entity
        .field(column)
        .map_or("::text::timestamptz", |field| cast(field.kind))
}

/// How a list hands over its records: as a [`Value`] to work with, or
/// as a [`RawRecord`] to pass on as it is.
pub trait Record: for<'a> FromSql<'a> + Send {}

impl Record for Value {}

/// A record's JSON as PostgreSQL wrote it, checked to be JSON but not
/// read into a tree: an API answer that only passes records on skips
/// building and serialising a map per record (for a page of 50 contacts,
/// most of the server's own time).
#[derive(Debug, serde::Serialize)]
#[serde(transparent)]
pub struct RawRecord(Box<RawValue>);

impl Record for RawRecord {}

impl<'a> FromSql<'a> for RawRecord {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Json::<Box<RawValue>>::from_sql(ty, raw).map(|Json(json)| Self(json))
    }

    fn accepts(ty: &Type) -> bool {
        <Json<Box<RawValue>> as FromSql>::accepts(ty)
    }
}

/// The record as JSON: id, the writable columns, the audit columns (an
/// SQL expression over alias `t`).
pub fn record_json(entity: &Entity) -> String {
    let mut pairs = vec!["'id', t.id".to_owned()];
    pairs.extend(field_reads(entity).map(|(name, read)| format!("'{name}', {read}")));
    for audit in [
        "created_by",
        "updated_by",
        "created_at",
        "updated_at",
        "deleted_at",
    ] {
        pairs.push(format!("'{audit}', t.{audit}"));
    }
    format!("jsonb_build_object({})", pairs.join(", "))
}

/// Each writable field's name and its value as [`record_json`] reads it.
fn field_reads(entity: &Entity) -> impl Iterator<Item = (&'static str, String)> + '_ {
    entity.fields.iter().map(|field| {
        let read = match field.kind {
            // Decimals as exact text, never as JSON numbers.
            Kind::Money { .. } | Kind::Percent => format!("t.{}::text", field.name),
            _ => format!("t.{}", field.name),
        };
        (field.name, read)
    })
}

fn sql_text(value: &Option<Datum>) -> Option<String> {
    value.as_ref().map(Datum::to_sql_text)
}

fn store_error(e: tokio_postgres::Error) -> StoreError {
    match constraint_of(&e) {
        Some(name) if name.ends_with("_fkey") || name.ends_with("_check") => {
            StoreError::Conflict(format!("constraint {name}"))
        }
        _ => e.into(),
    }
}

/// Inserts a record.
pub async fn insert(tx: &TenantTx, values: &NewRecord, by: i32) -> Result<Value, StoreError> {
    let entity = values.entity();
    let names: Vec<&str> = entity.fields.iter().map(|f| f.name).collect();
    let placeholders: Vec<String> = entity
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("${}{}", i + 1, cast(f.kind)))
        .collect();
    let by_param = names.len() + 1;
    let sql = format!(
        "INSERT INTO {} AS t ({}, created_by, updated_by)
         VALUES ({}, ${by_param}::text::int, ${by_param}::text::int) RETURNING {}",
        entity.table,
        names.join(", "),
        placeholders.join(", "),
        record_json(entity)
    );
    let texts: Vec<Option<String>> = values.slots().iter().map(sql_text).collect();
    let by = Some(by.to_string());
    let mut all: Vec<&(dyn ToSql + Sync)> =
        texts.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    all.push(&by);
    let row = tx.query_one(&sql, &all).await.map_err(store_error)?;
    Ok(row.get(0))
}

/// Inserts records of one type in one statement, in the given order (their
/// ids ascend with it), and audits each creation in the same statement:
/// every field that is not null, as its change from null, which is what
/// [`audit`] records for a record created alone. Answers the new ids in
/// the given order. The bulk path of an import: only ids travel back.
pub async fn insert_many_audited(
    tx: &TenantTx,
    records: &[NewRecord],
    by: i32,
) -> Result<Vec<i32>, StoreError> {
    let Some(first) = records.first() else {
        return Ok(Vec::new());
    };
    let entity = first.entity();
    let names: Vec<&str> = entity.fields.iter().map(|f| f.name).collect();
    let columns: Vec<Vec<Option<String>>> = (0..names.len())
        .map(|i| records.iter().map(|r| sql_text(&r.slots()[i])).collect())
        .collect();
    let arrays: Vec<String> = (1..=names.len()).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (0..names.len()).map(|i| format!("c{i}")).collect();
    let reads: Vec<String> = entity
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("u.c{i}{}", cast(f.kind)))
        .collect();
    let (by_param, entity_param) = (names.len() + 1, names.len() + 2);
    // A created record's audit: each field that is not null, from null.
    // (The one JSON field, custom_fields, is an object by its check, never
    // JSON null.)
    let changes: Vec<String> = field_reads(entity)
        .map(|(name, read)| {
            format!(
                "CASE WHEN {read} IS NULL THEN '{{}}'::jsonb \
                 ELSE jsonb_build_object('{name}', jsonb_build_object('from', NULL, 'to', {read})) END"
            )
        })
        .collect();
    let sql = format!(
        "WITH created AS (
             INSERT INTO {table} AS t ({names}, created_by, updated_by)
             SELECT {reads}, ${by_param}::text::int, ${by_param}::text::int
             FROM unnest({arrays}) WITH ORDINALITY AS u({aliases}, n) ORDER BY u.n
             RETURNING t.id, {changes} AS changes
         )
         INSERT INTO audit_events (entity, entity_id, action, user_id, changes)
         SELECT ${entity_param}, c.id, 'create', ${by_param}::text::int, c.changes
         FROM created c ORDER BY c.id
         RETURNING entity_id",
        table = entity.table,
        names = names.join(", "),
        reads = reads.join(", "),
        arrays = arrays.join(", "),
        aliases = aliases.join(", "),
        changes = changes.join(" || "),
    );
    let by = Some(by.to_string());
    let mut params: Vec<&(dyn ToSql + Sync)> =
        columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
    params.push(&by);
    params.push(&entity.name);
    let mut ids: Vec<i32> = tx
        .query(&sql, &params)
        .await
        .map_err(store_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Rows are inserted in the order of the SELECT, and each takes the
    // sequence's next id as it is inserted.
    ids.sort_unstable();
    Ok(ids)
}

/// A record by id; deleted ones only when asked. `lock` takes a row lock
/// for a read-modify-write.
pub async fn get(
    tx: &TenantTx,
    entity: &Entity,
    id: i32,
    include_deleted: bool,
    lock: bool,
) -> Result<Option<Value>, StoreError> {
    let sql = format!(
        "SELECT {} FROM {} t WHERE t.id = $1 AND ($2 OR t.deleted_at IS NULL){}",
        record_json(entity),
        entity.table,
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = tx.query_opt(&sql, &[&id, &include_deleted]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// Whether a live (not deleted) record with this id exists.
pub async fn exists(tx: &TenantTx, entity: &Entity, id: i32) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1 AND deleted_at IS NULL)",
        entity.table
    );
    Ok(tx.query_one(&sql, &[&id]).await?.get(0))
}

/// Sets the given columns (`Some`) and keeps the others (`None`).
pub async fn update(
    tx: &TenantTx,
    id: i32,
    changes: &Changes,
    by: i32,
) -> Result<Option<Value>, StoreError> {
    let entity = changes.entity();
    // One statement shape per table: each column takes a flag and a value.
    let sets: Vec<String> = entity
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (flag, value) = (2 * i + 2, 2 * i + 3);
            format!(
                "{name} = CASE WHEN ${flag}::boolean THEN ${value}{cast} ELSE t.{name} END",
                name = f.name,
                cast = cast(f.kind)
            )
        })
        .collect();
    let by_param = 2 * entity.fields.len() + 2;
    let sql = format!(
        "UPDATE {} AS t SET {}, updated_by = ${by_param} WHERE t.id = $1 AND t.deleted_at IS NULL RETURNING {}",
        entity.table,
        sets.join(", "),
        record_json(entity)
    );
    let flags: Vec<bool> = changes.slots().iter().map(Option::is_some).collect();
    let values: Vec<Option<String>> = changes
        .slots()
        .iter()
        .map(|c| c.as_ref().and_then(sql_text))
        .collect();
    let mut all: Vec<&(dyn ToSql + Sync)> = vec![&id];
    for (flag, value) in flags.iter().zip(&values) {
        all.push(flag);
        all.push(value);
    }
    all.push(&by);
    let row = tx.query_opt(&sql, &all).await.map_err(store_error)?;
    Ok(row.map(|r| r.get(0)))
}

/// Soft-deletes (`deleted = true`) or restores a record; None if it was
/// not in the other state.
pub async fn set_deleted(
    tx: &TenantTx,
    entity: &Entity,
    id: i32,
    deleted: bool,
    by: i32,
) -> Result<Option<Value>, StoreError> {
    let sql = format!(
        "UPDATE {} AS t SET deleted_at = CASE WHEN $2 THEN now() END, updated_by = $3
         WHERE t.id = $1 AND (t.deleted_at IS NULL) = $2 RETURNING {}",
        entity.table,
        record_json(entity)
    );
    let row = tx.query_opt(&sql, &[&id, &deleted, &by]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// Writes an audit event for a change to a record.
pub async fn audit(
    tx: &TenantTx,
    entity: &Entity,
    id: i32,
    action: &str,
    user_id: i32,
    changes: &Value,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit_events (entity, entity_id, action, user_id, changes) VALUES ($1, $2, $3, $4, $5)",
        &[&entity.name, &id, &action, &user_id, changes],
    )
    .await?;
    Ok(())
}

/// [`contacts_by_email`] for many emails in one statement: each email as
/// given and as compared (lower-cased), with the ids it finds.
pub async fn contacts_by_emails(
    tx: &TenantTx,
    emails: &[&str],
) -> Result<Vec<(String, String, Vec<i32>)>, StoreError> {
    let rows = tx
        .query(
            "SELECT e.email, lower(e.email), ARRAY(SELECT id FROM contacts
                 WHERE lower(email) = lower(e.email) AND deleted_at IS NULL ORDER BY id LIMIT 2)
             FROM unnest($1::text[]) AS e(email)",
            &[&emails],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// [`company_by_name`] for many names in one statement: each name as
/// given, with the company it finds.
pub async fn companies_by_names(
    tx: &TenantTx,
    names: &[&str],
) -> Result<Vec<(String, Option<i32>)>, StoreError> {
    let rows = tx
        .query(
            "SELECT n.name, (SELECT id FROM companies
                 WHERE lower(name) = lower(n.name) AND deleted_at IS NULL ORDER BY id LIMIT 1)
             FROM unnest($1::text[]) AS n(name)",
            &[&names],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A page of a record's audit events, newest first.
pub async fn history(
    tx: &TenantTx,
    entity: &Entity,
    id: i32,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<(i64, Value)>, StoreError> {
    let rows = tx
        .query(
            "SELECT id, jsonb_build_object('action', action, 'user_id', user_id, 'at', at, 'changes', changes)
             FROM audit_events
             WHERE entity = $1 AND entity_id = $2 AND ($3::bigint IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4",
            &[&entity.name, &id, &before, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A record that changed lately, as a person names it.
#[derive(Debug, Clone)]
pub struct RecentChange {
    pub entity: &'static Entity,
    pub id: i32,
    pub title: String,
    /// `create`, `update`, `delete` or `restore`.
    pub action: String,
    pub user_id: Option<i32>,
    /// `YYYY-MM-DD HH:MM`, UTC.
    pub at: String,
}

/// The live records changed most recently, each once, newest first: read
/// from the last few hundred audit events (the audit's own index), so the
/// cost does not grow with the tenant.
pub async fn recently_changed(tx: &TenantTx, limit: i64) -> Result<Vec<RecentChange>, StoreError> {
    let rows = tx
        .query(
            "SELECT e.entity::text, e.entity_id, e.action::text, e.user_id,
                    to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                    CASE e.entity WHEN 'company' THEN co.name
                        WHEN 'contact' THEN concat_ws(' ', ct.first_name, ct.last_name)
                        WHEN 'deal' THEN d.title ELSE a.subject END
             FROM (
                SELECT DISTINCT ON (entity, entity_id) id, entity, entity_id, action, user_id, at
                FROM (SELECT * FROM audit_events ORDER BY id DESC LIMIT 500) latest
                ORDER BY entity, entity_id, id DESC
             ) e
             LEFT JOIN companies co ON e.entity = 'company' AND co.id = e.entity_id AND co.deleted_at IS NULL
             LEFT JOIN contacts ct ON e.entity = 'contact' AND ct.id = e.entity_id AND ct.deleted_at IS NULL
             LEFT JOIN deals d ON e.entity = 'deal' AND d.id = e.entity_id AND d.deleted_at IS NULL
             LEFT JOIN activities a ON e.entity = 'activity' AND a.id = e.entity_id AND a.deleted_at IS NULL
             WHERE COALESCE(co.id, ct.id, d.id, a.id) IS NOT NULL
             ORDER BY e.id DESC
             LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            let entity = atrium_domain::records::ENTITIES
                .iter()
                .find(|e| e.name == name)?;
            Some(RecentChange {
                entity,
                id: r.get(1),
                action: r.get(2),
                user_id: r.get(3),
                at: r.get(4),
                title: r.get(5),
            })
        })
        .collect())
}

/// Live records of a type as choices for a select: id and the name a
/// person knows it by (`title` fields joined by a space), in the order of
/// the type's `name` sort (on its index), else of the first title field.
/// The fields come from the static definitions, never from a request.
pub async fn titles(
    tx: &TenantTx,
    entity: &Entity,
    title: &[&str],
    limit: i64,
) -> Result<Vec<(i32, String)>, StoreError> {
    debug_assert!(title.iter().all(|f| entity.field(f).is_some()));
    let name = format!(
        "concat_ws(' ', {})",
        title
            .iter()
            .map(|f| format!("t.{f}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let order = entity.sort("name").map_or(title[0], |s| s.column);
    let rows = tx
        .query(
            &format!(
                "SELECT t.id, {name} FROM {} t WHERE t.deleted_at IS NULL
                 ORDER BY t.{order}, t.id LIMIT $1",
                entity.table
            ),
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
