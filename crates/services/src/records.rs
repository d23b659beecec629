//! CRM records (companies today; contacts, deals and activities share the
//! same machinery): bodies checked field by field, roles and ownership,
//! custom fields, audit events, lists with filters and keyset cursors.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use atrium_domain::custom_fields::{CustomEntity, Definition, FieldType};
use atrium_domain::{Action, Email, Invalid, decimal};
use atrium_store::TenantTx;
use atrium_store::custom_fields as definitions;
use atrium_store::records::{self, Condition, ListQuery, Sort, SqlType, Table};

use crate::{CurrentUser, Problems, ServiceError};

/// What a field accepts.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Text {
        max: usize,
    },
    Email,
    Int {
        min: i64,
        max: i64,
    },
    /// A non-negative decimal with two places and this many integer digits.
    Money {
        int_digits: usize,
    },
    Currency,
    /// The id of a live record of this table.
    Ref(&'static Table),
    /// The id of an active user of this tenant.
    UserRef,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 timestamp with offset.
    Timestamp,
    /// 0–100 with two decimals.
    Percent,
    /// One of a fixed list.
    Choice(&'static [&'static str]),
    CustomFields,
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// Used on create when the body leaves the field out.
    pub default: Option<&'static str>,
}

const fn field(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
        default: None,
    }
}

/// A record type: its table, its fields (in the table's column order), and
/// how its lists filter and sort.
#[derive(Debug)]
pub struct Entity {
    pub table: &'static Table,
    pub fields: &'static [Field],
    /// Which custom field definitions apply, if the record has any.
    pub custom: Option<CustomEntity>,
    /// `sort` values and what they sort by; the first is the default.
    pub sorts: &'static [(&'static str, Sort)],
}

const fn sort(column: &'static str, descending: bool, sql: SqlType) -> Sort {
    Sort {
        column,
        descending,
        sql,
    }
}

pub static COMPANY: Entity = Entity {
    table: &records::COMPANIES,
    fields: &[
        Field {
            required: true,
            ..field("name", Kind::Text { max: 255 })
        },
        field("domain", Kind::Text { max: 255 }),
        field("industry", Kind::Text { max: 100 }),
        field("street", Kind::Text { max: 255 }),
        field("city", Kind::Text { max: 100 }),
        field("state", Kind::Text { max: 100 }),
        field("country", Kind::Text { max: 100 }),
        field("postal_code", Kind::Text { max: 20 }),
        field("parent_company_id", Kind::Ref(&records::COMPANIES)),
        Field {
            default: Some("{}"),
            ..field("custom_fields", Kind::CustomFields)
        },
        field("company_size", Kind::Text { max: 20 }),
        field(
            "employee_count",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
        ),
        field("annual_revenue", Kind::Money { int_digits: 13 }),
        Field {
            default: Some("USD"),
            ..field("revenue_currency", Kind::Currency)
        },
    ],
    custom: Some(CustomEntity::Company),
    sorts: &[
        (
            "-created_at",
            sort("created_at", true, SqlType::Timestamptz),
        ),
        (
            "created_at",
            sort("created_at", false, SqlType::Timestamptz),
        ),
        ("name", sort("name", false, SqlType::Text)),
        ("-name", sort("name", true, SqlType::Text)),
    ],
};

pub static CONTACT: Entity = Entity {
    table: &records::CONTACTS,
    fields: &[
        Field {
            required: true,
            ..field("first_name", Kind::Text { max: 100 })
        },
        Field {
            required: true,
            ..field("last_name", Kind::Text { max: 100 })
        },
        field("email", Kind::Email),
        field("phone", Kind::Text { max: 20 }),
        field("company_id", Kind::Ref(&records::COMPANIES)),
        Field {
            default: Some("{}"),
            ..field("custom_fields", Kind::CustomFields)
        },
    ],
    custom: Some(CustomEntity::Contact),
    sorts: &[
        (
            "-created_at",
            sort("created_at", true, SqlType::Timestamptz),
        ),
        (
            "created_at",
            sort("created_at", false, SqlType::Timestamptz),
        ),
        ("last_name", sort("last_name", false, SqlType::Text)),
        ("-last_name", sort("last_name", true, SqlType::Text)),
        ("name", sort("last_name", false, SqlType::Text)),
        ("-name", sort("last_name", true, SqlType::Text)),
    ],
};

