//! A company's own rule: its parents never lead back to it.

use atrium_domain::Invalid;
use atrium_domain::records::Changes;
use atrium_store::TenantTx;
use atrium_store::records;

use crate::{Problems, ServiceError};

pub(super) async fn on_change(
    tx: &TenantTx,
    id: i32,
    changes: &Changes,
    problems: &mut Problems,
) -> Result<(), ServiceError> {
    let Some(Some(parent)) = changes.get("parent_company_id") else {
        return Ok(());
    };
    let Some(parent) = parent.as_id() else {
        return Ok(());
    };
    if parent == id || records::company_parent_makes_cycle(tx, id, parent).await? {
        problems.push(Invalid::new(
            "parent_company_id",
            "would make the company its own ancestor",
        ));
    }
    Ok(())
}
