//! CRM record endpoints, one set per record type over the same services.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use futures::StreamExt;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use atrium_services::records::{self, ACTIVITY, COMPANY, CONTACT, DEAL, Entity, ListRequest};

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Authed, Id, Json};
use crate::list::{Page, Query, encode_id_cursor, id_page};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_companies, create_company))
        .routes(routes!(get_company, update_company, delete_company))
        .routes(routes!(restore_company))
        .routes(routes!(list_contacts, create_contact))
        .routes(routes!(get_contact, update_contact, delete_contact))
        .routes(routes!(restore_contact))
        .routes(routes!(list_deals, create_deal))
        .routes(routes!(get_deal, update_deal, delete_deal))
        .routes(routes!(restore_deal))
        .routes(routes!(list_activities, create_activity))
        .routes(routes!(get_activity, update_activity, delete_activity))
        .routes(routes!(restore_activity))
        .routes(routes!(complete_activity))
        .routes(routes!(list_deal_contacts))
        .routes(routes!(export_contacts))
        .routes(routes!(import_contacts))
        .routes(routes!(put_deal_contact, delete_deal_contact))
        .routes(routes!(audit_history))
}

fn with_etag(status: StatusCode, record: Value) -> impl IntoResponse {
    (
        status,
        [(header::ETAG, records::etag(&record))],
        axum::Json(record),
    )
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn list(authed: Authed, entity: &Entity, query: Query) -> ApiResult<axum::Json<Page<Value>>> {
    let result: ApiResult<_> = async {
        let request = ListRequest {
            params: query.all(),
            limit: query.limit()?,
            include_deleted: query.bool("include_deleted")?,
        };
        Ok(records::list(&authed.tx, &authed.me, entity, request).await?)
    }
    .await;
    let page = authed.finish(result).await?;
    Ok(axum::Json(Page {
        data: page.data,
        next_cursor: page.next_cursor,
    }))
}

async fn create(authed: Authed, entity: &Entity, body: Value) -> ApiResult<impl IntoResponse> {
    let result = records::create(&authed.tx, &authed.me, entity, body).await;
    Ok(with_etag(StatusCode::CREATED, authed.finish(result).await?))
}

async fn get(
    authed: Authed,
    entity: &Entity,
    id: i32,
    query: Query,
) -> ApiResult<impl IntoResponse> {
    let result: ApiResult<_> = async {
        Ok(records::get(
            &authed.tx,
            &authed.me,
            entity,
            id,
            query.bool("include_deleted")?,
        )
        .await?)
    }
    .await;
    Ok(with_etag(StatusCode::OK, authed.finish(result).await?))
}

async fn update(
    authed: Authed,
    entity: &Entity,
    id: i32,
    headers: HeaderMap,
    body: Value,
) -> ApiResult<impl IntoResponse> {
    let result = records::update(
        &authed.tx,
        &authed.me,
        entity,
        id,
        body,
        if_match(&headers).as_deref(),
    )
    .await;
    Ok(with_etag(StatusCode::OK, authed.finish(result).await?))
}

async fn delete(authed: Authed, entity: &Entity, id: i32) -> ApiResult<StatusCode> {
    let result = records::delete(&authed.tx, &authed.me, entity, id).await;
    authed.finish(result).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restore(authed: Authed, entity: &Entity, id: i32) -> ApiResult<impl IntoResponse> {
    let result = records::restore(&authed.tx, &authed.me, entity, id).await;
    Ok(with_etag(StatusCode::OK, authed.finish(result).await?))
}

/// Names the company schema; the schema itself is made from the
/// record's field definitions (see `openapi.rs`).
#[derive(utoipa::ToSchema)]
pub struct Company;

/// Companies, newest first by default. Filters: `q` (name or domain
/// prefix), `industry`, `parent_company_id`, `domain`, `cf.<key>`.
#[utoipa::path(get, path = "/api/v1/companies", tag = "companies", security(("session" = [])),
    params(("q" = Option<String>, Query), ("industry" = Option<String>, Query),
           ("parent_company_id" = Option<i32>, Query), ("domain" = Option<String>, Query),
           ("sort" = Option<String>, Query, description = "-created_at (default), created_at, name, -name"),
           ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query),
           ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = Page<Company>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_companies(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<Value>>> {
    list(authed, &COMPANY, query).await
}

#[utoipa::path(post, path = "/api/v1/companies", tag = "companies", security(("session" = [])),
    request_body = Company,
    responses((status = 201, body = Company), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_company(authed: Authed, Json(body): Json<Value>) -> ApiResult<impl IntoResponse> {
    create(authed, &COMPANY, body).await
}

#[utoipa::path(get, path = "/api/v1/companies/{id}", tag = "companies", security(("session" = [])),
    params(("id" = i32, Path), ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = Company), (status = 404, body = Problem)))]
async fn get_company(authed: Authed, Id(id): Id, query: Query) -> ApiResult<impl IntoResponse> {
    get(authed, &COMPANY, id, query).await
}

/// Change a company; `custom_fields` merges (a key set to null is
/// removed). `If-Match` with a stale ETag is 412.
#[utoipa::path(patch, path = "/api/v1/companies/{id}", tag = "companies", security(("session" = [])),
    params(("id" = i32, Path)), request_body = Company,
    responses((status = 200, body = Company), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 412, body = Problem), (status = 422, body = Problem)))]
