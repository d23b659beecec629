//! Settings: the organisation's people and invitations, its pipeline
//! stages and custom fields (admins and, for stages, managers), and one's
//! own password. Each page is one transaction; each form posts, then the
//! page comes back with what happened.

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Value, json};

use atrium_domain::Action;
use atrium_domain::custom_fields::CustomEntity;
use atrium_services::{CurrentUser, auth, custom_fields, invitations, pipeline, users};

use super::forms::csrf_field;
use super::page::{Viewer, layout, respond};
use super::session::{SignedIn, check_csrf};
use super::{PageResult, WebError, id_of, see_other};
use crate::AppState;
use crate::error::ApiError;

const ROLES: &[&str] = &["admin", "manager", "sales_rep", "viewer"];
const FIELD_TYPES: &[&str] = &["text", "number", "boolean", "date", "select", "multiselect"];
const STAGE_KINDS: &[&str] = &["open", "won", "lost"];
const LISTED: i64 = 200;

type Fields = HashMap<String, String>;

fn fields(form: Result<Form<Vec<(String, String)>>, FormRejection>) -> Result<Fields, WebError> {
    let Form(pairs) = form.map_err(|_| ApiError::bad_request("the form could not be read"))?;
    Ok(pairs.into_iter().collect())
}

fn value<'a>(form: &'a Fields, name: &str) -> &'a str {
    form.get(name).map(|s| s.trim()).unwrap_or_default()
}

/// Checks the form's token, then runs `work` in the request's
/// transaction; a refusal comes back as the message the page shows.
async fn act(
    signed_in: SignedIn,
    form: &Fields,
    work: impl AsyncFnOnce(&atrium_store::TenantTx, &CurrentUser) -> Result<(), ApiError>,
) -> Result<Option<String>, WebError> {
    check_csrf(&signed_in.csrf, value(form, "csrf"))?;
    let outcome = signed_in
        .authed
        .run(async |tx, me| match work(tx, me).await {
            Ok(()) => Ok(None),
            Err(e)
                if e.status() == StatusCode::UNPROCESSABLE_ENTITY
                    || e.status() == StatusCode::CONFLICT =>
            {
                let detail: Vec<String> = e
                    .field_errors()
                    .map(|(field, message)| format!("{field} {message}"))
                    .collect();
                Ok(Some(if detail.is_empty() {
                    e.detail().to_owned()
                } else {
                    detail.join("; ")
                }))
            }
            Err(e) => Err(e),
        })
        .await?;
    Ok(outcome)
}

/// Where a form goes after it worked, or says what was wrong.
fn after(page: &str, problem: Option<String>) -> Response {
    match problem {
        None => see_other(&format!("{page}?done=1")),
        Some(problem) => {
            let encoded: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("problem", &problem)
                .finish();
            see_other(&format!("{page}?{encoded}"))
        }
    }
}

fn outcome(query: &HashMap<String, String>) -> Markup {
    html! {
        @if let Some(problem) = query.get("problem") {
            p.alert role="alert" { (problem) }
        } @else if query.contains_key("done") {
            p.notice role="status" { "Saved." }
        }
    }
}

fn settings_nav(current: &str) -> Markup {
    let pages = [
        ("/settings/users", "Users"),
        ("/settings/pipeline", "Pipeline"),
        ("/settings/custom-fields", "Custom fields"),
        ("/settings/profile", "Profile"),
    ];
    html! {
        nav.sub aria-label="Settings" {
            ul { @for (path, name) in pages {
                li { a href=(path) aria-current=[(path == current).then_some("page")] { (name) } }
            } }
        }
    }
}

fn options(choices: &[&str], selected: &str) -> Markup {
    html! { @for c in choices { option value=(c) selected[*c == selected] { (c.replace('_', " ")) } } }
}

fn name_of(me: &CurrentUser) -> String {
    super::page::person(&me.user)
}

fn page(title: &str, path: &str, name: &str, csrf: &str, body: Markup) -> Response {
    let viewer = Viewer { name, csrf };
    respond(
        StatusCode::OK,
        layout(
            title,
            "/settings",
            Some(&viewer),
            html! { (settings_nav(path)) (body) },
        ),
    )
}

