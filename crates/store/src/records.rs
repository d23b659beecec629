//! One repository for every CRM record table (companies, contacts, deals,
//! activities), driven by a description of its writable columns.
//!
//! Records travel as JSON objects that PostgreSQL builds itself
//! (`jsonb_build_object`), with money as decimal strings and timestamps in
//! RFC 3339; values travel in as text parameters cast in SQL. Column names
//! come only from the static descriptions below, never from a request.

use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::db::constraint_of;
use crate::{StoreError, TenantTx};

/// How a column's value is written (a text parameter cast in SQL) and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Text,
    Int,
    Numeric,
    Date,
    Timestamptz,
    Jsonb,
}

impl SqlType {
    fn cast(self) -> &'static str {
        match self {
            Self::Text => "::text",
            Self::Int => "::text::int",
            Self::Numeric => "::text::numeric",
            Self::Date => "::text::date",
            Self::Timestamptz => "::text::timestamptz",
            Self::Jsonb => "::text::jsonb",
        }
    }
}

#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub sql: SqlType,
}

/// A record table.
#[derive(Debug)]
pub struct Table {
    pub table: &'static str,
    /// The name in `audit_events.entity`.
    pub entity: &'static str,
    /// Writable columns, in the order values are given.
    pub columns: &'static [Column],
}

const fn col(name: &'static str, sql: SqlType) -> Column {
    Column { name, sql }
}

pub static CONTACTS: Table = Table {
    table: "contacts",
    entity: "contact",
    columns: &[
        col("first_name", SqlType::Text),
        col("last_name", SqlType::Text),
        col("email", SqlType::Text),
        col("phone", SqlType::Text),
        col("company_id", SqlType::Int),
        col("custom_fields", SqlType::Jsonb),
    ],
};

pub static DEALS: Table = Table {
    table: "deals",
    entity: "deal",
    columns: &[
        col("title", SqlType::Text),
        col("value", SqlType::Numeric),
        col("probability", SqlType::Numeric),
        col("stage", SqlType::Text),
        col("primary_contact_id", SqlType::Int),
        col("company_id", SqlType::Int),
        col("owner_id", SqlType::Int),
        col("expected_close_date", SqlType::Date),
        col("actual_close_date", SqlType::Date),
        col("deal_source", SqlType::Text),
        col("description", SqlType::Text),
        col("notes", SqlType::Text),
        col("custom_fields", SqlType::Jsonb),
    ],
};

pub static ACTIVITIES: Table = Table {
    table: "activities",
    entity: "activity",
    columns: &[
        col("kind", SqlType::Text),
        col("subject", SqlType::Text),
        col("body", SqlType::Text),
        col("due_at", SqlType::Timestamptz),
        col("completed_at", SqlType::Timestamptz),
        col("contact_id", SqlType::Int),
        col("company_id", SqlType::Int),
        col("deal_id", SqlType::Int),
        col("owner_id", SqlType::Int),
    ],
};

/// A pipeline stage's default probability (two decimals) and kind.
pub async fn stage_info(tx: &TenantTx, name: &str) -> Result<Option<(String, String)>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT probability::text, kind FROM pipeline_stages WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Whether `id` is an active, not deleted user of this tenant.
pub async fn active_user_exists(tx: &TenantTx, id: i32) -> Result<bool, StoreError> {
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND active AND deleted_at IS NULL)",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

/// Today's date in UTC, as the server derives "today".
pub async fn today_utc(tx: &TenantTx) -> Result<String, StoreError> {
    let row = tx
        .query_one("SELECT (now() AT TIME ZONE 'UTC')::date::text", &[])
        .await?;
    Ok(row.get(0))
}

