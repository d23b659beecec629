//! What the record forms and buttons do: create, change, delete, restore.

use axum::Form;
use axum::extract::Path;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use atrium_domain::Action;
use atrium_domain::records::Entity;
use atrium_services::ServiceError;
use atrium_services::records;

use super::form::{Choices, ChoicesFor, Typed, body_of, choices, form_of, record_form, typed_of};
use super::{id_of, title_of, viewer_name};
use crate::error::ApiError;
use crate::web::forms::{Errors, csrf_field};
use crate::web::page::{Viewer, layout, respond};
use crate::web::session::{SignedIn, check_csrf};
use crate::web::{PageResult, WebError, see_other};

pub(super) async fn new_form(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let (name, choices) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            me.require(Action::RecordsCreate)?;
            Ok((
                viewer_name(me),
                choices(tx, me, entity, ChoicesFor::Form).await?,
            ))
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

pub(super) async fn create(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let (authed, csrf, form) = posted(signed_in, form)?;
    // A refused body writes nothing, so the transaction ends the same
    // either way; the form's choices come back with the refusal.
    let (created, choices, name) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let choices = choices(tx, me, entity, ChoicesFor::Form).await?;
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
        // A form on another record's page (logging an activity on a
        // contact) goes back there; only paths of this site.
        Ok(record) => Ok(match form.get("back") {
            Some(back) if back.starts_with('/') && !back.starts_with("//") => see_other(back),
            _ => see_other(&format!("/{}/{}", entity.table, record["id"])),
        }),
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

pub(super) async fn edit_form(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let id = id_of(&id)?;
    let (name, record, choices) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let record = records::get(tx, me, entity, id, false).await?;
            Ok((
                viewer_name(me),
                record,
                choices(tx, me, entity, ChoicesFor::Form).await?,
            ))
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

pub(super) async fn update(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let id = id_of(&id)?;
    let (authed, csrf, form) = posted(signed_in, form)?;
    let (refusal, choices, name) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let choices = choices(tx, me, entity, ChoicesFor::Form).await?;
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

pub(super) async fn delete(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let id = id_of(&id)?;
    let (authed, csrf, _) = posted(signed_in, form)?;
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

pub(super) async fn restore(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let id = id_of(&id)?;
    let (authed, _, _) = posted(signed_in, form)?;
    authed
        .run(async |tx, me| records::restore(tx, me, entity, id).await)
        .await?;
    Ok(see_other(&format!("/{}/{}", entity.table, id)))
}

/// A signed-in form post: the request's transaction, the session's CSRF
/// token (pages drawn after it carry it again), and the form, once its
/// token is checked.
pub(crate) fn posted(
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<(crate::extract::Authed, String, Typed), WebError> {
    let SignedIn { authed, csrf } = signed_in?;
    let form = form_of(form)?;
    check_csrf(
        &csrf,
        form.get("csrf").map(String::as_str).unwrap_or_default(),
    )?;
    Ok((authed, csrf, form))
}

/// Links a contact to a deal with a role (or changes the role).
pub(crate) async fn add_deal_contact(
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let id = id_of(&id)?;
    let (authed, _, form) = posted(signed_in, form)?;
    let contact_id = id_of(
        form.get("contact_id")
            .map(String::as_str)
            .unwrap_or_default(),
    )?;
    let role = form
        .get("role")
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .map(|r| serde_json::Value::String(r.to_owned()));
    authed
        .run(async |tx, me| records::put_deal_contact(tx, me, id, contact_id, role.as_ref()).await)
        .await?;
    Ok(see_other(&format!("/deals/{id}")))
}

pub(crate) async fn remove_deal_contact(
    signed_in: Result<SignedIn, WebError>,
    Path((id, contact_id)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let (id, contact_id) = (id_of(&id)?, id_of(&contact_id)?);
    let (authed, _, _) = posted(signed_in, form)?;
    authed
        .run(async |tx, me| records::delete_deal_contact(tx, me, id, contact_id).await)
        .await?;
    Ok(see_other(&format!("/deals/{id}")))
}