async fn update_company(
    authed: Authed,
    Id(id): Id,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    update(authed, &COMPANY, id, headers, body).await
}

/// Soft-delete a company.
#[utoipa::path(delete, path = "/api/v1/companies/{id}", tag = "companies", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_company(authed: Authed, Id(id): Id) -> ApiResult<StatusCode> {
    delete(authed, &COMPANY, id).await
}

/// Restore a deleted company (managers and admins).
#[utoipa::path(post, path = "/api/v1/companies/{id}/restore", tag = "companies", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 200, body = Company), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
async fn restore_company(authed: Authed, Id(id): Id) -> ApiResult<impl IntoResponse> {
    restore(authed, &COMPANY, id).await
}

/// One audit event: `changes` maps each field to `{"from", "to"}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// `create`, `update`, `delete` or `restore`.
    action: String,
    user_id: Option<i32>,
    at: String,
    #[schema(value_type = Object)]
    changes: Value,
}

/// A record's changes, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("session" = [])),
    params(("entity" = String, Query, description = "company, contact, deal or activity"),
           ("entity_id" = i32, Query), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<AuditEvent>), (status = 422, body = Problem)))]
async fn audit_history(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<Value>>> {
    let result: ApiResult<_> = async {
        let limit = query.limit()?;
        let entity = query
            .str("entity")
            .ok_or_else(|| ApiError::invalid_field("entity", "is required"))?;
        let id = query
            .str("entity_id")
            .and_then(|v| v.parse::<i32>().ok())
            .ok_or_else(|| ApiError::invalid_field("entity_id", "must be the id of a record"))?;
        let before = match query.id_cursor()? {
            0 => None,
            id => Some(i64::from(id)),
        };
        let mut events =
            atrium_services::records::history(&authed.tx, entity, id, before, limit + 1).await?;
        let more = events.len() as i64 > limit;
        events.truncate(limit as usize);
        let next_cursor = more
            .then(|| events.last().map(|(id, _)| encode_id_cursor(*id as i32)))
            .flatten();
        Ok(Page {
            data: events.into_iter().map(|(_, event)| event).collect(),
            next_cursor,
        })
    }
    .await;
    Ok(axum::Json(authed.finish(result).await?))
}

/// Names the contact schema; the schema itself is made from the
/// record's field definitions (see `openapi.rs`).
#[derive(utoipa::ToSchema)]
pub struct Contact;

/// Contacts. `q` searches names and email: whole words, prefixes while
/// typing (`jo`), small typos (`jhon smith`), best matches first. Other
/// filters: `email` (exact, any case), `company_id`, `cf.<key>`.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", security(("session" = [])),
    params(("q" = Option<String>, Query), ("email" = Option<String>, Query),
           ("company_id" = Option<i32>, Query),
           ("sort" = Option<String>, Query, description = "-created_at (default), created_at, name, -name, last_name, -last_name"),
           ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query),
           ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = Page<Contact>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_contacts(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<Value>>> {
    list(authed, &CONTACT, query).await
}

#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", security(("session" = [])),
    request_body = Contact,
    responses((status = 201, body = Contact), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_contact(authed: Authed, Json(body): Json<Value>) -> ApiResult<impl IntoResponse> {
    create(authed, &CONTACT, body).await
}

#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts", security(("session" = [])),
    params(("id" = i32, Path), ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = Contact), (status = 404, body = Problem)))]
async fn get_contact(authed: Authed, Id(id): Id, query: Query) -> ApiResult<impl IntoResponse> {
    get(authed, &CONTACT, id, query).await
}

