//! Who may change a record, and which version a change was meant for.

use serde_json::Value;

use atrium_domain::records::Entity;
use atrium_store::TenantTx;
use atrium_store::records;

use crate::{CurrentUser, ServiceError};

/// The version of a record for `ETag` / `If-Match`.
pub fn etag(record: &Value) -> String {
    format!(
        "\"{}-{}\"",
        record["id"],
        record["updated_at"]
            .as_str()
            .unwrap_or_default()
            .replace(['"', ' '], "")
    )
}

/// Whether an `If-Match` header value names `current` (a list of ETags,
/// weak or strong, or `*`).
pub fn if_match_allows(if_match: &str, current: &str) -> bool {
    if_match
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == current)
}

fn is_own(me: &CurrentUser, record: &Value) -> bool {
    let mine = Some(i64::from(me.id()));
    record["created_by"].as_i64() == mine || record["owner_id"].as_i64() == mine
}

/// Loads the live record for a change, refusing (403) what the user may
/// not change and (412) a stale `If-Match`.
pub(super) async fn for_change(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    id: i32,
    if_match: Option<&str>,
) -> Result<Value, ServiceError> {
    let current = records::get(tx, entity, id, false, true)
        .await?
        .ok_or_else(|| super::not_found(entity))?;
    if !me.access.may_change_record(is_own(me, &current)) {
        return Err(ServiceError::forbidden());
    }
    if let Some(expected) = if_match
        && !if_match_allows(expected, &etag(&current))
    {
        return Err(ServiceError::PreconditionFailed);
    }
    Ok(current)
}
