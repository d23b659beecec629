//! An activity's own rules: its owner defaults to its creator, and it can
//! be marked done.

use serde_json::Value;

use atrium_domain::records::{ACTIVITY, Changes, Datum, NewRecord};
use atrium_store::TenantTx;

use crate::{CurrentUser, ServiceError};

pub(super) fn on_create(me: &CurrentUser, values: &mut NewRecord) {
    let owner = values.get_mut("owner_id");
    if owner.is_none() {
        *owner = Some(Datum::Int(me.id()));
    }
}

/// Marks an activity done (now), unless it already is.
pub async fn complete_activity(
    tx: &TenantTx,
    me: &CurrentUser,
    id: i32,
) -> Result<Value, ServiceError> {
    let current = super::access::for_change(tx, me, &ACTIVITY, id, None).await?;
    if !current["completed_at"].is_null() {
        return Ok(current);
    }
    let mut changes = Changes::new(&ACTIVITY);
    let now = chrono::Utc::now().fixed_offset();
    changes.set("completed_at", Some(Some(Datum::Timestamp(now))));
    super::change(tx, me, id, &current, &changes).await
}
