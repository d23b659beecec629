//! What the audit records of a change, and a record's history.

use serde_json::{Map, Value, json};

use atrium_domain::Invalid;
use atrium_domain::records::{ENTITIES, Entity};
use atrium_store::TenantTx;
use atrium_store::records;

use crate::ServiceError;

/// The changes between two versions of a record, as the audit stores them.
pub(super) fn diff(entity: &Entity, before: &Value, after: &Value) -> Value {
    let mut changes = Map::new();
    for field in entity.fields {
        let (from, to) = (&before[field.name], &after[field.name]);
        if from != to {
            changes.insert(field.name.to_owned(), json!({"from": from, "to": to}));
        }
    }
    Value::Object(changes)
}

/// A record's audit history, newest first; `entity` is a record type's
/// name (`company`, `contact`, `deal`, `activity`).
pub async fn history(
    tx: &TenantTx,
    entity: &str,
    id: i32,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<(i64, Value)>, ServiceError> {
    let Some(entity) = ENTITIES.iter().find(|e| e.name == entity) else {
        let names: Vec<&str> = ENTITIES.iter().map(|e| e.name).collect();
        return Err(Invalid::new("entity", format!("must be one of {}", names.join(", "))).into());
    };
    Ok(records::history(tx, entity, id, before, limit).await?)
}

/// The records changed most recently in the organisation, each once.
pub async fn recently_changed(
    tx: &TenantTx,
    limit: i64,
) -> Result<Vec<records::RecentChange>, ServiceError> {
    Ok(records::recently_changed(tx, limit).await?)
}