#[utoipa::path(patch, path = "/api/v1/contacts/{id}", tag = "contacts", security(("session" = [])),
    params(("id" = i32, Path)), request_body = Contact,
    responses((status = 200, body = Contact), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 412, body = Problem), (status = 422, body = Problem)))]
async fn update_contact(
    authed: Authed,
    Id(id): Id,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    update(authed, &CONTACT, id, headers, body).await
}

#[utoipa::path(delete, path = "/api/v1/contacts/{id}", tag = "contacts", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_contact(authed: Authed, Id(id): Id) -> ApiResult<StatusCode> {
    delete(authed, &CONTACT, id).await
}

#[utoipa::path(post, path = "/api/v1/contacts/{id}/restore", tag = "contacts", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 200, body = Contact), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
async fn restore_contact(authed: Authed, Id(id): Id) -> ApiResult<impl IntoResponse> {
    restore(authed, &CONTACT, id).await
}
/// Names the deal schema; the schema itself is made from the
/// record's field definitions (see `openapi.rs`).
#[derive(utoipa::ToSchema)]
pub struct Deal;

/// Deals. Filters: `stage`, `owner_id`, `company_id`,
/// `primary_contact_id`, `expected_close_from` and `expected_close_to`
/// (inclusive dates), `q` (in the title), `cf.<key>`.
#[utoipa::path(get, path = "/api/v1/deals", tag = "deals", security(("session" = [])),
    params(("stage" = Option<String>, Query), ("owner_id" = Option<i32>, Query),
           ("company_id" = Option<i32>, Query), ("primary_contact_id" = Option<i32>, Query),
           ("expected_close_from" = Option<String>, Query), ("expected_close_to" = Option<String>, Query),
           ("q" = Option<String>, Query),
           ("sort" = Option<String>, Query, description = "-created_at (default), created_at, title, -title"),
           ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query),
           ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = Page<Deal>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_deals(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<Value>>> {
    list(authed, &DEAL, query).await
}

#[utoipa::path(post, path = "/api/v1/deals", tag = "deals", security(("session" = [])),
    request_body = Deal,
    responses((status = 201, body = Deal), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_deal(authed: Authed, Json(body): Json<Value>) -> ApiResult<impl IntoResponse> {
    create(authed, &DEAL, body).await
}

#[utoipa::path(get, path = "/api/v1/deals/{id}", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path), ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = Deal), (status = 404, body = Problem)))]
async fn get_deal(authed: Authed, Id(id): Id, query: Query) -> ApiResult<impl IntoResponse> {
    get(authed, &DEAL, id, query).await
}

#[utoipa::path(patch, path = "/api/v1/deals/{id}", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path)), request_body = Deal,
    responses((status = 200, body = Deal), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 412, body = Problem), (status = 422, body = Problem)))]
async fn update_deal(
    authed: Authed,
    Id(id): Id,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    update(authed, &DEAL, id, headers, body).await
}

#[utoipa::path(delete, path = "/api/v1/deals/{id}", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_deal(authed: Authed, Id(id): Id) -> ApiResult<StatusCode> {
    delete(authed, &DEAL, id).await
}

#[utoipa::path(post, path = "/api/v1/deals/{id}/restore", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 200, body = Deal), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
async fn restore_deal(authed: Authed, Id(id): Id) -> ApiResult<impl IntoResponse> {
    restore(authed, &DEAL, id).await
}
/// Names the activity schema; the schema itself is made from the
/// record's field definitions (see `openapi.rs`).
#[derive(utoipa::ToSchema)]
pub struct Activity;

/// Activities. Filters: `contact_id`, `company_id`, `deal_id`,
/// `owner_id`, `kind`, `open` (not completed), `due_before` (a
/// timestamp).
#[utoipa::path(get, path = "/api/v1/activities", tag = "activities", security(("session" = [])),
    params(("contact_id" = Option<i32>, Query), ("company_id" = Option<i32>, Query),
           ("deal_id" = Option<i32>, Query), ("owner_id" = Option<i32>, Query),
           ("kind" = Option<String>, Query), ("open" = Option<bool>, Query),
           ("due_before" = Option<String>, Query),
           ("sort" = Option<String>, Query, description = "-created_at (default), created_at"),
           ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query),
           ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = Page<Activity>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_activities(authed: Authed, query: Query) -> ApiResult<axum::Json<Page<Value>>> {
    list(authed, &ACTIVITY, query).await
}