pub static COMPANIES: Table = Table {
    table: "companies",
    entity: "company",
    columns: &[
        col("name", SqlType::Text),
        col("domain", SqlType::Text),
        col("industry", SqlType::Text),
        col("street", SqlType::Text),
        col("city", SqlType::Text),
        col("state", SqlType::Text),
        col("country", SqlType::Text),
        col("postal_code", SqlType::Text),
        col("parent_company_id", SqlType::Int),
        col("custom_fields", SqlType::Jsonb),
        col("company_size", SqlType::Text),
        col("employee_count", SqlType::Int),
        col("annual_revenue", SqlType::Numeric),
        col("revenue_currency", SqlType::Text),
    ],
};

impl Table {
    /// The record as JSON: id, the writable columns, the audit columns
    /// (an SQL expression over alias `t`).
    pub fn json(&self) -> String {
        let mut pairs = vec!["'id', t.id".to_owned()];
        for c in self.columns {
            let read = if c.sql == SqlType::Numeric {
                format!("t.{}::text", c.name)
            } else {
                format!("t.{}", c.name)
            };
            pairs.push(format!("'{}', {read}", c.name));
        }
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

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

fn params(values: &[Option<String>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn store_error(e: tokio_postgres::Error) -> StoreError {
    match constraint_of(&e) {
        Some(name) if name.ends_with("_fkey") || name.ends_with("_check") => {
            StoreError::Conflict(format!("constraint {name}"))
        }
        _ => e.into(),
    }
}

/// Inserts a record; `values` follow `table.columns` (None is NULL).
pub async fn insert(
    tx: &TenantTx,
    table: &Table,
    values: &[Option<String>],
    by: i32,
) -> Result<Value, StoreError> {
    assert_eq!(values.len(), table.columns.len());
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let placeholders: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}{}", i + 1, c.sql.cast()))
        .collect();
    let by_param = values.len() + 1;
    let sql = format!(
        "INSERT INTO {} AS t ({}, created_by, updated_by)
         VALUES ({}, ${by_param}::text::int, ${by_param}::text::int) RETURNING {}",
        table.table,
        names.join(", "),
        placeholders.join(", "),
        table.json()
    );
    let by = Some(by.to_string());
    let mut all = params(values);
    all.push(&by);
    let row = tx.query_one(&sql, &all).await.map_err(store_error)?;
    Ok(row.get(0))
}

/// A record by id; deleted ones only when asked. `lock` takes a row lock
/// for a read-modify-write.
pub async fn get(
    tx: &TenantTx,
    table: &Table,
    id: i32,
    include_deleted: bool,
    lock: bool,
) -> Result<Option<Value>, StoreError> {
    let sql = format!(
        "SELECT {} FROM {} t WHERE t.id = $1 AND ($2 OR t.deleted_at IS NULL){}",
        table.json(),
        table.table,
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = tx.query_opt(&sql, &[&id, &include_deleted]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// Whether a live (not deleted) record with this id exists.
pub async fn exists(tx: &TenantTx, table: &Table, id: i32) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1 AND deleted_at IS NULL)",
        table.table
    );
    Ok(tx.query_one(&sql, &[&id]).await?.get(0))
}

/// Sets the given columns (`Some`) and keeps the others (`None`).
pub async fn update(
    tx: &TenantTx,
    table: &Table,
    id: i32,
    changes: &[Option<Option<String>>],
    by: i32,
) -> Result<Option<Value>, StoreError> {
    assert_eq!(changes.len(), table.columns.len());
    // One statement shape per table: each column takes a flag and a value.
    let sets: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (flag, value) = (2 * i + 2, 2 * i + 3);
            format!(
                "{name} = CASE WHEN ${flag}::boolean THEN ${value}{cast} ELSE t.{name} END",
                name = c.name,
                cast = c.sql.cast()
            )
        })
        .collect();
    let by_param = 2 * table.columns.len() + 2;
    let sql = format!(
        "UPDATE {} AS t SET {}, updated_by = ${by_param} WHERE t.id = $1 AND t.deleted_at IS NULL RETURNING {}",
        table.table,
        sets.join(", "),
        table.json()
    );
    let flags: Vec<bool> = changes.iter().map(Option::is_some).collect();
    let values: Vec<Option<String>> = changes.iter().map(|c| c.clone().flatten()).collect();
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
    table: &Table,
    id: i32,
    deleted: bool,
    by: i32,
) -> Result<Option<Value>, StoreError> {
    let sql = format!(
        "UPDATE {} AS t SET deleted_at = CASE WHEN $2 THEN now() END, updated_by = $3
         WHERE t.id = $1 AND (t.deleted_at IS NULL) = $2 RETURNING {}",
        table.table,
        table.json()
    );
    let row = tx.query_opt(&sql, &[&id, &deleted, &by]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// A condition of a list query. `{}` marks each parameter in `sql`, in
/// order; parameters are text and cast in `sql` where needed.
pub struct Condition {
    pub sql: String,
    pub params: Vec<Option<String>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Sort {
    /// A column of the table, or `created_at`.
    pub column: &'static str,
    pub descending: bool,
    /// How the sort column's text form is cast back for the keyset.
    pub sql: SqlType,
}

pub struct ListQuery {
    pub conditions: Vec<Condition>,
    pub sort: Sort,
    /// Relevance: when given, rows come best first by this `float8`
    /// expression (then by id), instead of by `sort`.
    pub rank: Option<Condition>,
    /// The sort value (as text) and id of the last row of the previous page.
    pub after: Option<(String, i32)>,
    pub limit: i64,
    pub include_deleted: bool,
}

/// A page of records with each row's sort value (for the next cursor).
pub async fn list(
    tx: &TenantTx,
    table: &Table,
    query: &ListQuery,
) -> Result<Vec<(Value, String, i32)>, StoreError> {
    let mut params: Vec<Option<String>> = Vec::new();
    let mut wheres = vec![if query.include_deleted {
        "true".to_owned()
    } else {
        "t.deleted_at IS NULL".to_owned()
    }];
    let bind = |sql: &str, values: &[Option<String>], params: &mut Vec<Option<String>>| {
        let mut out = String::new();
        let mut pieces = sql.split("{}");
        out.push_str(pieces.next().unwrap_or_default());
        for (piece, value) in pieces.zip(values) {
            params.push(value.clone());
            out.push_str(&format!("${}", params.len()));
            out.push_str(piece);
        }
        out
    };
    for condition in &query.conditions {
        wheres.push(bind(&condition.sql, &condition.params, &mut params));
    }
    let sort = query.sort;
    let (op, dir) = if sort.descending || query.rank.is_some() {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    // The ordering expression is bound again wherever it appears.
    let order_key = |params: &mut Vec<Option<String>>| match &query.rank {
        Some(rank) => format!("({})::float8", bind(&rank.sql, &rank.params, params)),
        None => format!("t.{}", sort.column),
    };
    let key_cast = if query.rank.is_some() {
        "::text::float8"
    } else {
        sort.sql.cast()
    };
    if let Some((value, id)) = &query.after {
        let key = order_key(&mut params);
        let keyset = format!("({key}, t.id) {op} ({{}}{key_cast}, {{}}::text::int)");
        wheres.push(bind(
            &keyset,
            &[Some(value.clone()), Some(id.to_string())],
            &mut params,
        ));
    }
    let select_key = order_key(&mut params);
    let order = order_key(&mut params);
    params.push(Some(query.limit.to_string()));
    let sql = format!(
        "SELECT {json}, ({select_key})::text, t.id FROM {table} t WHERE {wheres}
         ORDER BY {order} {dir}, t.id {dir} LIMIT ${limit}::text::bigint",
        json = table.json(),
        table = table.table,
        wheres = wheres.join(" AND "),
        limit = params.len(),
    );
    let rows = tx.query(&sql, &self::params(&params)).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Writes an audit event for a change to a record.
pub async fn audit(
    tx: &TenantTx,
    table: &Table,
    id: i32,
    action: &str,
    user_id: i32,
    changes: &Value,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit_events (entity, entity_id, action, user_id, changes) VALUES ($1, $2, $3, $4, $5)",
        &[&table.entity, &id, &action, &user_id, changes],
    )
    .await?;
    Ok(())
}

/// Whether making `parent` the parent of company `id` would close a cycle.
pub async fn company_parent_makes_cycle(
    tx: &TenantTx,
    id: i32,
    parent: i32,
) -> Result<bool, StoreError> {
    let row = tx
        .query_one(
            "WITH RECURSIVE up (id, parent_company_id, depth) AS (
               SELECT id, parent_company_id, 1 FROM companies WHERE id = $2
               UNION ALL
               SELECT c.id, c.parent_company_id, up.depth + 1
               FROM companies c JOIN up ON c.id = up.parent_company_id
               WHERE up.depth < 10000
             )
             SELECT EXISTS (SELECT 1 FROM up WHERE id = $1)",
            &[&id, &parent],
        )
        .await?;
    Ok(row.get(0))
}

/// A page of a record's audit events, newest first.
pub async fn history(
    tx: &TenantTx,
    entity: &str,
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
            &[&entity, &id, &before, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A contact's part in a deal.
/// The deal's contacts in contact id order, after contact `after`.
pub async fn deal_contacts(
    tx: &TenantTx,
    deal_id: i32,
    after: i32,
    limit: i64,
) -> Result<Vec<(i32, Value)>, StoreError> {
    let contact = CONTACTS.json();
    let rows = tx
        .query(
            &format!(
                "SELECT dc.contact_id,
                        jsonb_build_object('contact_id', dc.contact_id, 'role', dc.role, 'contact', {contact})
                 FROM deal_contacts dc JOIN contacts t ON t.id = dc.contact_id
                 WHERE dc.deal_id = $1 AND t.deleted_at IS NULL AND dc.contact_id > $2
                 ORDER BY dc.contact_id LIMIT $3"
            ),
            &[&deal_id, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Links a contact to a deal with a role, or changes the role.
pub async fn put_deal_contact(
    tx: &TenantTx,
    deal_id: i32,
    contact_id: i32,
    role: Option<&str>,
    by: i32,
) -> Result<Value, StoreError> {
    tx.execute(
        "INSERT INTO deal_contacts (deal_id, contact_id, role, created_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (deal_id, contact_id) DO UPDATE SET role = EXCLUDED.role",
        &[&deal_id, &contact_id, &role, &by],
    )
    .await?;
    let contact = CONTACTS.json();
    let row = tx
        .query_one(
            &format!(
                "SELECT jsonb_build_object('contact_id', dc.contact_id, 'role', dc.role, 'contact', {contact})
                 FROM deal_contacts dc JOIN contacts t ON t.id = dc.contact_id
                 WHERE dc.deal_id = $1 AND dc.contact_id = $2"
            ),
            &[&deal_id, &contact_id],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn delete_deal_contact(
    tx: &TenantTx,
    deal_id: i32,
    contact_id: i32,
) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            "DELETE FROM deal_contacts WHERE deal_id = $1 AND contact_id = $2",
            &[&deal_id, &contact_id],
        )
        .await?;
    Ok(n == 1)
}

/// Live contacts with this email (any case): an import updates the one
/// it finds; two or more make the row ambiguous.
pub async fn contacts_by_email(tx: &TenantTx, email: &str) -> Result<Vec<i32>, StoreError> {
    let rows = tx
        .query(
            "SELECT id FROM contacts WHERE lower(email) = lower($1) AND deleted_at IS NULL ORDER BY id LIMIT 2",
            &[&email],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A live company with this name (any case), the oldest if several.
pub async fn company_by_name(tx: &TenantTx, name: &str) -> Result<Option<i32>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT id FROM companies WHERE lower(name) = lower($1) AND deleted_at IS NULL ORDER BY id LIMIT 1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Company names by id, for the export's `company` column.
pub async fn company_names(tx: &TenantTx, ids: &[i32]) -> Result<Vec<(i32, String)>, StoreError> {
    let rows = tx
        .query("SELECT id, name FROM companies WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
