//! The contacts of a deal, each with its part in it.

use serde_json::Value;

use atrium_domain::records::CONTACT;

use super::record_json;
use crate::{StoreError, TenantTx};

/// The deal's contacts in contact id order, after contact `after`.
pub async fn deal_contacts(
    tx: &TenantTx,
    deal_id: i32,
    after: i32,
    limit: i64,
) -> Result<Vec<(i32, Value)>, StoreError> {
    let contact = record_json(&CONTACT);
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
    let contact = record_json(&CONTACT);
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
