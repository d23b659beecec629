//! Custom field values on records, checked against the organisation's
//! definitions.

use std::collections::HashMap;

use serde_json::{Map, Value};

use atrium_domain::Invalid;
use atrium_domain::custom_fields::{CustomEntity, Definition, FieldType};
use atrium_store::TenantTx;
use atrium_store::custom_fields as definitions;

use crate::{Problems, ServiceError};

/// The definitions of a record type's custom fields, by key.
pub(super) async fn load(
    tx: &TenantTx,
    entity: CustomEntity,
) -> Result<HashMap<String, Definition>, ServiceError> {
    let mut out = HashMap::new();
    for d in definitions::list(tx, Some(entity.as_str())).await? {
        let options = d
            .options
            .as_ref()
            .and_then(|o| serde_json::from_value::<Vec<String>>(o.clone()).ok())
            .unwrap_or_default();
        let field_type =
            FieldType::parse(&d.field_type).map_err(|e| anyhow::anyhow!("stored type: {e}"))?;
        out.insert(
            d.key.clone(),
            Definition {
                key: d.key,
                field_type,
                options,
                required: d.required,
            },
        );
    }
    Ok(out)
}

/// Checks custom field values against the definitions; on create
/// (`current` is None), every required key must be there. Returns the
/// object to store: on update the current values merged with the given
/// ones (a key set to null is removed).
pub(super) async fn check(
    tx: &TenantTx,
    entity: CustomEntity,
    given: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
    problems: &mut Problems,
) -> Result<Map<String, Value>, ServiceError> {
    let defs = load(tx, entity).await?;
    for (key, value) in given {
        match defs.get(key) {
            None => problems.push(Invalid::new(
                format!("custom_fields.{key}"),
                "is not a defined custom field",
            )),
            Some(_) if value.is_null() && current.is_some() => {}
            Some(def) => {
                problems.check(def.check(value));
            }
        }
    }
    if current.is_none() {
        for def in defs.values().filter(|d| d.required) {
            if given.get(&def.key).is_none_or(Value::is_null) {
                problems.push(Invalid::new(
                    format!("custom_fields.{}", def.key),
                    "is required",
                ));
            }
        }
    }
    let mut merged = current.cloned().unwrap_or_default();
    for (key, value) in given {
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    Ok(merged)
}