#[utoipa::path(post, path = "/api/v1/activities", tag = "activities", security(("session" = [])),
    request_body = Activity,
    responses((status = 201, body = Activity), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_activity(authed: Authed, Json(body): Json<Value>) -> ApiResult<impl IntoResponse> {
    create(authed, &ACTIVITY, body).await
}

#[utoipa::path(get, path = "/api/v1/activities/{id}", tag = "activities", security(("session" = [])),
    params(("id" = i32, Path), ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = Activity), (status = 404, body = Problem)))]
async fn get_activity(authed: Authed, Id(id): Id, query: Query) -> ApiResult<impl IntoResponse> {
    get(authed, &ACTIVITY, id, query).await
}

#[utoipa::path(patch, path = "/api/v1/activities/{id}", tag = "activities", security(("session" = [])),
    params(("id" = i32, Path)), request_body = Activity,
    responses((status = 200, body = Activity), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 412, body = Problem), (status = 422, body = Problem)))]
async fn update_activity(
    authed: Authed,
    Id(id): Id,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    update(authed, &ACTIVITY, id, headers, body).await
}

#[utoipa::path(delete, path = "/api/v1/activities/{id}", tag = "activities", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_activity(authed: Authed, Id(id): Id) -> ApiResult<StatusCode> {
    delete(authed, &ACTIVITY, id).await
}

#[utoipa::path(post, path = "/api/v1/activities/{id}/restore", tag = "activities", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 200, body = Activity), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
async fn restore_activity(authed: Authed, Id(id): Id) -> ApiResult<impl IntoResponse> {
    restore(authed, &ACTIVITY, id).await
}

