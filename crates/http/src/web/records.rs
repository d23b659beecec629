//! Record pages, made from the record types' definitions like the API's
//! routes: a list with search and pages, a record with its history, and
//! the form that creates and edits one (custom fields included, each as
//! an input of its type).

use std::collections::HashMap;

use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use atrium_domain::Action;
use atrium_domain::custom_fields::FieldType;
use atrium_domain::records::{ENTITIES, Entity, Field, Kind, RecordType};
use atrium_services::records::{self, ListRequest};
use atrium_services::{CurrentUser, ServiceError, custom_fields, users};
use atrium_store::TenantTx;
use atrium_store::custom_fields::FieldDefinition;

use super::forms::{Errors, Input, csrf_field};
use super::page::{Viewer, layout, respond};
use super::session::{SignedIn, check_csrf};
use super::{PageResult, WebError, see_other};
use crate::AppState;
use crate::error::ApiError;

/// Records a list page shows at once.
const PAGE_SIZE: i64 = 25;
/// Choices a reference's select offers (the first by name).
const CHOICES: i64 = 200;

pub(crate) fn router() -> Router<AppState> {
    let mut router = Router::new();
    for entity in ENTITIES {
        let base = format!("/{}", entity.table);
        router = router
            .route(&base, get(move |s, q| list(entity, s, q)))
            .route(
                &format!("{base}/new"),
                get(move |s| new_form(entity, s)).post(move |s, f| create(entity, s, f)),
            )
            .route(
                &format!("{base}/{{id}}"),
                get(move |s, p| show(entity, s, p)),
            )
            .route(
                &format!("{base}/{{id}}/edit"),
                get(move |s, p| edit_form(entity, s, p))
                    .post(move |s, p, f| update(entity, s, p, f)),
            )
            .route(
                &format!("{base}/{{id}}/delete"),
                post(move |s, p, f| delete(entity, s, p, f)),
            )
            .route(
                &format!("{base}/{{id}}/restore"),
                post(move |s, p, f| restore(entity, s, p, f)),
            );
    }
    router
}

/// What people call a field: `first_name` is "First name", a reference
/// `company_id` is "Company".
pub(crate) fn label(field: &Field) -> String {
    let name = field.name.strip_suffix("_id").unwrap_or(field.name);
    let mut text = name.replace('_', " ");
    if let Some(first) = text.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    text
}

/// One record of the type, as a person names it.
fn title_of(entity: &Entity, record: &Value) -> String {
    let text = |f: &str| record[f].as_str().unwrap_or_default().to_owned();
    match entity.record {
        RecordType::Contact => format!("{} {}", text("first_name"), text("last_name")),
        RecordType::Company => text("name"),
        RecordType::Deal => text("title"),
        RecordType::Activity => text("subject"),
    }
}

fn plural_title(entity: &Entity) -> String {
    let mut title = entity.table.to_owned();
    title[..1].make_ascii_uppercase();
    title
}

fn id_of(raw: &str) -> Result<i32, WebError> {
    raw.parse::<i32>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("no such record").into())
}

