//! The record form: an input per field of the definition (a select for
//! references, stages and choices; the tenant's custom fields as inputs
//! of their type), and the way back from what was typed to the body the
//! services check.

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use atrium_domain::custom_fields::FieldType;
use atrium_domain::records::{Entity, Field, Kind, RecordType};
use atrium_services::records;
use atrium_services::{CurrentUser, custom_fields, users};
use atrium_store::TenantTx;
use atrium_store::custom_fields::FieldDefinition;

use super::{CHOICES, label, shown, title_fields};
use crate::error::ApiError;
use crate::web::WebError;
use crate::web::forms::{Errors, Input, csrf_field};

/// The choices of the form's selects: referenced records and users.
pub(super) struct Choices {
    records: HashMap<RecordType, Vec<(i64, String)>>,
    users: Vec<(i64, String)>,
    stages: Vec<String>,
    pub(super) custom: Vec<FieldDefinition>,
}

/// What choices are loaded for.
#[derive(Clone, Copy)]
pub(super) enum ChoicesFor {
    Form,
    Filters,
}

pub(super) async fn choices(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &'static Entity,
    purpose: ChoicesFor,
) -> Result<Choices, ApiError> {
    // A list page's filters need only the choices of the fields they
    // filter; a form needs every reference's.
    let fields: Vec<&Field> = match purpose {
        ChoicesFor::Filters => entity
            .filters
            .iter()
            .filter_map(|f| entity.field(f.column))
            .collect(),
        ChoicesFor::Form => entity.fields.iter().collect(),
    };
    let mut records_by_type = HashMap::new();
    for field in &fields {
        if let Kind::Ref(target) = field.kind {
            let target_entity = target.entity();
            let options = records::titles(tx, target_entity, title_fields(target_entity), CHOICES)
                .await?
                .into_iter()
                .map(|(id, name)| (i64::from(id), name))
                .collect();
            records_by_type.insert(target, options);
        }
    }
    let users = if fields.iter().any(|f| f.kind == Kind::UserRef) {
        users::list(tx, me, 0, CHOICES, false)
            .await?
            .into_iter()
            .map(|u| (i64::from(u.id), crate::web::page::person(&u)))
            .collect()
    } else {
        Vec::new()
    };
    let stages = if fields.iter().any(|f| f.kind == Kind::Stage) {
        atrium_services::pipeline::list(tx)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect()
    } else {
        Vec::new()
    };
    let custom = match entity.custom {
        Some(custom) => custom_fields::list(tx, Some(custom.as_str()), 0, CHOICES).await?,
        None => Vec::new(),
    };
    Ok(Choices {
        records: records_by_type,
        users,
        stages,
        custom,
    })
}

/// A form's values as typed, by input name.
pub(crate) type Typed = HashMap<String, String>;

fn select(
    id: &str,
    name: &str,
    text: &str,
    options: &[(String, String)],
    value: &str,
    errors: &Errors,
) -> Markup {
    let error = errors.get(name);
    html! {
        div {
            label for=(id) { (text) }
            select id=(id) name=(name) aria-invalid=[error.map(|_| "true")] {
                option value="" { "—" }
                @for (key, shown) in options {
                    option value=(key) selected[key == value] { (shown) }
                }
            }
            @if let Some(message) = error { p.field-error { (text) " " (message) } }
        }
    }
}