/// Mark an activity done now (no change if it already is).
#[utoipa::path(post, path = "/api/v1/activities/{id}/complete", tag = "activities", security(("session" = [])),
    params(("id" = i32, Path)),
    responses((status = 200, body = Activity), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn complete_activity(authed: Authed, Id(id): Id) -> ApiResult<impl IntoResponse> {
    let result = records::complete_activity(&authed.tx, &authed.me, id).await;
    Ok(with_etag(StatusCode::OK, authed.finish(result).await?))
}

/// `{"contact_id", "role", "contact": {...}}`
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON for the OpenAPI document
pub struct DealContact {
    contact_id: i32,
    role: Option<String>,
    contact: Contact,
}

/// The contacts of a deal, with their roles.
#[utoipa::path(get, path = "/api/v1/deals/{id}/contacts", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<DealContact>), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
async fn list_deal_contacts(
    authed: Authed,
    Id(id): Id,
    query: Query,
) -> ApiResult<axum::Json<Page<Value>>> {
    let (limit, after) = (query.limit()?, query.id_cursor()?);
    let result = records::deal_contacts(&authed.tx, &authed.me, id, after, limit + 1).await;
    let rows = authed.finish(result).await?;
    Ok(axum::Json(id_page(rows, limit, |r| r.0, |r| r.1.clone())))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DealContactBody {
    /// e.g. decision_maker, influencer, user
    #[schema(value_type = Option<String>)]
    role: Option<Value>,
}

/// Link a contact to a deal, or change its role (idempotent).
#[utoipa::path(put, path = "/api/v1/deals/{id}/contacts/{contact_id}", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path), ("contact_id" = i32, Path)), request_body = DealContactBody,
    responses((status = 200, body = DealContact), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
async fn put_deal_contact(
    authed: Authed,
    axum::extract::Path((id, contact_id)): axum::extract::Path<(String, String)>,
    Json(body): Json<DealContactBody>,
) -> ApiResult<axum::Json<Value>> {
    let (id, contact_id) = ids(&id, &contact_id)?;
    let result =
        records::put_deal_contact(&authed.tx, &authed.me, id, contact_id, body.role.as_ref()).await;
    Ok(axum::Json(authed.finish(result).await?))
}

/// Unlink a contact from a deal.
#[utoipa::path(delete, path = "/api/v1/deals/{id}/contacts/{contact_id}", tag = "deals", security(("session" = [])),
    params(("id" = i32, Path), ("contact_id" = i32, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_deal_contact(
    authed: Authed,
    axum::extract::Path((id, contact_id)): axum::extract::Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (id, contact_id) = ids(&id, &contact_id)?;
    let result = records::delete_deal_contact(&authed.tx, &authed.me, id, contact_id).await;
    authed.finish(result).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Two ids from a path; anything else is a record that is not there.
fn ids(a: &str, b: &str) -> ApiResult<(i32, i32)> {
    let parse = |s: &str| s.parse::<i32>().ok().filter(|n| *n > 0);
    parse(a)
        .zip(parse(b))
        .ok_or_else(|| ApiError::not_found("not found"))
}

/// All (filtered) contacts as CSV, streamed a thousand rows at a time:
/// `id, first_name, last_name, email, phone, company_id, company`, then
/// `cf.<key>` for each defined custom field. The file imports back
/// unchanged. Takes the list's filters.
#[utoipa::path(get, path = "/api/v1/contacts/export", tag = "contacts", security(("session" = [])),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = Problem)))]
async fn export_contacts(authed: Authed, query: Query) -> ApiResult<axum::response::Response> {
    use atrium_services::contacts_csv::{export_header, export_page};
    let result = export_header(&authed.tx, &authed.me).await;
    let Authed { tx, me, scope } = authed;
    let header = match result {
        Ok(h) => {
            tx.commit()
                .await
                .map_err(atrium_services::ServiceError::from)?;
            h
        }
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(e.into());
        }
    };
    let mut first = csv::Writer::from_writer(Vec::new());
    first
        .write_record(&header)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let first = first.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut params = query.all().clone();
    params.remove("cursor");
    params.remove("limit");
    let state = Some((scope, me, header, params, None::<String>));
    let pages = futures::stream::unfold(state, |state| async move {
        let (scope, me, header, mut params, cursor) = state?;
        if let Some(c) = &cursor {
            params.insert("cursor".into(), c.clone());
        }
        let page = async {
            let tx = scope.begin().await?;
            let result = export_page(&tx, &me, &header, &params).await;
            atrium_services::finish(tx, result).await
        }
        .await;
        match page {
            Ok((bytes, next)) => {
                let state = next.clone().map(|n| (scope, me, header, params, Some(n)));
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(bytes)),
                    state,
                ))
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "contact export stopped");
                Some((Err(std::io::Error::other("export failed")), None))
            }
        }
    });
    let body =
        futures::stream::once(async move { Ok(axum::body::Bytes::from(first)) }).chain(pages);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"contacts.csv\"",
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// `{"created", "updated", "failed", "errors": [{"row", "field", "message"}]}`
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON for the OpenAPI document
pub struct ImportReportBody {
    created: u64,
    updated: u64,
    failed: u64,
    /// Every row error; `errors` lists the first 1,000.
    error_count: u64,
    /// `{"row", "field", "message"}`; `row` is the line in the file.
    #[schema(value_type = Vec<Object>)]
    errors: Vec<Value>,
}

/// Import contacts from CSV (`Content-Type: text/csv`, up to 20 MiB and
/// 100,000 data rows; a larger file is 413 before any row is written).
/// Columns: contact fields, `company` (matched or created by name),
/// `cf.<key>`; `id` and `company_id` are ignored. A contact whose email
/// exists is updated. Failed rows are reported and change nothing: the
/// report lists the first 1,000 row errors and counts them all in
/// `error_count`. `dry_run=true` checks without writing. Rows are committed
/// in batches of 250: an import that breaks off keeps the batches before
/// it, and running the file again updates them by email.
#[utoipa::path(post, path = "/api/v1/contacts/import", tag = "contacts", security(("session" = [])),
    params(("dry_run" = Option<bool>, Query)),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReportBody), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn import_contacts(
    authed: Authed,
    query: Query,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<axum::Json<atrium_services::contacts_csv::ImportReport>> {
    use atrium_services::contacts_csv;
    // Signed in and allowed, before the file is read; the transaction
    // that proved it ends here, so no connection waits on a slow upload.
    let Authed { tx, me, scope } = authed;
    let allowed = async {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !content_type.starts_with("text/csv") {
            return Err(ApiError::bad_request(
                "the body must be CSV (Content-Type: text/csv)",
            ));
        }
        me.require(atrium_domain::Action::ContactsImport)?;
        query.bool("dry_run")
    }
    .await;
    let dry_run = atrium_services::finish(tx, Ok(()))
        .await
        .map_err(ApiError::from)
        .and(allowed)?;
    let limit = crate::middleware::IMPORT_BODY_LIMIT;
    let Some(mut file) = crate::middleware::spool_to_file(body, limit).await? else {
        return Err(ApiError::payload_too_large("20 MiB"));
    };
    contacts_csv::check_row_count(&mut file).await?;
    tokio::io::AsyncSeekExt::rewind(&mut file)
        .await
        .map_err(anyhow::Error::from)?;
    let tx = scope.begin().await?;
    let report = contacts_csv::import(&scope, tx, &me, file, dry_run).await?;
    Ok(axum::Json(report))
}