pub static DEAL: Entity = Entity {
    table: &records::DEALS,
    fields: &[
        Field {
            required: true,
            ..field("title", Kind::Text { max: 200 })
        },
        field("value", Kind::Money { int_digits: 10 }),
        field("probability", Kind::Percent),
        Field {
            required: true,
            ..field("stage", Kind::Text { max: 50 })
        },
        field("primary_contact_id", Kind::Ref(&records::CONTACTS)),
        field("company_id", Kind::Ref(&records::COMPANIES)),
        field("owner_id", Kind::UserRef),
        field("expected_close_date", Kind::Date),
        field("actual_close_date", Kind::Date),
        field("deal_source", Kind::Text { max: 100 }),
        field("description", Kind::Text { max: 100_000 }),
        field("notes", Kind::Text { max: 100_000 }),
        Field {
            default: Some("{}"),
            ..field("custom_fields", Kind::CustomFields)
        },
    ],
    custom: Some(CustomEntity::Deal),
    sorts: &[
        (
            "-created_at",
            sort("created_at", true, SqlType::Timestamptz),
        ),
        (
            "created_at",
            sort("created_at", false, SqlType::Timestamptz),
        ),
        ("title", sort("title", false, SqlType::Text)),
        ("-title", sort("title", true, SqlType::Text)),
    ],
};

pub const ACTIVITY_KINDS: &[&str] = &["call", "email", "meeting", "task", "note"];

pub static ACTIVITY: Entity = Entity {
    table: &records::ACTIVITIES,
    fields: &[
        Field {
            required: true,
            ..field("kind", Kind::Choice(ACTIVITY_KINDS))
        },
        Field {
            required: true,
            ..field("subject", Kind::Text { max: 255 })
        },
        field("body", Kind::Text { max: 100_000 }),
        field("due_at", Kind::Timestamp),
        field("completed_at", Kind::Timestamp),
        field("contact_id", Kind::Ref(&records::CONTACTS)),
        field("company_id", Kind::Ref(&records::COMPANIES)),
        field("deal_id", Kind::Ref(&records::DEALS)),
        field("owner_id", Kind::UserRef),
    ],
    custom: None,
    sorts: &[
        (
            "-created_at",
            sort("created_at", true, SqlType::Timestamptz),
        ),
        (
            "created_at",
            sort("created_at", false, SqlType::Timestamptz),
        ),
    ],
};

/// Every record type built on this module.
pub static ENTITIES: &[&Entity] = &[&COMPANY, &CONTACT, &DEAL, &ACTIVITY];

/// Record-specific rules on create: owners default to the creator; a
/// deal's stage must exist, its probability defaults to the stage's, and a
/// deal created closed (won or lost) gets today as its close date.
async fn apply_create_rules(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    values: &mut [(usize, Option<String>)],
    problems: &mut Problems,
) -> Result<(), ServiceError> {
    if std::ptr::eq(entity, &DEAL) || std::ptr::eq(entity, &ACTIVITY) {
        let owner = position(entity, "owner_id");
        if values[owner].1.is_none() {
            values[owner].1 = Some(me.id().to_string());
        }
    }
    if !std::ptr::eq(entity, &DEAL) {
        return Ok(());
    }
    let Some(stage) = values[position(entity, "stage")].1.clone() else {
        return Ok(());
    };
    match records::stage_info(tx, &stage).await? {
        None => problems.push(Invalid::new("stage", "is not a stage of the pipeline")),
        Some((probability, kind)) => {
            let p = position(entity, "probability");
            if values[p].1.is_none() {
                values[p].1 = Some(probability);
            }
            let closed = position(entity, "actual_close_date");
            if kind != "open" && values[closed].1.is_none() {
                values[closed].1 = Some(records::today_utc(tx).await?);
            }
        }
    }
    Ok(())
}

/// Record-specific rules on change: a deal moved to another stage takes
/// that stage's probability unless one is given, and moving it to a won or
/// lost stage sets its close date to today if it has none.
async fn apply_update_rules(
    tx: &TenantTx,
    entity: &Entity,
    current: &Value,
    changes: &mut [Option<Option<String>>],
    problems: &mut Problems,
) -> Result<(), ServiceError> {
    if !std::ptr::eq(entity, &DEAL) {
        return Ok(());
    }
    let Some(Some(stage)) = changes[position(entity, "stage")].clone() else {
        return Ok(());
    };
    match records::stage_info(tx, &stage).await? {
        None => problems.push(Invalid::new("stage", "is not a stage of the pipeline")),
        Some((probability, kind)) => {
            let p = position(entity, "probability");
            if changes[p].is_none() && current["stage"].as_str() != Some(stage.as_str()) {
                changes[p] = Some(Some(probability));
            }
            let closed = position(entity, "actual_close_date");
            if kind != "open" && changes[closed].is_none() && current["actual_close_date"].is_null()
            {
                changes[closed] = Some(Some(records::today_utc(tx).await?));
            }
        }
    }
    Ok(())
}