fn field_input(field: &Field, values: &Typed, choices: &Choices, errors: &Errors) -> Markup {
    let value = values
        .get(field.name)
        .map(String::as_str)
        .unwrap_or_default();
    let text = label(field);
    let id = format!("f-{}", field.name);
    let input = |kind: &str| {
        Input {
            label: &text,
            name: field.name,
            kind,
            value,
            autocomplete: "off",
            required: field.required,
        }
        .render(errors)
    };
    match field.kind {
        Kind::Ref(target) => {
            let options: Vec<(String, String)> = choices
                .records
                .get(&target)
                .into_iter()
                .flatten()
                .map(|(id, name)| (id.to_string(), name.clone()))
                .collect();
            select(&id, field.name, &text, &options, value, errors)
        }
        Kind::UserRef => {
            let options: Vec<(String, String)> = choices
                .users
                .iter()
                .map(|(id, name)| (id.to_string(), name.clone()))
                .collect();
            select(&id, field.name, &text, &options, value, errors)
        }
        Kind::Stage => {
            let options: Vec<(String, String)> = choices
                .stages
                .iter()
                .map(|s| (s.clone(), s.clone()))
                .collect();
            select(&id, field.name, &text, &options, value, errors)
        }
        Kind::Choice(options) => {
            let options: Vec<(String, String)> = options
                .iter()
                .map(|o| ((*o).to_owned(), (*o).to_owned()))
                .collect();
            select(&id, field.name, &text, &options, value, errors)
        }
        Kind::Email => input("email"),
        Kind::Date => input("date"),
        Kind::Timestamp => input("datetime-local"),
        Kind::Int { .. } => input("number"),
        Kind::Text { max } if max > 1000 => {
            let error = errors.get(field.name);
            html! {
                div {
                    label for=(id) { (text) }
                    textarea id=(id) name=(field.name) rows="4" { (value) }
                    @if let Some(message) = error { p.field-error { (text) " " (message) } }
                }
            }
        }
        _ => input("text"),
    }
}

fn custom_input(def: &FieldDefinition, values: &Typed, errors: &Errors) -> Markup {
    let name = format!("cf.{}", def.key);
    let error_key = format!("custom_fields.{}", def.key);
    let value = values.get(&name).map(String::as_str).unwrap_or_default();
    let id = format!("f-cf-{}", def.key);
    let error = errors.get(&error_key);
    let field_type = FieldType::parse(&def.field_type).unwrap_or(FieldType::Text);
    let options: Vec<String> = def
        .options
        .as_ref()
        .and_then(|o| serde_json::from_value(o.clone()).ok())
        .unwrap_or_default();
    html! {
        div {
            @match field_type {
                FieldType::Boolean => {
                    input id=(id) name=(name) type="checkbox" value="true" checked[value == "true"];
                    " "
                    label for=(id) style="display:inline" { (def.label) }
                }
                FieldType::Select | FieldType::Multiselect => {
                    label for=(id) { (def.label) }
                    select id=(id) name=(name) {
                        option value="" { "—" }
                        @for option in &options { option value=(option) selected[option == value] { (option) } }
                    }
                }
                _ => {
                    label for=(id) { (def.label) }
                    input id=(id) name=(name) value=(value) required[def.required]
                        type=(match field_type { FieldType::Number => "number", FieldType::Date => "date", _ => "text" });
                }
            }
            @if let Some(message) = error { p.field-error { (def.label) " " (message) } }
        }
    }
}

pub(super) fn record_form(
    entity: &Entity,
    action: &str,
    csrf: &str,
    values: &Typed,
    choices: &Choices,
    errors: &Errors,
) -> Markup {
    let unplaced: Vec<(&str, &str)> = errors
        .iter()
        .filter(|(field, _)| entity.field(field).is_none() && !field.starts_with("custom_fields."))
        .collect();
    html! {
        @if !errors.is_empty() {
            p.alert role="alert" { "Some fields need another look." }
        }
        @for (field, message) in unplaced { p.field-error { (field) " " (message) } }
        form.stack.card method="post" action=(action) novalidate {
            (csrf_field(csrf))
            @for field in entity.fields.iter().filter(|f| f.kind != Kind::CustomFields) {
                (field_input(field, values, choices, errors))
            }
            @for def in &choices.custom { (custom_input(def, values, errors)) }
            div { button type="submit" { "Save" } }
        }
    }
}