pub(crate) async fn users_page(
    signed_in: Result<SignedIn, WebError>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let (name, people, pending) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            me.require(Action::UsersManage)?;
            let people = users::list(tx, me, 0, LISTED, false).await?;
            let pending = invitations::list(tx, me, 0, LISTED).await?;
            Ok((name_of(me), people, pending))
        })
        .await?;
    let body = html! {
        (outcome(&query))
        h2 { "People" }
        table {
            thead { tr { th { "Name" } th { "Email" } th { "Role" } th { "Status" } th { span.visually-hidden { "Actions" } } } }
            tbody {
                @for person in &people {
                    tr {
                        td { (person.first_name) " " (person.last_name) }
                        td { (person.email) }
                        td {
                            form.inline method="post" action=(format!("/settings/users/{}/role", person.id)) {
                                (csrf_field(&csrf))
                                label.visually-hidden for=(format!("role-{}", person.id)) { "Role of " (person.email) }
                                select id=(format!("role-{}", person.id)) name="role" { (options(ROLES, &person.role)) }
                                button.quiet type="submit" { "Change role" }
                            }
                        }
                        td { @if person.active { "active" } @else { "deactivated" } }
                        td {
                            @if person.active {
                                form method="post" action=(format!("/settings/users/{}/deactivate", person.id)) {
                                    (csrf_field(&csrf))
                                    button.quiet type="submit" { "Deactivate" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Invite someone" }
        form.stack.card method="post" action="/settings/users/invite" {
            (csrf_field(&csrf))
            div { label for="invite-email" { "Email" } input id="invite-email" name="email" type="email" required; }
            div { label for="invite-role" { "Role" } select id="invite-role" name="role" { (options(ROLES, "sales_rep")) } }
            div { button type="submit" { "Invite" } }
        }
        h2 { "Pending invitations" }
        @if pending.is_empty() { p.muted { "None." } } @else {
            ul.plain {
                @for invitation in &pending {
                    li.activity {
                        span { (invitation.email) " " span.muted { "(" (invitation.role.replace('_', " ")) ", until " (invitation.expires_at.format("%Y-%m-%d")) ")" } }
                        form method="post" action=(format!("/settings/invitations/{}/revoke", invitation.id)) {
                            (csrf_field(&csrf))
                            button.quiet type="submit" { "Revoke" }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Users", "/settings/users", &name, &csrf, body))
}

pub(crate) async fn invite(
    State(state): State<AppState>,
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let form = fields(form)?;
    let problem = act(signed_in?, &form, async |tx, me| {
        invitations::create(
            tx,
            me,
            &state.auth,
            &state.links,
            value(&form, "email"),
            value(&form, "role"),
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok(after("/settings/users", problem))
}

pub(crate) async fn revoke(
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let (id, form) = (id_of(&id)?, fields(form)?);
    let problem = act(signed_in?, &form, async |tx, me| {
        Ok(invitations::revoke(tx, me, id).await?)
    })
    .await?;
    Ok(after("/settings/users", problem))
}

pub(crate) async fn change_role(
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let (id, form) = (id_of(&id)?, fields(form)?);
    let problem = act(signed_in?, &form, async |tx, me| {
        let request = users::UpdateUser {
            role: Some(value(&form, "role").to_owned()),
            ..Default::default()
        };
        users::update(tx, me, id, request).await?;
        Ok(())
    })
    .await?;
    Ok(after("/settings/users", problem))
}

pub(crate) async fn deactivate(
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let (id, form) = (id_of(&id)?, fields(form)?);
    let problem = act(signed_in?, &form, async |tx, me| {
        let request = users::UpdateUser {
            active: Some(false),
            ..Default::default()
        };
        users::update(tx, me, id, request).await?;
        Ok(())
    })
    .await?;
    Ok(after("/settings/users", problem))
}

pub(crate) async fn pipeline_page(
    signed_in: Result<SignedIn, WebError>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let (name, stages) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            me.require(Action::PipelineManage)?;
            Ok((name_of(me), pipeline::list(tx).await?))
        })
        .await?;
    let body = html! {
        (outcome(&query))
        table {
            thead { tr { th { "Stage" } th { "Probability" } th { "Kind" } th { "Position" } th { span.visually-hidden { "Actions" } } } }
            tbody {
                @for stage in &stages {
                    @let form_id = format!("stage-{}", stage.position);
                    tr {
                        td {
                            label.visually-hidden for=(format!("{form_id}-name")) { "Name of " (stage.name) }
                            input id=(format!("{form_id}-name")) form=(form_id) name="name" value=(stage.name);
                        }
                        td {
                            label.visually-hidden for=(format!("{form_id}-probability")) { "Probability of " (stage.name) }
                            input id=(format!("{form_id}-probability")) form=(form_id) name="probability" value=(stage.probability) inputmode="decimal";
                        }
                        td { (stage.kind) }
                        td {
                            label.visually-hidden for=(format!("{form_id}-position")) { "Position of " (stage.name) }
                            input id=(format!("{form_id}-position")) form=(form_id) name="position" type="number" min="1" value=(stage.position);
                        }
                        td {
                            form id=(form_id) method="post" action="/settings/pipeline/save" {
                                (csrf_field(&csrf))
                                input type="hidden" name="stage" value=(stage.name);
                                button.quiet type="submit" { "Save" }
                            }
                            form method="post" action="/settings/pipeline/delete" {
                                (csrf_field(&csrf))
                                input type="hidden" name="stage" value=(stage.name);
                                button.quiet type="submit" { "Delete" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add a stage" }
        form.stack.card method="post" action="/settings/pipeline/add" {
            (csrf_field(&csrf))
            div { label for="stage-name" { "Stage name" } input id="stage-name" name="name" required; }
            div { label for="stage-probability" { "Probability" } input id="stage-probability" name="probability" inputmode="decimal" required; }
            div { label for="stage-kind" { "Kind" } select id="stage-kind" name="kind" { (options(STAGE_KINDS, "open")) } }
            div { button type="submit" { "Add stage" } }
        }
    };
    Ok(page(
        "Pipeline stages",
        "/settings/pipeline",
        &name,
        &csrf,
        body,
    ))
}

fn number_or_text(raw: &str) -> Value {
    raw.parse::<f64>()
        .map(|n| json!(n))
        .unwrap_or_else(|_| json!(raw))
}

pub(crate) async fn add_stage(
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let form = fields(form)?;
    let problem = act(signed_in?, &form, async |tx, me| {
        let new = pipeline::NewStage {
            name: value(&form, "name").to_owned(),
            probability: number_or_text(value(&form, "probability")),
            kind: Some(value(&form, "kind").to_owned()),
            position: None,
        };
        pipeline::create(tx, me, new).await?;
        Ok(())
    })
    .await?;
    Ok(after("/settings/pipeline", problem))
}

pub(crate) async fn save_stage(
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let form = fields(form)?;
    let problem = act(signed_in?, &form, async |tx, me| {
        let changes = pipeline::StageChanges {
            name: Some(value(&form, "name").to_owned()),
            probability: Some(number_or_text(value(&form, "probability"))),
            kind: None,
            position: Some(number_or_text(value(&form, "position"))),
        };
        pipeline::update(tx, me, value(&form, "stage"), changes).await?;
        Ok(())
    })
    .await?;
    Ok(after("/settings/pipeline", problem))
}

pub(crate) async fn delete_stage(
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let form = fields(form)?;
    let problem = act(signed_in?, &form, async |tx, me| {
        Ok(pipeline::delete(tx, me, value(&form, "stage")).await?)
    })
    .await?;
    Ok(after("/settings/pipeline", problem))
}

pub(crate) async fn fields_page(
    signed_in: Result<SignedIn, WebError>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let (name, defined) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            me.require(Action::CustomFieldsManage)?;
            Ok((name_of(me), custom_fields::list(tx, None, 0, LISTED).await?))
        })
        .await?;
    let entities = [
        CustomEntity::Contact,
        CustomEntity::Company,
        CustomEntity::Deal,
    ];
    let body = html! {
        (outcome(&query))
        @if defined.is_empty() { p.muted { "No custom fields yet." } } @else {
            table {
                thead { tr { th { "Entity" } th { "Key" } th { "Label" } th { "Type" } th { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for field in &defined {
                        tr {
                            td { (field.entity) } td { code { (field.key) } } td { (field.label) } td { (field.field_type) }
                            td {
                                form method="post" action=(format!("/settings/custom-fields/{}/delete", field.id)) {
                                    (csrf_field(&csrf))
                                    button.quiet type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add a field" }
        form.stack.card method="post" action="/settings/custom-fields/add" {
            (csrf_field(&csrf))
            div { label for="cf-entity" { "Entity" } select id="cf-entity" name="entity" {
                @for e in entities { option value=(e.as_str()) { (e.as_str()) } }
            } }
            div { label for="cf-key" { "Key" } input id="cf-key" name="key" required; p.muted { "Lower-case letters, digits and underscores, such as " code { "region" } "." } }
            div { label for="cf-label" { "Label" } input id="cf-label" name="label" required; }
            div { label for="cf-type" { "Type" } select id="cf-type" name="type" { (options(FIELD_TYPES, "text")) } }
            div { label for="cf-options" { "Options" } input id="cf-options" name="options"; p.muted { "For a select: the choices, separated by commas." } }
            div { input id="cf-required" name="required" type="checkbox" value="true"; " " label for="cf-required" style="display:inline" { "Required" } }
            div { button type="submit" { "Add field" } }
        }
    };
    Ok(page(
        "Custom fields",
        "/settings/custom-fields",
        &name,
        &csrf,
        body,
    ))
}

pub(crate) async fn add_field(
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let form = fields(form)?;
    let problem = act(signed_in?, &form, async |tx, me| {
        let choices: Vec<&str> = value(&form, "options")
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .collect();
        let new = custom_fields::NewField {
            entity: value(&form, "entity").to_owned(),
            key: value(&form, "key").to_owned(),
            label: value(&form, "label").to_owned(),
            field_type: value(&form, "type").to_owned(),
            options: (!choices.is_empty()).then(|| json!(choices)),
            required: Some(value(&form, "required") == "true"),
        };
        custom_fields::create(tx, me, new).await?;
        Ok(())
    })
    .await?;
    Ok(after("/settings/custom-fields", problem))
}

pub(crate) async fn delete_field(
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let (id, form) = (id_of(&id)?, fields(form)?);
    let problem = act(signed_in?, &form, async |tx, me| {
        Ok(custom_fields::delete(tx, me, id).await?)
    })
    .await?;
    Ok(after("/settings/custom-fields", problem))
}

pub(crate) async fn profile_page(
    signed_in: Result<SignedIn, WebError>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let (name, email) = authed
        .run(async |_tx, me| Ok::<_, ApiError>((name_of(me), me.user.email.clone())))
        .await?;
    let body = html! {
        (outcome(&query))
        p { "Signed in as " strong { (email) } "." }
        h2 { "Change your password" }
        form.stack.card method="post" action="/settings/profile/password" {
            (csrf_field(&csrf))
            div { label for="current" { "Current password" } input id="current" name="current_password" type="password" autocomplete="current-password" required; }
            div { label for="new" { "New password" } input id="new" name="new_password" type="password" autocomplete="new-password" required; }
            div { button type="submit" { "Change password" } }
        }
    };
    Ok(page("Profile", "/settings/profile", &name, &csrf, body))
}

/// A new password ends the user's other sessions, not this one.
pub(crate) async fn change_password(
    State(state): State<AppState>,
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let form = fields(form)?;
    let problem = act(signed_in?, &form, async |tx, me| {
        auth::change_password(
            tx,
            &state.limiter,
            me,
            value(&form, "current_password"),
            value(&form, "new_password"),
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok(after("/settings/profile", problem))
}