/// Marks an activity done (now), unless it already is.
pub async fn complete_activity(
    tx: &TenantTx,
    me: &CurrentUser,
    id: i32,
) -> Result<Value, ServiceError> {
    let current = for_change(tx, me, &ACTIVITY, id, None).await?;
    if !current["completed_at"].is_null() {
        return Ok(current);
    }
    let mut changes: Vec<Option<Option<String>>> = vec![None; ACTIVITY.fields.len()];
    changes[position(&ACTIVITY, "completed_at")] = Some(Some(chrono::Utc::now().to_rfc3339()));
    let updated = records::update(tx, ACTIVITY.table, id, &changes, me.id())
        .await?
        .ok_or_else(|| ServiceError::NotFound("activity".into()))?;
    let changed = diff(&ACTIVITY, &current, &updated);
    records::audit(tx, ACTIVITY.table, id, "update", me.id(), &changed).await?;
    Ok(updated)
}

fn position(entity: &Entity, name: &str) -> usize {
    entity
        .fields
        .iter()
        .position(|f| f.name == name)
        .expect("a field of the entity")
}

const READ_ONLY: &[&str] = &[
    "id",
    "created_by",
    "updated_by",
    "created_at",
    "updated_at",
    "deleted_at",
];

/// Parses one present value; `Ok(None)` is SQL NULL.
fn parse_value(field: &Field, value: &Value) -> Result<Option<String>, Invalid> {
    let name = field.name;
    if value.is_null() {
        return if field.required {
            Err(Invalid::new(name, "is required"))
        } else {
            Ok(None)
        };
    }
    match field.kind {
        Kind::Text { max } => {
            let text = value
                .as_str()
                .ok_or_else(|| Invalid::new(name, "must be a string"))?;
            if field.required && text.trim().is_empty() {
                return Err(Invalid::new(name, "is required"));
            }
            if text.chars().count() > max {
                return Err(Invalid::new(
                    name,
                    format!("must be at most {max} characters long"),
                ));
            }
            Ok(Some(text.to_owned()))
        }
        Kind::Email => {
            let text = value
                .as_str()
                .ok_or_else(|| Invalid::new(name, "must be a string"))?;
            Ok(Some(Email::parse_field(name, text)?.as_str().to_owned()))
        }
        Kind::Int { min, max } => value
            .as_i64()
            .filter(|n| (min..=max).contains(n))
            .map(|n| Some(n.to_string()))
            .ok_or_else(|| {
                Invalid::new(name, format!("must be a whole number from {min} to {max}"))
            }),
        Kind::Money { int_digits } => {
            let amount = decimal::parse(name, value, int_digits)?;
            if amount.is_negative() {
                return Err(Invalid::new(name, "must not be negative"));
            }
            Ok(Some(amount.to_string()))
        }
        Kind::Currency => value
            .as_str()
            .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(|s| Some(s.to_ascii_uppercase()))
            .ok_or_else(|| Invalid::new(name, "must be a three-letter ISO 4217 code such as USD")),
        Kind::Ref(_) => value
            .as_i64()
            .filter(|n| (1..=i32::MAX as i64).contains(n))
            .map(|n| Some(n.to_string()))
            .ok_or_else(|| Invalid::new(name, "must be the id of a record")),
        Kind::UserRef => value
            .as_i64()
            .filter(|n| (1..=i32::MAX as i64).contains(n))
            .map(|n| Some(n.to_string()))
            .ok_or_else(|| Invalid::new(name, "must be the id of a user")),
        Kind::Date => value
            .as_str()
            .filter(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10)
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| Invalid::new(name, "must be a date (YYYY-MM-DD)")),
        Kind::Timestamp => value
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| Some(t.to_rfc3339()))
            .ok_or_else(|| Invalid::new(name, "must be an RFC 3339 timestamp with offset")),
        Kind::Percent => atrium_domain::pipeline::parse_percent(name, value).map(Some),
        Kind::Choice(options) => value
            .as_str()
            .filter(|s| options.contains(s))
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| Invalid::new(name, format!("must be one of {}", options.join(", ")))),
        Kind::CustomFields => {
            if value.is_object() {
                Ok(Some(value.to_string()))
            } else {
                Err(Invalid::new(name, "must be an object"))
            }
        }
    }
}

