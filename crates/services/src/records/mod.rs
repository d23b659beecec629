//! CRM records (companies, contacts, deals, activities): one set of use
//! cases over the record types' definitions. Bodies are checked field by
//! field into typed values, then each type's own rules run (`deal`,
//! `company`, `activity`), then custom fields and references; every
//! change is audited.

mod access;
mod activity;
mod audit;
mod company;
mod custom;
mod deal;
mod deal_contacts;
mod list;

pub use access::{etag, if_match_allows};
pub use activity::complete_activity;
pub use atrium_domain::records::{
    ACTIVITY, ACTIVITY_KINDS, COMPANY, CONTACT, DEAL, ENTITIES, Entity, Field, Kind, RecordType,
};
pub use audit::{history, recently_changed};
pub use deal_contacts::{deal_contacts, delete_deal_contact, put_deal_contact};
pub(crate) use list::filter_value;
pub use list::{ListRequest, RecordPage, list};

use serde_json::{Map, Value, json};

use atrium_domain::records::{Changes, Datum, NewRecord, READ_ONLY};
use atrium_domain::{Action, Invalid};
use atrium_store::TenantTx;
use atrium_store::records;

use crate::{CurrentUser, Problems, ServiceError};

/// Refuses keys that are not writable fields.
fn check_keys(entity: &Entity, body: &Map<String, Value>, problems: &mut Problems) {
    for key in body.keys() {
        if entity.field(key).is_some() {
            continue;
        }
        let message = if READ_ONLY.contains(&key.as_str()) {
            "cannot be set"
        } else {
            "is not a field of this record"
        };
        problems.push(Invalid::new(key.clone(), message));
    }
}