/// A record's values as a form shows them.
pub(super) fn typed_of(entity: &Entity, record: &Value) -> Typed {
    let mut values = Typed::new();
    for field in entity.fields {
        let value = &record[field.name];
        if field.kind == Kind::CustomFields {
            for (key, v) in value.as_object().into_iter().flatten() {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items
                        .first()
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    other => other.to_string(),
                };
                values.insert(format!("cf.{key}"), text);
            }
        } else if field.kind == Kind::Timestamp {
            values.insert(field.name.to_owned(), shown(field, value).replace(' ', "T"));
        } else if !value.is_null() {
            values.insert(field.name.to_owned(), shown(field, value));
        }
    }
    values
}

/// A form's values as the JSON body the services check; on a change,
/// an emptied field is cleared (`null`), on a create it is left out.
pub(super) fn body_of(
    entity: &Entity,
    custom: &[FieldDefinition],
    form: &Typed,
    change: bool,
) -> Value {
    let mut body = Map::new();
    for field in entity
        .fields
        .iter()
        .filter(|f| f.kind != Kind::CustomFields)
    {
        let raw = form.get(field.name).map(|s| s.trim()).unwrap_or_default();
        let value = if raw.is_empty() {
            if !change {
                continue;
            }
            Value::Null
        } else {
            match field.kind {
                Kind::Int { .. } | Kind::Ref(_) | Kind::UserRef => raw
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| json!(raw)),
                Kind::Timestamp if raw.len() == 16 => json!(format!("{raw}:00Z")),
                _ => json!(raw),
            }
        };
        body.insert(field.name.to_owned(), value);
    }
    if entity.custom.is_some() {
        let mut values = Map::new();
        for def in custom {
            let raw = form
                .get(&format!("cf.{}", def.key))
                .map(|s| s.trim())
                .unwrap_or_default();
            let field_type = FieldType::parse(&def.field_type).unwrap_or(FieldType::Text);
            let value = match field_type {
                FieldType::Boolean => json!(raw == "true"),
                _ if raw.is_empty() => {
                    if change {
                        Value::Null
                    } else {
                        continue;
                    }
                }
                FieldType::Number => raw
                    .parse::<f64>()
                    .map(|n| json!(n))
                    .unwrap_or_else(|_| json!(raw)),
                FieldType::Multiselect => json!([raw]),
                _ => json!(raw),
            };
            values.insert(def.key.clone(), value);
        }
        body.insert("custom_fields".into(), Value::Object(values));
    }
    Value::Object(body)
}

