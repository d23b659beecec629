//! The contacts of a deal: any user who may read the deal lists them;
//! linking and unlinking is changing the deal.

use serde_json::Value;

use atrium_domain::Invalid;
use atrium_domain::records::{CONTACT, DEAL};
use atrium_store::TenantTx;
use atrium_store::records;

use crate::{CurrentUser, ServiceError};

/// The longest `role` of a contact in a deal.
const ROLE_MAX: usize = 50;

pub async fn deal_contacts(
    tx: &TenantTx,
    me: &CurrentUser,
    deal_id: i32,
    after: i32,
    limit: i64,
) -> Result<Vec<(i32, Value)>, ServiceError> {
    super::get(tx, me, &DEAL, deal_id, false).await?;
    Ok(records::deal_contacts(tx, deal_id, after, limit).await?)
}

pub async fn put_deal_contact(
    tx: &TenantTx,
    me: &CurrentUser,
    deal_id: i32,
    contact_id: i32,
    role: Option<&Value>,
) -> Result<Value, ServiceError> {
    super::access::for_change(tx, me, &DEAL, deal_id, None).await?;
    let role = match role {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if r.chars().count() <= ROLE_MAX => Some(r.clone()),
        Some(_) => {
            return Err(Invalid::new(
                "role",
                format!("must be a string of at most {ROLE_MAX} characters"),
            )
            .into());
        }
    };
    if !records::exists(tx, &CONTACT, contact_id).await? {
        return Err(ServiceError::NotFound("contact".into()));
    }
    Ok(records::put_deal_contact(tx, deal_id, contact_id, role.as_deref(), me.id()).await?)
}

pub async fn delete_deal_contact(
    tx: &TenantTx,
    me: &CurrentUser,
    deal_id: i32,
    contact_id: i32,
) -> Result<(), ServiceError> {
    super::access::for_change(tx, me, &DEAL, deal_id, None).await?;
    if records::delete_deal_contact(tx, deal_id, contact_id).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("deal contact".into()))
    }
}