/// References must name live records (or active users) of this tenant.
async fn check_references<'v>(
    tx: &TenantTx,
    values: impl Iterator<Item = (&'static Field, &'v Datum)>,
    problems: &mut Problems,
) -> Result<(), ServiceError> {
    for (field, datum) in values {
        let Some(id) = datum.as_id() else { continue };
        match field.kind {
            Kind::Ref(target) if !records::exists(tx, target.entity(), id).await? => {
                problems.push(Invalid::new(field.name, "does not name an existing record"));
            }
            Kind::UserRef if !atrium_store::users::active_user_exists(tx, id).await? => {
                problems.push(Invalid::new(field.name, "does not name an active user"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn object(body: Value) -> Result<Map<String, Value>, ServiceError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(Invalid::new("body", "must be a JSON object").into()),
    }
}

fn not_found(entity: &Entity) -> ServiceError {
    ServiceError::NotFound(entity.name.into())
}

fn record_id(record: &Value) -> i32 {
    record["id"].as_i64().unwrap_or_default() as i32
}

/// Live records of a type as choices for a select, by name: id and the
/// name (`title` fields joined).
pub async fn titles(
    tx: &TenantTx,
    entity: &Entity,
    title: &[&str],
    limit: i64,
) -> Result<Vec<(i32, String)>, ServiceError> {
    Ok(records::titles(tx, entity, title, limit).await?)
}

pub async fn create(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &'static Entity,
    body: Value,
) -> Result<Value, ServiceError> {
    let values = checked_new(tx, me, entity, body).await?;
    let record = records::insert(tx, &values, me.id()).await?;
    let created = audit::diff(entity, &Value::Object(Map::new()), &record);
    records::audit(tx, entity, record_id(&record), "create", me.id(), &created).await?;
    Ok(record)
}

/// Creates records checked by [`checked_new`] in one statement, audited as
/// [`create`] audits each: the bulk path of an import. Answers the new
/// records' ids, in the order given.
pub async fn create_many(
    tx: &TenantTx,
    me: &CurrentUser,
    values: &[NewRecord],
) -> Result<Vec<i32>, ServiceError> {
    Ok(records::insert_many_audited(tx, values, me.id()).await?)
}

/// A new record's values from a request's body, checked as [`create`]
/// checks them (fields, custom fields, references), nothing written.
pub async fn checked_new(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &'static Entity,
    body: Value,
) -> Result<NewRecord, ServiceError> {
    me.require(Action::RecordsCreate)?;
    let body = object(body)?;
    let mut problems = Problems::default();
    check_keys(entity, &body, &mut problems);
    let mut values = NewRecord::new(entity);
    for field in entity.fields {
        let value = match body.get(field.name) {
            Some(v) if !v.is_null() => problems.check(field.parse(v)).flatten(),
            _ if field.required => {
                problems.push(Invalid::new(field.name, "is required"));
                None
            }
            _ => field.default_value(),
        };
        values.set(field.name, value);
    }
    match entity.record {
        RecordType::Deal => deal::on_create(tx, me, &mut values, &mut problems).await?,
        RecordType::Activity => activity::on_create(me, &mut values),
        RecordType::Company | RecordType::Contact => {}
    }
    if let Some(custom) = entity.custom {
        let given = body
            .get("custom_fields")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let checked = custom::check(tx, custom, &given, None, &mut problems).await?;
        values.set("custom_fields", Some(Datum::Json(checked)));
    }
    let given = values.iter().filter_map(|(f, v)| Some((f, v.as_ref()?)));
    check_references(tx, given, &mut problems).await?;
    problems.into_result()?;
    Ok(values)
}

pub async fn get(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    id: i32,
    include_deleted: bool,
) -> Result<Value, ServiceError> {
    crate::users::check_include_deleted(me, include_deleted)?;
    records::get(tx, entity, id, include_deleted, false)
        .await?
        .ok_or_else(|| not_found(entity))
}

pub async fn update(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &'static Entity,
    id: i32,
    body: Value,
    if_match: Option<&str>,
) -> Result<Value, ServiceError> {
    let body = object(body)?;
    let current = access::for_change(tx, me, entity, id, if_match).await?;
    let mut problems = Problems::default();
    check_keys(entity, &body, &mut problems);
    let mut changes = Changes::new(entity);
    for field in entity.fields {
        let Some(value) = body.get(field.name) else {
            continue;
        };
        if let (Kind::CustomFields, Some(custom)) = (field.kind, entity.custom) {
            let Some(given) = value.as_object() else {
                problems.push(Invalid::new(field.name, "must be an object"));
                continue;
            };
            let merged = custom::check(
                tx,
                custom,
                given,
                current[field.name].as_object(),
                &mut problems,
            )
            .await?;
            changes.set(field.name, Some(Some(Datum::Json(merged))));
            continue;
        }
        if let Some(parsed) = problems.check(field.parse(value)) {
            changes.set(field.name, Some(parsed));
        }
    }
    match entity.record {
        RecordType::Deal => deal::on_change(tx, &current, &mut changes, &mut problems).await?,
        RecordType::Company => company::on_change(tx, id, &changes, &mut problems).await?,
        RecordType::Contact | RecordType::Activity => {}
    }
    let given = changes
        .iter()
        .filter_map(|(f, v)| Some((f, v.as_ref()?.as_ref()?)));
    check_references(tx, given, &mut problems).await?;
    problems.into_result()?;
    change(tx, me, id, &current, &changes).await
}

/// Writes checked changes to a record loaded for change, and audits them.
async fn change(
    tx: &TenantTx,
    me: &CurrentUser,
    id: i32,
    current: &Value,
    changes: &Changes,
) -> Result<Value, ServiceError> {
    let entity = changes.entity();
    let updated = records::update(tx, id, changes, me.id())
        .await?
        .ok_or_else(|| not_found(entity))?;
    let changed = audit::diff(entity, current, &updated);
    if changed.as_object().is_some_and(|c| !c.is_empty()) {
        records::audit(tx, entity, id, "update", me.id(), &changed).await?;
    }
    Ok(updated)
}

pub async fn delete(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    id: i32,
) -> Result<(), ServiceError> {
    access::for_change(tx, me, entity, id, None).await?;
    let deleted = records::set_deleted(tx, entity, id, true, me.id())
        .await?
        .ok_or_else(|| not_found(entity))?;
    let changes = json!({"deleted_at": {"from": null, "to": deleted["deleted_at"]}});
    records::audit(tx, entity, id, "delete", me.id(), &changes).await?;
    Ok(())
}

pub async fn restore(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    id: i32,
) -> Result<Value, ServiceError> {
    me.require(Action::RecordsRestore)?;
    let before = records::get(tx, entity, id, true, true)
        .await?
        .ok_or_else(|| not_found(entity))?;
    let restored = records::set_deleted(tx, entity, id, false, me.id())
        .await?
        .ok_or_else(|| ServiceError::Conflict(format!("this {} is not deleted", entity.name)))?;
    let changes = json!({"deleted_at": {"from": before["deleted_at"], "to": null}});
    records::audit(tx, entity, id, "restore", me.id(), &changes).await?;
    Ok(restored)
}
