//! Contacts as CSV: export streamed, import spooled and reported.

use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use futures::StreamExt;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Authed;
use crate::list::Query;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_contacts))
        .routes(routes!(import_contacts))
}

/// All (filtered) contacts as CSV, streamed a thousand rows at a time:
/// `id, first_name, last_name, email, phone, company_id, company`, then
/// `cf.<key>` for each defined custom field. The file imports back
/// unchanged. Takes the list's filters.
#[utoipa::path(get, path = "/api/v1/contacts/export", tag = "contacts", security(("session" = [])),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = Problem)))]
async fn export_contacts(authed: Authed, query: Query) -> ApiResult<axum::response::Response> {
    export(authed, query.all().clone()).await
}

/// The export's stream, for the API and for the web application's
/// "Export" link alike.
pub(crate) async fn export(
    authed: Authed,
    mut params: std::collections::HashMap<String, String>,
) -> ApiResult<axum::response::Response> {
    use atrium_services::contacts_csv::{export_header, export_page};
    let (header, me, scope) = authed
        .run_and_keep(async |tx, me| export_header(tx, me).await)
        .await?;
    let mut first = csv::Writer::from_writer(Vec::new());
    first
        .write_record(&header)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let first = first.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    params.remove("cursor");
    params.remove("limit");
    let state = Some((scope, me, header, params, None::<String>));
    let pages = futures::stream::unfold(state, |state| async move {
        let (scope, me, header, mut params, cursor) = state?;
        if let Some(c) = &cursor {
            params.insert("cursor".into(), c.clone());
        }
        let page = scope
            .run(async |tx| export_page(tx, &me, &header, &params).await)
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
/// `cf.<key>`; `id`, `company_id` and `import_problem` are ignored. A contact whose email
/// exists is updated. Failed rows are reported and change nothing: the
/// report lists the first 1,000 row errors and counts them all in
/// `error_count`. `dry_run=true` checks without writing. Rows are committed
/// in batches of 1,000: an import that breaks off keeps the batches before
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
    let (dry_run, me, scope) = authed
        .run_and_keep(async |_tx, me| -> ApiResult<bool> {
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
        })
        .await?;
    let limit = crate::middleware::IMPORT_BODY_LIMIT;
    let Some(mut file) = crate::middleware::spool_to_file(body, limit).await? else {
        return Err(ApiError::payload_too_large("20 MiB"));
    };
    contacts_csv::check_row_count(&mut file).await?;
    tokio::io::AsyncSeekExt::rewind(&mut file)
        .await
        .map_err(anyhow::Error::from)?;
    let tx = scope.begin().await?;
    let report = contacts_csv::import(&scope, tx, &me, file, dry_run, &mut ()).await?;
    Ok(axum::Json(report))
}