/// A field's value as text on a page.
fn shown(field: &Field, value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) if matches!(field.kind, Kind::Timestamp) => {
            s.get(..16).unwrap_or(s).replace('T', " ")
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn viewer_name(me: &CurrentUser) -> String {
    format!("{} {}", me.user.first_name, me.user.last_name)
}

async fn list(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let mut params = query.clone();
    params.retain(|k, _| k != "limit");
    let (name, page, may_create) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let page = records::list(
                tx,
                me,
                entity,
                ListRequest {
                    params: &params,
                    limit: PAGE_SIZE,
                    include_deleted: false,
                },
            )
            .await?;
            Ok((
                viewer_name(me),
                page,
                me.access.allows(Action::RecordsCreate),
            ))
        })
        .await?;
    let title = plural_title(entity);
    let q = query.get("q").cloned().unwrap_or_default();
    let columns: Vec<&Field> = entity
        .fields
        .iter()
        .filter(|f| !matches!(f.kind, Kind::CustomFields | Kind::Ref(_) | Kind::UserRef))
        .take(4)
        .collect();
    let next = page.next_cursor.as_ref().map(|cursor| {
        let mut next: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| *k != "cursor")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        next.push(("cursor".into(), cursor.clone()));
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        format!("/{}?{encoded}", entity.table)
    });
    let viewer = Viewer {
        name: &name,
        csrf: &csrf,
    };
    let content = html! {
        div.toolbar {
            @if entity.search.is_some() {
                form.search role="search" method="get" action=(format!("/{}", entity.table)) {
                    label for="q" { "Search " (entity.table) }
                    input id="q" name="q" type="search" value=(q) autocomplete="off";
                    button type="submit" { "Search" }
                }
            }
            @if may_create {
                a.button href=(format!("/{}/new", entity.table)) { "New " (entity.name) }
            }
            @if entity.record == RecordType::Contact {
                a href="/contacts/import" { "Import" }
                " "
                a href="/api/v1/contacts/export" { "Export" }
            }
        }
        @if page.data.is_empty() {
            p.muted { "No " (entity.table) " here yet." }
        } @else {
            table {
                thead { tr { @for field in &columns { th scope="col" { (label(field)) } } } }
                tbody {
                    @for record in &page.data {
                        tr {
                            @for (i, field) in columns.iter().enumerate() {
                                td {
                                    @if i == 0 {
                                        a href=(format!("/{}/{}", entity.table, record["id"])) { (title_of(entity, record)) }
                                    } @else {
                                        (shown(field, &record[field.name]))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a href=(next) rel="next" { "Next page" } }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(
            &title,
            &format!("/{}", entity.table),
            Some(&viewer),
            content,
        ),
    ))
}

/// The choices of the form's selects: referenced records and users.
struct Choices {
    records: HashMap<RecordType, Vec<(i64, String)>>,
    users: Vec<(i64, String)>,
    stages: Vec<String>,
    custom: Vec<FieldDefinition>,
}

async fn choices(
    tx: &TenantTx,
    me: &CurrentUser,
    entity: &'static Entity,
) -> Result<Choices, ApiError> {
    let mut records_by_type = HashMap::new();
    for field in entity.fields {
        if let Kind::Ref(target) = field.kind {
            let target_entity = target.entity();
            let sort = if target_entity.sort("name").is_some() {
                "name"
            } else {
                "-created_at"
            };
            let sort = if target == RecordType::Deal {
                "title"
            } else {
                sort
            };
            let params: HashMap<String, String> = [("sort".to_owned(), sort.to_owned())].into();
            let page = records::list(
                tx,
                me,
                target_entity,
                ListRequest {
                    params: &params,
                    limit: CHOICES,
                    include_deleted: false,
                },
            )
            .await?;
            let options = page
                .data
                .iter()
                .map(|r| {
                    (
                        r["id"].as_i64().unwrap_or_default(),
                        title_of(target_entity, r),
                    )
                })
                .collect();
            records_by_type.insert(target, options);
        }
    }
    let users = if entity.fields.iter().any(|f| f.kind == Kind::UserRef) {
        users::list(tx, me, 0, CHOICES, false)
            .await?
            .into_iter()
            .map(|u| (i64::from(u.id), format!("{} {}", u.first_name, u.last_name)))
            .collect()
    } else {
        Vec::new()
    };
    let stages = if entity.fields.iter().any(|f| f.kind == Kind::Stage) {
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
type Typed = HashMap<String, String>;

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

fn record_form(
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
fn typed_of(entity: &Entity, record: &Value) -> Typed {
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
fn body_of(entity: &Entity, custom: &[FieldDefinition], form: &Typed, change: bool) -> Value {
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

fn form_of(form: Result<Form<Vec<(String, String)>>, FormRejection>) -> Result<Typed, WebError> {
    let Form(pairs) = form.map_err(|_| ApiError::bad_request("the form could not be read"))?;
    Ok(pairs.into_iter().collect())
}

async fn new_form(entity: &'static Entity, signed_in: Result<SignedIn, WebError>) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let (name, choices) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            me.require(Action::RecordsCreate)?;
            Ok((viewer_name(me), choices(tx, me, entity).await?))
        })
        .await?;
    let viewer = Viewer {
        name: &name,
        csrf: &csrf,
    };
    let action = format!("/{}/new", entity.table);
    let content = record_form(
        entity,
        &action,
        &csrf,
        &Typed::new(),
        &choices,
        &Errors::default(),
    );
    Ok(respond(
        StatusCode::OK,
        layout(
            &format!("New {}", entity.name),
            &format!("/{}", entity.table),
            Some(&viewer),
            content,
        ),
    ))
}

/// A refused form comes back as typed, each error next to its field.
#[allow(clippy::too_many_arguments)]
fn refused(
    entity: &'static Entity,
    title: &str,
    action: &str,
    viewer: &Viewer,
    form: &Typed,
    error: &ApiError,
    choices: &Choices,
) -> Response {
    let errors = Errors::of(error);
    respond(
        StatusCode::UNPROCESSABLE_ENTITY,
        layout(
            title,
            &format!("/{}", entity.table),
            Some(viewer),
            record_form(entity, action, viewer.csrf, form, choices, &errors),
        ),
    )
}

async fn create(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let form = form_of(form)?;
    check_csrf(
        &csrf,
        form.get("csrf").map(String::as_str).unwrap_or_default(),
    )?;
    // A refused body writes nothing, so the transaction ends the same
    // either way; the form's choices come back with the refusal.
    let (created, choices, name) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let choices = choices(tx, me, entity).await?;
            let body = body_of(entity, &choices.custom, &form, false);
            let created = match records::create(tx, me, entity, body).await {
                Ok(record) => Ok(record),
                Err(e @ ServiceError::Invalid(_)) => Err(ApiError::from(e)),
                Err(e) => return Err(e.into()),
            };
            Ok((created, choices, viewer_name(me)))
        })
        .await?;
    match created {
        Ok(record) => Ok(see_other(&format!("/{}/{}", entity.table, record["id"]))),
        Err(error) => {
            let viewer = Viewer {
                name: &name,
                csrf: &csrf,
            };
            let action = format!("/{}/new", entity.table);
            Ok(refused(
                entity,
                &format!("New {}", entity.name),
                &action,
                &viewer,
                &form,
                &error,
                &choices,
            ))
        }
    }
}

async fn show(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let id = id_of(&id)?;
    let (name, record, refs, history, custom) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let record = records::get(tx, me, entity, id, false).await?;
            let mut refs = HashMap::new();
            for field in entity.fields {
                if let (Kind::Ref(target), Some(ref_id)) = (field.kind, record[field.name].as_i64())
                    && let Ok(other) =
                        records::get(tx, me, target.entity(), ref_id as i32, false).await
                {
                    let shown = (
                        target.entity().table,
                        ref_id,
                        title_of(target.entity(), &other),
                    );
                    refs.insert(field.name, shown);
                }
            }
            let history = records::history(tx, entity.name, id, None, 20).await?;
            let custom = match entity.custom {
                Some(custom) => custom_fields::list(tx, Some(custom.as_str()), 0, CHOICES).await?,
                None => Vec::new(),
            };
            Ok((viewer_name(me), record, refs, history, custom))
        })
        .await?;
    let viewer = Viewer {
        name: &name,
        csrf: &csrf,
    };
    let base = format!("/{}/{}", entity.table, id);
    let content = html! {
        div.toolbar {
            a.button href=(format!("{base}/edit")) { "Edit" }
            form method="post" action=(format!("{base}/delete")) {
                (csrf_field(&csrf))
                button.quiet type="submit" { "Delete" }
            }
        }
        dl.card.details {
            @for field in entity.fields.iter().filter(|f| f.kind != Kind::CustomFields) {
                dt { (label(field)) }
                dd {
                    @if let Some((table, ref_id, title)) = refs.get(field.name) {
                        a href=(format!("/{table}/{ref_id}")) { (title) }
                    } @else {
                        (shown(field, &record[field.name]))
                    }
                }
            }
            @for def in &custom {
                dt { (def.label) }
                dd { (shown(&Field::text("custom", 0), &record["custom_fields"][&def.key])) }
            }
        }
        h2 { "History" }
        ul.plain {
            @for (_, event) in &history {
                li {
                    strong { (event["action"].as_str().unwrap_or_default()) }
                    " " span.muted { (event["at"].as_str().unwrap_or_default().get(..16).unwrap_or_default().replace('T', " ")) }
                    @if let Some(changes) = event["changes"].as_object() {
                        ": " (changes.keys().cloned().collect::<Vec<_>>().join(", "))
                    }
                }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(
            &title_of(entity, &record),
            &format!("/{}", entity.table),
            Some(&viewer),
            content,
        ),
    ))
}

async fn edit_form(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let id = id_of(&id)?;
    let (name, record, choices) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let record = records::get(tx, me, entity, id, false).await?;
            Ok((viewer_name(me), record, choices(tx, me, entity).await?))
        })
        .await?;
    let viewer = Viewer {
        name: &name,
        csrf: &csrf,
    };
    let action = format!("/{}/{}/edit", entity.table, id);
    let content = record_form(
        entity,
        &action,
        &csrf,
        &typed_of(entity, &record),
        &choices,
        &Errors::default(),
    );
    Ok(respond(
        StatusCode::OK,
        layout(
            &format!("Edit {}", title_of(entity, &record)),
            &format!("/{}", entity.table),
            Some(&viewer),
            content,
        ),
    ))
}

async fn update(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let id = id_of(&id)?;
    let form = form_of(form)?;
    check_csrf(
        &csrf,
        form.get("csrf").map(String::as_str).unwrap_or_default(),
    )?;
    let (refusal, choices, name) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let choices = choices(tx, me, entity).await?;
            let body = body_of(entity, &choices.custom, &form, true);
            let refusal = match records::update(tx, me, entity, id, body, None).await {
                Ok(_) => None,
                Err(e @ ServiceError::Invalid(_)) => Some(ApiError::from(e)),
                Err(e) => return Err(e.into()),
            };
            Ok((refusal, choices, viewer_name(me)))
        })
        .await?;
    match refusal {
        None => Ok(see_other(&format!("/{}/{}", entity.table, id))),
        Some(error) => {
            let viewer = Viewer {
                name: &name,
                csrf: &csrf,
            };
            let action = format!("/{}/{}/edit", entity.table, id);
            Ok(refused(
                entity,
                &format!("Edit {}", entity.name),
                &action,
                &viewer,
                &form,
                &error,
                &choices,
            ))
        }
    }
}

async fn delete(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let id = id_of(&id)?;
    let form = form_of(form)?;
    check_csrf(
        &csrf,
        form.get("csrf").map(String::as_str).unwrap_or_default(),
    )?;
    let (name, may_restore) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            records::delete(tx, me, entity, id).await?;
            Ok((viewer_name(me), me.access.allows(Action::RecordsRestore)))
        })
        .await?;
    let viewer = Viewer {
        name: &name,
        csrf: &csrf,
    };
    let content = html! {
        p.notice role="status" { "The " (entity.name) " is deleted." }
        @if may_restore {
            form method="post" action=(format!("/{}/{}/restore", entity.table, id)) {
                (csrf_field(&csrf))
                button type="submit" { "Undo" }
            }
        }
        p { a href=(format!("/{}", entity.table)) { "Back to " (entity.table) } }
    };
    Ok(respond(
        StatusCode::OK,
        layout(
            "Deleted",
            &format!("/{}", entity.table),
            Some(&viewer),
            content,
        ),
    ))
}