async fn load_definitions(
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

/// Checks custom field values against the definitions; on create, every
/// required key must be there. Returns the object to store: on update the
/// current values merged with the given ones (a key set to null is removed).
async fn check_custom_fields(
    tx: &TenantTx,
    entity: &Entity,
    given: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
    problems: &mut Problems,
) -> Result<Value, ServiceError> {
    let Some(custom) = entity.custom else {
        return Ok(Value::Object(Map::new()));
    };
    let defs = load_definitions(tx, custom).await?;
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
    Ok(Value::Object(merged))
}

/// Refuses keys that are not writable fields.
fn check_keys(entity: &Entity, body: &Map<String, Value>, problems: &mut Problems) {
    for key in body.keys() {
        if entity.fields.iter().any(|f| f.name == key) {
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

/// References must name live records of this tenant.
async fn check_references(
    tx: &TenantTx,
    entity: &Entity,
    values: &[(usize, Option<String>)],
    problems: &mut Problems,
) -> Result<(), ServiceError> {
    for (index, value) in values {
        let field = &entity.fields[*index];
        let Some(id) = value else { continue };
        let id: i32 = match field.kind {
            Kind::Ref(_) | Kind::UserRef => {
                id.parse().map_err(|_| anyhow::anyhow!("checked id"))?
            }
            _ => continue,
        };
        match field.kind {
            Kind::Ref(table) if !records::exists(tx, table, id).await? => {
                problems.push(Invalid::new(field.name, "does not name an existing record"));
            }
            Kind::UserRef if !records::active_user_exists(tx, id).await? => {
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

/// The changes between two versions of a record, as the audit stores them.
fn diff(entity: &Entity, before: &Value, after: &Value) -> Value {
    let mut changes = Map::new();
    for field in entity.fields {
        let (from, to) = (&before[field.name], &after[field.name]);
        if from != to {
            changes.insert(field.name.to_owned(), json!({"from": from, "to": to}));
        }
    }
    Value::Object(changes)
}

fn record_id(record: &Value) -> i32 {
    record["id"].as_i64().unwrap_or_default() as i32
}

pub async fn create(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    body: Value,
) -> Result<Value, ServiceError> {
    me.require(Action::RecordsCreate)?;
    let body = object(body)?;
    let mut problems = Problems::default();
    check_keys(entity, &body, &mut problems);
    let mut values = Vec::with_capacity(entity.fields.len());
    for (index, field) in entity.fields.iter().enumerate() {
        let value = match body.get(field.name) {
            Some(v) if !v.is_null() => problems.check(parse_value(field, v)).flatten(),
            _ if field.required => {
                problems.push(Invalid::new(field.name, "is required"));
                None
            }
            _ => field.default.map(str::to_owned),
        };
        values.push((index, value));
    }
    apply_create_rules(tx, me, entity, &mut values, &mut problems).await?;
    let given_custom = body
        .get("custom_fields")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let custom = check_custom_fields(tx, entity, &given_custom, None, &mut problems).await?;
    check_references(tx, entity, &values, &mut problems).await?;
    problems.into_result()?;
    let mut values: Vec<Option<String>> = values.into_iter().map(|(_, v)| v).collect();
    if let Some(i) = entity
        .fields
        .iter()
        .position(|f| matches!(f.kind, Kind::CustomFields))
    {
        values[i] = Some(custom.to_string());
    }
    let record = records::insert(tx, entity.table, &values, me.id()).await?;
    let created = diff(entity, &Value::Object(Map::new()), &record);
    records::audit(
        tx,
        entity.table,
        record_id(&record),
        "create",
        me.id(),
        &created,
    )
    .await?;
    Ok(record)
}

pub async fn get(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    id: i32,
    include_deleted: bool,
) -> Result<Value, ServiceError> {
    crate::users::check_include_deleted(me, include_deleted)?;
    records::get(tx, entity.table, id, include_deleted, false)
        .await?
        .ok_or_else(|| ServiceError::NotFound(entity.table.entity.into()))
}

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
async fn for_change(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    id: i32,
    if_match: Option<&str>,
) -> Result<Value, ServiceError> {
    let current = records::get(tx, entity.table, id, false, true)
        .await?
        .ok_or_else(|| ServiceError::NotFound(entity.table.entity.into()))?;
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

pub async fn update(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    id: i32,
    body: Value,
    if_match: Option<&str>,
) -> Result<Value, ServiceError> {
    let body = object(body)?;
    let current = for_change(tx, me, entity, id, if_match).await?;
    let mut problems = Problems::default();
    check_keys(entity, &body, &mut problems);
    let mut changes: Vec<Option<Option<String>>> = vec![None; entity.fields.len()];
    let mut given = Vec::new();
    for (index, field) in entity.fields.iter().enumerate() {
        let Some(value) = body.get(field.name) else {
            continue;
        };
        if matches!(field.kind, Kind::CustomFields) {
            let Some(map) = value.as_object() else {
                problems.push(Invalid::new(field.name, "must be an object"));
                continue;
            };
            let merged = check_custom_fields(
                tx,
                entity,
                map,
                current[field.name].as_object(),
                &mut problems,
            )
            .await?;
            changes[index] = Some(Some(merged.to_string()));
            continue;
        }
        if let Some(parsed) = problems.check(parse_value(field, value)) {
            given.push((index, parsed.clone()));
            changes[index] = Some(parsed);
        }
    }
    apply_update_rules(tx, entity, &current, &mut changes, &mut problems).await?;
    check_references(tx, entity, &given, &mut problems).await?;
    if std::ptr::eq(entity, &COMPANY)
        && let Some(Some(parent)) = changes[position(entity, "parent_company_id")].as_ref()
    {
        let parent: i32 = parent.parse().map_err(|_| anyhow::anyhow!("checked id"))?;
        if parent == id || records::company_parent_makes_cycle(tx, id, parent).await? {
            problems.push(Invalid::new(
                "parent_company_id",
                "would make the company its own ancestor",
            ));
        }
    }
    problems.into_result()?;
    let updated = records::update(tx, entity.table, id, &changes, me.id())
        .await?
        .ok_or_else(|| ServiceError::NotFound(entity.table.entity.into()))?;
    let changed = diff(entity, &current, &updated);
    if changed.as_object().is_some_and(|c| !c.is_empty()) {
        records::audit(tx, entity.table, id, "update", me.id(), &changed).await?;
    }
    Ok(updated)
}

pub async fn delete(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    id: i32,
) -> Result<(), ServiceError> {
    for_change(tx, me, entity, id, None).await?;
    let deleted = records::set_deleted(tx, entity.table, id, true, me.id())
        .await?
        .ok_or_else(|| ServiceError::NotFound(entity.table.entity.into()))?;
    let changes = json!({"deleted_at": {"from": null, "to": deleted["deleted_at"]}});
    records::audit(tx, entity.table, id, "delete", me.id(), &changes).await?;
    Ok(())
}

pub async fn restore(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    id: i32,
) -> Result<Value, ServiceError> {
    me.require(Action::RecordsRestore)?;
    let before = records::get(tx, entity.table, id, true, true)
        .await?
        .ok_or_else(|| ServiceError::NotFound(entity.table.entity.into()))?;
    let restored = records::set_deleted(tx, entity.table, id, false, me.id())
        .await?
        .ok_or_else(|| {
            ServiceError::Conflict(format!("this {} is not deleted", entity.table.entity))
        })?;
    let changes = json!({"deleted_at": {"from": before["deleted_at"], "to": null}});
    records::audit(tx, entity.table, id, "restore", me.id(), &changes).await?;
    Ok(restored)
}

/// A list request as it arrives: the query string's parameters.
pub struct ListRequest<'a> {
    pub params: &'a HashMap<String, String>,
    pub limit: i64,
    pub include_deleted: bool,
}

pub struct RecordPage {
    pub data: Vec<Value>,
    pub next_cursor: Option<String>,
}

fn encode_cursor(sort: &str, value: &str, id: i32) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([sort, value, id]).to_string())
}

fn decode_cursor(raw: &str, sort: &str) -> Option<(String, i32)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let [s, v, id] = value.as_array()?.as_slice() else {
        return None;
    };
    (s.as_str()? == sort).then_some(())?;
    Some((v.as_str()?.to_owned(), i32::try_from(id.as_i64()?).ok()?))
}

/// Escapes `%`, `_` and `\` so user text matches literally in LIKE.
fn like_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn int_param(
    params: &HashMap<String, String>,
    name: &'static str,
    problems: &mut Problems,
) -> Option<String> {
    let raw = params.get(name)?;
    match raw.parse::<i32>() {
        Ok(n) if n > 0 => Some(n.to_string()),
        _ => {
            problems.push(Invalid::new(name, "must be the id of a record"));
            None
        }
    }
}

pub(crate) fn date_param(
    params: &HashMap<String, String>,
    name: &'static str,
    problems: &mut Problems,
) -> Option<String> {
    let raw = params.get(name)?;
    if raw.len() == 10 && chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").is_ok() {
        Some(raw.clone())
    } else {
        problems.push(Invalid::new(name, "must be a date (YYYY-MM-DD)"));
        None
    }
}

fn condition(sql: &str, params: Vec<Option<String>>) -> Condition {
    Condition {
        sql: sql.to_owned(),
        params,
    }
}

/// A prefix query for the contact search vector: each word a prefix,
/// all words required. Words keep letters, digits and the characters of
/// email addresses; anything that means something to `to_tsquery` is
/// dropped, and each word is quoted.
fn prefix_tsquery(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || "@.-_+".contains(*c))
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .map(|w| format!("'{w}':*"))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

/// Contact search: full-text words as prefixes (`jo` finds John), the
/// email, and word similarity for typos (`jhon`, `jhon smith`); best
/// first. Word similarity (`%>`) compares the query with the best-matching
/// stretch of the name, so one misspelt word is enough; trigrams forgive a
/// wrong or missing letter but hardly two letters swapped in a short word
/// (`jhon` and `john` share one trigram of five), so the query also runs
/// with each pair of neighbouring letters swapped. Every path is on the
/// name's and the email's trigram indexes or the search vector's.
fn contact_search(q: &str) -> (Condition, Condition) {
    let q = q
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let name = "lower(t.first_name || ' ' || t.last_name)";
    let variants = typo_variants(&q).join("\n");
    let similar_name = format!("{name} %> ANY(string_to_array({{}}, E'\\n'))");
    let name_similarity = format!(
        "(SELECT max(word_similarity(v, {name})) FROM unnest(string_to_array({{}}, E'\\n')) v)"
    );
    match prefix_tsquery(&q) {
        Some(tsquery) => (
            condition(
                &format!(
                    "(t.search_vector @@ to_tsquery('simple', {{}}) OR {similar_name} OR lower(t.email) % {{}})"
                ),
                vec![
                    Some(tsquery.clone()),
                    Some(variants.clone()),
                    Some(q.clone()),
                ],
            ),
            condition(
                &format!(
                    "ts_rank(t.search_vector, to_tsquery('simple', {{}})) + {name_similarity} \
                     + similarity(lower(coalesce(t.email, '')), {{}})"
                ),
                vec![Some(tsquery), Some(variants), Some(q)],
            ),
        ),
        None => (
            condition(
                &format!("({similar_name} OR lower(t.email) % {{}})"),
                vec![Some(variants.clone()), Some(q.clone())],
            ),
            condition(&name_similarity, vec![Some(variants)]),
        ),
    }
}

/// The query, then the query with each pair of neighbouring letters
/// swapped (`jhon` gives `hjon`, `john`, `jhno`). Long queries are taken
/// as they are: the swaps grow with their length, and long words keep
/// enough trigrams to forgive a swap on their own.
fn typo_variants(q: &str) -> Vec<String> {
    const MAX_SWAPPED_LEN: usize = 40;
    let mut variants = vec![q.to_owned()];
    let chars: Vec<char> = q.chars().collect();
    if chars.len() > MAX_SWAPPED_LEN {
        return variants;
    }
    for i in 1..chars.len() {
        let (a, b) = (chars[i - 1], chars[i]);
        if a != b && a.is_alphanumeric() && b.is_alphanumeric() {
            let mut swapped = chars.clone();
            swapped.swap(i - 1, i);
            let swapped: String = swapped.into_iter().collect();
            if !variants.contains(&swapped) {
                variants.push(swapped);
            }
        }
    }
    variants
}

/// The entity's own filters, and a relevance order when it searches.
fn filters(
    entity: &Entity,
    params: &HashMap<String, String>,
    problems: &mut Problems,
) -> (Vec<Condition>, Option<Condition>) {
    let mut out = Vec::new();
    let mut rank = None;
    if std::ptr::eq(entity, &CONTACT) {
        if let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) {
            let (matches, relevance) = contact_search(q);
            out.push(matches);
            rank = Some(relevance);
        }
        if let Some(email) = params.get("email") {
            out.push(condition(
                "lower(t.email) = lower({})",
                vec![Some(email.trim().to_owned())],
            ));
        }
        if let Some(company) = int_param(params, "company_id", problems) {
            out.push(condition(
                "t.company_id = {}::text::int",
                vec![Some(company)],
            ));
        }
    }
    if std::ptr::eq(entity, &DEAL) {
        if let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) {
            let contains = format!("%{}", like_prefix(q.trim()));
            out.push(condition("lower(t.title) LIKE {}", vec![Some(contains)]));
        }
        if let Some(stage) = params.get("stage") {
            out.push(condition("t.stage = {}", vec![Some(stage.clone())]));
        }
        for (name, column) in [
            ("owner_id", "owner_id"),
            ("company_id", "company_id"),
            ("primary_contact_id", "primary_contact_id"),
        ] {
            if let Some(id) = int_param(params, name, problems) {
                out.push(condition(
                    &format!("t.{column} = {{}}::text::int"),
                    vec![Some(id)],
                ));
            }
        }
        for (name, op) in [("expected_close_from", ">="), ("expected_close_to", "<=")] {
            if let Some(date) = date_param(params, name, problems) {
                out.push(condition(
                    &format!("t.expected_close_date {op} {{}}::text::date"),
                    vec![Some(date)],
                ));
            }
        }
    }
    if std::ptr::eq(entity, &ACTIVITY) {
        for name in ["contact_id", "company_id", "deal_id", "owner_id"] {
            if let Some(id) = int_param(params, name, problems) {
                out.push(condition(
                    &format!("t.{name} = {{}}::text::int"),
                    vec![Some(id)],
                ));
            }
        }
        if let Some(kind) = params.get("kind") {
            if ACTIVITY_KINDS.contains(&kind.as_str()) {
                out.push(condition("t.kind = {}", vec![Some(kind.clone())]));
            } else {
                problems.push(Invalid::new(
                    "kind",
                    format!("must be one of {}", ACTIVITY_KINDS.join(", ")),
                ));
            }
        }
        match params.get("open").map(String::as_str) {
            None => {}
            Some("true") => out.push(condition("t.completed_at IS NULL", vec![])),
            Some("false") => out.push(condition("t.completed_at IS NOT NULL", vec![])),
            Some(_) => problems.push(Invalid::new("open", "must be true or false")),
        }
        if let Some(raw) = params.get("due_before") {
            match chrono::DateTime::parse_from_rfc3339(raw) {
                Ok(at) => out.push(condition(
                    "t.due_at < {}::text::timestamptz",
                    vec![Some(at.to_rfc3339())],
                )),
                Err(_) => problems.push(Invalid::new(
                    "due_before",
                    "must be an RFC 3339 timestamp with offset",
                )),
            }
        }
    }
    if std::ptr::eq(entity, &COMPANY) {
        if let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) {
            let prefix = like_prefix(q.trim());
            out.push(condition(
                "(lower(t.name) LIKE {} OR lower(t.domain) LIKE {})",
                vec![Some(prefix.clone()), Some(prefix)],
            ));
        }
        if let Some(industry) = params.get("industry") {
            out.push(condition("t.industry = {}", vec![Some(industry.clone())]));
        }
        if let Some(domain) = params.get("domain") {
            out.push(condition(
                "lower(t.domain) = lower({})",
                vec![Some(domain.clone())],
            ));
        }
        if let Some(parent) = int_param(params, "parent_company_id", problems) {
            out.push(condition(
                "t.parent_company_id = {}::text::int",
                vec![Some(parent)],
            ));
        }
    }
    (out, rank)
}

pub async fn list(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &Entity,
    request: ListRequest<'_>,
) -> Result<RecordPage, ServiceError> {
    crate::users::check_include_deleted(me, request.include_deleted)?;
    let params = request.params;
    let mut problems = Problems::default();
    let sort_name = params
        .get("sort")
        .map(String::as_str)
        .unwrap_or(entity.sorts[0].0);
    let sort = match entity.sorts.iter().find(|(name, _)| *name == sort_name) {
        Some((_, sort)) => *sort,
        None => {
            let known: Vec<&str> = entity.sorts.iter().map(|(n, _)| *n).collect();
            problems.push(Invalid::new(
                "sort",
                format!("must be one of {}", known.join(", ")),
            ));
            entity.sorts[0].1
        }
    };
    let (mut conditions, rank) = filters(entity, params, &mut problems);
    // A search pages by relevance, whatever `sort` says.
    let cursor_kind = if rank.is_some() {
        "relevance"
    } else {
        sort_name
    };
    let after = match params.get("cursor").filter(|c| !c.is_empty()) {
        Some(raw) => {
            let decoded = decode_cursor(raw, cursor_kind);
            if decoded.is_none() {
                problems.push(Invalid::new(
                    "cursor",
                    "is not a cursor this list gave out for this sort",
                ));
            }
            decoded
        }
        None => None,
    };
    let custom_filters: Vec<(&String, &String)> = params
        .iter()
        .filter(|(k, _)| k.starts_with("cf."))
        .collect();
    if !custom_filters.is_empty() {
        let defs = match entity.custom {
            Some(custom) => load_definitions(tx, custom).await?,
            None => HashMap::new(),
        };
        for (key, raw) in custom_filters {
            match defs.get(&key[3..]) {
                None => problems.push(Invalid::new(key.clone(), "is not a defined custom field")),
                Some(def) => {
                    if let Some(wanted) = problems.check(def.filter_value(raw)) {
                        conditions.push(condition(
                            "t.custom_fields @> {}::text::jsonb",
                            vec![Some(wanted.to_string())],
                        ));
                    }
                }
            }
        }
    }
    problems.into_result()?;
    let rows = records::list(
        tx,
        entity.table,
        &ListQuery {
            conditions,
            sort,
            rank,
            after,
            limit: request.limit + 1,
            include_deleted: request.include_deleted,
        },
    )
    .await?;
    let more = rows.len() as i64 > request.limit;
    let rows = &rows[..rows.len().min(request.limit as usize)];
    Ok(RecordPage {
        next_cursor: more
            .then(|| {
                rows.last()
                    .map(|(_, value, id)| encode_cursor(cursor_kind, value, *id))
            })
            .flatten(),
        data: rows.iter().map(|(record, _, _)| record.clone()).collect(),
    })
}

/// A record's audit history, newest first.
pub async fn history(
    tx: &TenantTx,
    entity: &str,
    id: i32,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<(i64, Value)>, ServiceError> {
    if !["company", "contact", "deal", "activity"].contains(&entity) {
        return Err(
            Invalid::new("entity", "must be one of company, contact, deal, activity").into(),
        );
    }
    Ok(records::history(tx, entity, id, before, limit).await?)
}

/// Deal contacts: the deal must be one the user may read (any live deal)
/// to list, and one they may change to link or unlink.
pub async fn deal_contacts(
    tx: &TenantTx,
    me: &CurrentUser,
    deal_id: i32,
    after: i32,
    limit: i64,
) -> Result<Vec<(i32, Value)>, ServiceError> {
    get(tx, me, &DEAL, deal_id, false).await?;
    Ok(records::deal_contacts(tx, deal_id, after, limit).await?)
}

pub async fn put_deal_contact(
    tx: &TenantTx,
    me: &CurrentUser,
    deal_id: i32,
    contact_id: i32,
    role: Option<&Value>,
) -> Result<Value, ServiceError> {
    for_change(tx, me, &DEAL, deal_id, None).await?;
    let role = match role {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if r.chars().count() <= 50 => Some(r.clone()),
        Some(_) => {
            return Err(Invalid::new("role", "must be a string of at most 50 characters").into());
        }
    };
    if !records::exists(tx, &records::CONTACTS, contact_id).await? {
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
    for_change(tx, me, &DEAL, deal_id, None).await?;
    if records::delete_deal_contact(tx, deal_id, contact_id).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("deal contact".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_variants_swap_each_pair_of_neighbouring_letters_once() {
        assert_eq!(typo_variants("jhon"), ["jhon", "hjon", "john", "jhno"]);
        assert_eq!(typo_variants("aab"), ["aab", "aba"]);
        assert_eq!(typo_variants("a b"), ["a b"], "not across words");
        assert_eq!(typo_variants(&"x".repeat(41)).len(), 1);
    }

    #[test]
    fn fields_follow_the_table_columns() {
        for entity in ENTITIES {
            let fields: Vec<&str> = entity.fields.iter().map(|f| f.name).collect();
            let columns: Vec<&str> = entity.table.columns.iter().map(|c| c.name).collect();
            assert_eq!(fields, columns, "{}", entity.table.table);
        }
        assert_eq!(COMPANY.fields[8].name, "parent_company_id");
    }

    #[test]
    fn search_words_become_quoted_prefixes() {
        assert_eq!(
            prefix_tsquery("John  Smith").as_deref(),
            Some("'john':* & 'smith':*")
        );
        assert_eq!(
            prefix_tsquery("john@x.com").as_deref(),
            Some("'john@x.com':*")
        );
        assert_eq!(
            prefix_tsquery("o'brien & (x) | !y:*").as_deref(),
            Some("'obrien':* & 'x':* & 'y':*")
        );
        assert_eq!(prefix_tsquery("&& ||"), None);
    }

    #[test]
    fn like_patterns_match_user_text_literally() {
        assert_eq!(like_prefix("50%_Off\\"), "50\\%\\_off\\\\%");
    }

    #[test]
    fn cursors_are_bound_to_their_sort() {
        let c = encode_cursor("name", "Acme", 7);
        assert_eq!(decode_cursor(&c, "name"), Some(("Acme".into(), 7)));
        assert_eq!(decode_cursor(&c, "-created_at"), None);
        assert_eq!(decode_cursor("garbage", "name"), None);
    }

    #[test]
    fn values_are_checked_by_kind() {
        let money = field("annual_revenue", Kind::Money { int_digits: 13 });
        assert_eq!(
            parse_value(&money, &json!(1250.5)).unwrap(),
            Some("1250.50".into())
        );
        assert!(parse_value(&money, &json!(-1)).is_err());
        let currency = field("revenue_currency", Kind::Currency);
        assert_eq!(
            parse_value(&currency, &json!("eur")).unwrap(),
            Some("EUR".into())
        );
        assert!(parse_value(&currency, &json!("EURO")).is_err());
        let count = field("employee_count", Kind::Int { min: 0, max: 10 });
        assert!(parse_value(&count, &json!(11)).is_err());
        assert!(parse_value(&count, &json!("3")).is_err());
        let name = Field {
            required: true,
            ..field("name", Kind::Text { max: 5 })
        };
        assert!(parse_value(&name, &json!("  ")).is_err());
        assert!(parse_value(&name, &json!(null)).is_err());
        assert!(parse_value(&name, &json!("toolong")).is_err());
        assert_eq!(
            parse_value(&name, &json!("'; --")).unwrap(),
            Some("'; --".into())
        );
    }
}
