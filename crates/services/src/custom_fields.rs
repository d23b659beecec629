//! Managing custom field definitions.

use serde_json::Value;

use atrium_domain::Action;
use atrium_domain::custom_fields::{CustomEntity, FieldType, parse_key, parse_options};
use atrium_store::TenantTx;
use atrium_store::custom_fields::{self, FieldDefinition, NewDefinition};

use crate::tenants::parse_name;
use crate::{CurrentUser, Problems, ServiceError};

/// Definitions in id order after id `after`, at most `limit` of them.
pub async fn list(
    tx: &TenantTx,
    entity: Option<&str>,
    after: i32,
    limit: i64,
) -> Result<Vec<FieldDefinition>, ServiceError> {
    let entity = entity.map(CustomEntity::parse).transpose()?;
    Ok(custom_fields::page(tx, entity.map(CustomEntity::as_str), after, limit).await?)
}

pub struct NewField {
    pub entity: String,
    pub key: String,
    pub label: String,
    pub field_type: String,
    pub options: Option<Value>,
    pub required: Option<bool>,
}

pub async fn create(
    tx: &TenantTx,
    me: &CurrentUser,
    new: NewField,
) -> Result<FieldDefinition, ServiceError> {
    me.require(Action::CustomFieldsManage)?;
    let mut problems = Problems::default();
    let entity = problems.check(CustomEntity::parse(&new.entity));
    let key = problems.check(parse_key(&new.key));
    let label = problems.check(parse_name("label", &new.label, 100));
    let field_type = problems.check(FieldType::parse(&new.field_type));
    let options = field_type.and_then(|t| problems.check(parse_options(t, new.options.as_ref())));
    problems.into_result()?;
    Ok(custom_fields::insert(
        tx,
        &NewDefinition {
            entity: entity.expect("checked").as_str(),
            key: &key.expect("checked"),
            label: &label.expect("checked"),
            field_type: field_type.expect("checked").as_str(),
            options: options.flatten().map(Value::from),
            required: new.required.unwrap_or(false),
            created_by: me.id(),
        },
    )
    .await?)
}

#[derive(Default)]
pub struct FieldChanges {
    pub label: Option<String>,
    pub options: Option<Value>,
    pub required: Option<bool>,
}

pub async fn update(
    tx: &TenantTx,
    me: &CurrentUser,
    id: i32,
    changes: FieldChanges,
) -> Result<FieldDefinition, ServiceError> {
    me.require(Action::CustomFieldsManage)?;
    let current = custom_fields::get(tx, id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("custom field".into()))?;
    let field_type =
        FieldType::parse(&current.field_type).map_err(|e| anyhow::anyhow!("stored type: {e}"))?;
    let mut problems = Problems::default();
    let label = changes
        .label
        .and_then(|l| problems.check(parse_name("label", &l, 100)));
    let options = match changes.options {
        Some(o) => problems
            .check(parse_options(field_type, Some(&o)))
            .flatten(),
        None => None,
    };
    problems.into_result()?;
    custom_fields::update(
        tx,
        id,
        label.as_deref(),
        options.map(Value::from),
        changes.required,
        me.id(),
    )
    .await?
    .ok_or_else(|| ServiceError::NotFound("custom field".into()))
}

pub async fn delete(tx: &TenantTx, me: &CurrentUser, id: i32) -> Result<(), ServiceError> {
    me.require(Action::CustomFieldsManage)?;
    if custom_fields::delete(tx, id, me.id()).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("custom field".into()))
    }
}