pub(super) fn form_of(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Typed, WebError> {
    let Form(pairs) = form.map_err(|_| ApiError::bad_request("the form could not be read"))?;
    Ok(pairs.into_iter().collect())
}

/// The list's filters as a form (GET, so the address holds the view):
/// each of the record type's filters as an input of its column's kind,
/// then each custom field.
/// The list's orders as people read them ("Newest first", "Name A–Z"),
/// one per order (the API's aliases of an order are left out).
fn sort_choices(entity: &Entity) -> Vec<(&'static str, String)> {
    let mut seen = Vec::new();
    let mut choices = Vec::new();
    for sort in entity.sorts {
        if seen.contains(&(sort.column, sort.descending)) {
            continue;
        }
        seen.push((sort.column, sort.descending));
        let text = match (sort.column, sort.descending) {
            ("created_at", true) => "Newest first".to_owned(),
            ("created_at", false) => "Oldest first".to_owned(),
            (column, descending) => {
                let field = entity.field(column).map(super::label);
                let name = field.unwrap_or_else(|| column.to_owned());
                format!("{name} {}", if descending { "Z–A" } else { "A–Z" })
            }
        };
        choices.push((sort.name, text));
    }
    choices
}

pub(super) fn filter_form(
    entity: &Entity,
    choices: &Choices,
    query: &HashMap<String, String>,
) -> Markup {
    let given = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let open = entity.filters.iter().any(|f| query.contains_key(f.param))
        || query.contains_key("sort")
        || query.keys().any(|k| k.starts_with("cf."));
    html! {
        details.filters open[open] {
            summary { "Filters" }
            form.filters method="get" action=(format!("/{}", entity.table)) {
                @if let Some(q) = query.get("q") { input type="hidden" name="q" value=(q); }
                @if let Some(view) = query.get("view") { input type="hidden" name="view" value=(view); }
                div {
                    label for="sort" { "Sort by" }
                    select id="sort" name="sort" {
                        @for (name, text) in sort_choices(entity) {
                            option value=(name) selected[given("sort") == name] { (text) }
                        }
                    }
                }
                @for filter in entity.filters {
                    @let field = entity.field(filter.column).expect("filters name fields");
                    @let text = {
                        let name = filter.param.strip_suffix("_id").unwrap_or(filter.param);
                        let mut text = name.replace('_', " ");
                        if let Some(first) = text.get_mut(..1) { first.make_ascii_uppercase(); }
                        text
                    };
                    @let id = format!("filter-{}", filter.param);
                    div {
                        label for=(id) { (text) }
                        @match (filter.test, field.kind) {
                            (atrium_domain::records::Test::Unset, _) => {
                                select id=(id) name=(filter.param) {
                                    option value="" { "Any" }
                                    option value="true" selected[given(filter.param) == "true"] { "Yes" }
                                    option value="false" selected[given(filter.param) == "false"] { "No" }
                                }
                            }
                            (_, Kind::Ref(target)) => {
                                select id=(id) name=(filter.param) {
                                    option value="" { "Any" }
                                    @for (value, name) in choices.records.get(&target).into_iter().flatten() {
                                        option value=(value) selected[given(filter.param) == value.to_string()] { (name) }
                                    }
                                }
                            }
                            (_, Kind::UserRef) => {
                                select id=(id) name=(filter.param) {
                                    option value="" { "Any" }
                                    @for (value, name) in &choices.users {
                                        option value=(value) selected[given(filter.param) == value.to_string()] { (name) }
                                    }
                                }
                            }
                            (_, Kind::Stage) => {
                                select id=(id) name=(filter.param) {
                                    option value="" { "Any" }
                                    @for stage in &choices.stages { option value=(stage) selected[given(filter.param) == stage] { (stage) } }
                                }
                            }
                            (_, Kind::Choice(options)) => {
                                select id=(id) name=(filter.param) {
                                    option value="" { "Any" }
                                    @for option in options { option value=(option) selected[given(filter.param) == *option] { (option) } }
                                }
                            }
                            (_, Kind::Date) => { input id=(id) name=(filter.param) type="date" value=(given(filter.param)); }
                            (_, Kind::Timestamp) => { input id=(id) name=(filter.param) type="text" placeholder="2026-12-31T17:00:00Z" value=(given(filter.param)); }
                            _ => { input id=(id) name=(filter.param) type="text" value=(given(filter.param)); }
                        }
                    }
                }
                @for def in &choices.custom {
                    @let name = format!("cf.{}", def.key);
                    @let id = format!("filter-cf-{}", def.key);
                    @let field_type = FieldType::parse(&def.field_type).unwrap_or(FieldType::Text);
                    @let options: Vec<String> = def.options.as_ref().and_then(|o| serde_json::from_value(o.clone()).ok()).unwrap_or_default();
                    div {
                        label for=(id) { (def.label) }
                        @match field_type {
                            FieldType::Boolean => {
                                select id=(id) name=(name) {
                                    option value="" { "Any" }
                                    option value="true" selected[given(&name) == "true"] { "Yes" }
                                    option value="false" selected[given(&name) == "false"] { "No" }
                                }
                            }
                            FieldType::Select | FieldType::Multiselect => {
                                select id=(id) name=(name) {
                                    option value="" { "Any" }
                                    @for option in &options { option value=(option) selected[given(&name) == option] { (option) } }
                                }
                            }
                            FieldType::Date => { input id=(id) name=(name) type="date" value=(given(&name)); }
                            FieldType::Number => { input id=(id) name=(name) type="number" value=(given(&name)); }
                            FieldType::Text => { input id=(id) name=(name) type="text" value=(given(&name)); }
                        }
                    }
                }
                div { button type="submit" { "Filter" } " " a href=(format!("/{}", entity.table)) { "Clear" } }
            }
        }
    }
}
