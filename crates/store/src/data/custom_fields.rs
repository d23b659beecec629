//! Custom field definitions of a tenant.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use crate::connection::database::constraint_of;
use crate::{StoreError, TenantTx};

#[derive(Debug, Clone)]
pub struct FieldDefinition {
    pub id: i32,
    pub entity: String,
    pub key: String,
    pub label: String,
    pub field_type: String,
    pub options: Option<serde_json::Value>,
    pub required: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, entity, key, label, type, options, required, created_at, updated_at";

fn from_row(r: &Row) -> FieldDefinition {
    FieldDefinition {
        id: r.get(0),
        entity: r.get(1),
        key: r.get(2),
        label: r.get(3),
        field_type: r.get(4),
        options: r.get(5),
        required: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
    }
}

/// Live definitions, by id; of one entity if given.
pub async fn list(tx: &TenantTx, entity: Option<&str>) -> Result<Vec<FieldDefinition>, StoreError> {
    let key = entity.map(str::to_owned);
    if let Some(found) = memo(tx).get(&key) {
        return Ok(found.clone());
    }
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM custom_field_definitions
                 WHERE deleted_at IS NULL AND ($1::text IS NULL OR entity = $1)
                 ORDER BY id LIMIT 1000"
            ),
            &[&entity],
        )
        .await?;
    let found: Vec<FieldDefinition> = rows.iter().map(from_row).collect();
    memo(tx).insert(key, found.clone());
    Ok(found)
}

/// One page of definitions in id order, after id `after`.
pub async fn page(
    tx: &TenantTx,
    entity: Option<&str>,
    after: i32,
    limit: i64,
) -> Result<Vec<FieldDefinition>, StoreError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM custom_field_definitions
                 WHERE deleted_at IS NULL AND ($1::text IS NULL OR entity = $1) AND id > $2
                 ORDER BY id LIMIT $3"
            ),
            &[&entity, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

fn memo(tx: &TenantTx) -> std::sync::MutexGuard<'_, crate::connection::tenant::DefinitionsMemo> {
    tx.definitions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub async fn get(tx: &TenantTx, id: i32) -> Result<Option<FieldDefinition>, StoreError> {
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM custom_field_definitions WHERE id = $1 AND deleted_at IS NULL"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

pub struct NewDefinition<'a> {
    pub entity: &'a str,
    pub key: &'a str,
    pub label: &'a str,
    pub field_type: &'a str,
    pub options: Option<serde_json::Value>,
    pub required: bool,
    pub created_by: i32,
}

pub async fn insert(tx: &TenantTx, new: &NewDefinition<'_>) -> Result<FieldDefinition, StoreError> {
    memo(tx).clear();
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO custom_field_definitions
                   (entity, key, label, type, options, required, created_by, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
            ),
            &[
                &new.entity,
                &new.key,
                &new.label,
                &new.field_type,
                &new.options,
                &new.required,
                &new.created_by,
            ],
        )
        .await
        .map_err(|e| match constraint_of(&e) {
            Some("custom_field_definitions_entity_key_key") => {
                StoreError::Conflict("this entity already has a field with this key".into())
            }
            _ => e.into(),
        })?;
    Ok(from_row(&row))
}

pub async fn update(
    tx: &TenantTx,
    id: i32,
    label: Option<&str>,
    options: Option<serde_json::Value>,
    required: Option<bool>,
    by: i32,
) -> Result<Option<FieldDefinition>, StoreError> {
    memo(tx).clear();
    let row = tx
        .query_opt(
            &format!(
                "UPDATE custom_field_definitions SET
                   label = COALESCE($2, label), options = COALESCE($3, options),
                   required = COALESCE($4, required), updated_by = $5
                 WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
            ),
            &[&id, &label, &options, &required, &by],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Retires a definition: stored values stay, the key is no longer accepted.
pub async fn delete(tx: &TenantTx, id: i32, by: i32) -> Result<bool, StoreError> {
    memo(tx).clear();
    let n = tx
        .execute(
            "UPDATE custom_field_definitions SET deleted_at = now(), updated_by = $2
             WHERE id = $1 AND deleted_at IS NULL",
            &[&id, &by],
        )
        .await?;
    Ok(n == 1)
}