async fn restore(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let id = id_of(&id)?;
    let form = form_of(form)?;
    check_csrf(
        &csrf,
        form.get("csrf").map(String::as_str).unwrap_or_default(),
    )?;
    authed
        .run(async |tx, me| records::restore(tx, me, entity, id).await)
        .await?;
    Ok(see_other(&format!("/{}/{}", entity.table, id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrium_domain::records::{COMPANY, CONTACT, DEAL};

    #[test]
    fn labels_are_the_names_people_read() {
        let labels = |e: &Entity| e.fields.iter().map(label).collect::<Vec<_>>();
        let contact = labels(&CONTACT);
        for name in ["First name", "Last name", "Email", "Phone", "Company"] {
            assert!(contact.iter().any(|l| l == name), "{name}");
        }
        let company = labels(&COMPANY);
        for name in ["Name", "Domain", "Industry", "Parent company"] {
            assert!(company.iter().any(|l| l == name), "{name}");
        }
        let deal = labels(&DEAL);
        for name in ["Title", "Stage", "Value", "Expected close date"] {
            assert!(deal.iter().any(|l| l == name), "{name}");
        }
    }

    #[test]
    fn an_emptied_field_is_left_out_on_create_and_cleared_on_change() {
        let form: Typed = [
            ("first_name".into(), "Ann".into()),
            ("phone".into(), " ".into()),
        ]
        .into();
        let created = body_of(&CONTACT, &[], &form, false);
        assert!(created.get("phone").is_none());
        let changed = body_of(&CONTACT, &[], &form, true);
        assert_eq!(changed["phone"], Value::Null);
    }
}
