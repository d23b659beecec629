//! Importing contacts from the browser: the file is checked first (a dry
//! run: what would be created, updated and refused, with the reasons),
//! kept on the server's disk meanwhile, and imported when the person
//! says so. Export is the list's "Export" link.

use std::path::PathBuf;

use axum::Form;
use axum::extract::Multipart;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use atrium_services::contacts_csv::{self, ImportReport};

use super::forms::csrf_field;
use super::page::{Viewer, layout, respond};
use super::session::{SignedIn, check_csrf, new_form_token};
use super::{PageResult, WebError};
use crate::error::ApiError;
use crate::middleware::IMPORT_BODY_LIMIT;

/// Where checked files wait for their import, by tenant and a random name.
fn waiting_file(tenant_id: i32, token: &str) -> Option<PathBuf> {
    let valid = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| {
        std::env::temp_dir()
            .join("atrium-imports")
            .join(format!("{tenant_id}-{token}.csv"))
    })
}

fn page_of(name: &str, csrf: &str, body: Markup) -> axum::response::Response {
    let viewer = Viewer { name, csrf };
    respond(
        StatusCode::OK,
        layout("Import contacts", "/contacts", Some(&viewer), body),
    )
}

fn upload_form(csrf: &str) -> Markup {
    html! {
        p { "A CSV file with a header row: " code { "first_name, last_name, email, phone, company" } " and " code { "cf.<key>" } " for custom fields (an export imports back as it is). A contact whose email exists is updated; a company is matched by name or created." }
        form.stack.card method="post" action="/contacts/import/check" enctype="multipart/form-data" {
            (csrf_field(csrf))
            div { label for="file" { "CSV file" } input id="file" name="file" type="file" accept=".csv,text/csv" required; }
            div { button type="submit" { "Check file" } }
        }
    }
}

/// "1 contact", "2 contacts".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn report(report: &ImportReport, checked: bool) -> Markup {
    let verb = if checked { "would be" } else { "were" };
    html! {
        ul.plain.card {
            li { (count(report.created, "contact", "contacts")) " " (verb) " created" }
            li { (count(report.updated, "contact", "contacts")) " " (verb) " updated" }
            li { (count(report.failed, "row", "rows")) " " (verb) " refused" }
        }
        @if !report.errors.is_empty() {
            h2 { "Refused rows" }
            @if report.error_count > report.errors.len() as u64 {
                p.muted { "The first " (report.errors.len()) " of " (report.error_count) " problems." }
            }
            table {
                thead { tr { th { "Line" } th { "Field" } th { "Why" } } }
                tbody { @for e in &report.errors {
                    tr { td { (e.row) } td { (e.field.as_deref().unwrap_or("")) } td { (e.message) } }
                } }
            }
        }
    }
}

pub(crate) async fn form(signed_in: Result<SignedIn, WebError>) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let name = authed
        .run(async |_tx, me| -> Result<_, ApiError> {
            me.require(atrium_domain::Action::ContactsImport)?;
            Ok(format!("{} {}", me.user.first_name, me.user.last_name))
        })
        .await?;
    Ok(page_of(&name, &csrf, upload_form(&csrf)))
}

/// How long a checked file waits for its "Import".
const WAITING: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes checked files nobody imported within [`WAITING`], so the
/// directory holds at most the last hour's uploads.
async fn forget_stale_files(dir: &std::path::Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let stale = entry
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > WAITING);
        if stale {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

/// Keeps the uploaded file and runs the import as a dry run. The person
/// is signed in and allowed before a byte of the file is read.
pub(crate) async fn check(
    signed_in: Result<SignedIn, WebError>,
    mut multipart: Multipart,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let (name, me, scope) = authed
        .run_and_keep(async |_tx, me| -> Result<_, ApiError> {
            me.require(atrium_domain::Action::ContactsImport)?;
            Ok(format!("{} {}", me.user.first_name, me.user.last_name))
        })
        .await?;
    let unreadable = || WebError::from(ApiError::bad_request("the upload could not be read"));
    let token = new_form_token();
    let path = waiting_file(scope.tenant.id, &token).expect("tokens are URL-safe");
    let dir = path.parent().expect("a directory");
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(anyhow::Error::from)?;
    forget_stale_files(dir).await;
    let mut given_csrf = String::new();
    let mut written = 0usize;
    // Read back for the check, so open for both.
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(anyhow::Error::from)?;
    while let Some(mut field) = multipart.next_field().await.map_err(|_| unreadable())? {
        match field.name() {
            Some("csrf") => given_csrf = field.text().await.map_err(|_| unreadable())?,
            Some("file") => {
                check_csrf(&csrf, &given_csrf)?;
                while let Some(chunk) = field.chunk().await.map_err(|_| unreadable())? {
                    written += chunk.len();
                    if written > IMPORT_BODY_LIMIT {
                        let _ = tokio::fs::remove_file(&path).await;
                        return Err(ApiError::payload_too_large("20 MiB").into());
                    }
                    file.write_all(&chunk).await.map_err(anyhow::Error::from)?;
                }
            }
            _ => {}
        }
    }
    check_csrf(&csrf, &given_csrf)?;
    file.flush().await.map_err(anyhow::Error::from)?;
    file.rewind().await.map_err(anyhow::Error::from)?;
    let outcome = async {
        contacts_csv::check_row_count(&mut file).await?;
        file.rewind().await.map_err(anyhow::Error::from)?;
        let tx = scope.begin().await?;
        contacts_csv::import(&scope, tx, &me, &mut file, true).await
    }
    .await;
    let checked = match outcome {
        Ok(checked) => checked,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e.into());
        }
    };
    let body = html! {
        h2 { "What the file would do" }
        (report(&checked, true))
        @if checked.created + checked.updated > 0 {
            form method="post" action="/contacts/import/run" {
                (csrf_field(&csrf))
                input type="hidden" name="file" value=(token);
                button type="submit" { "Import" }
            }
        }
        p { a href="/contacts/import" { "Choose another file" } }
    };
    Ok(page_of(&name, &csrf, body))
}

#[derive(Deserialize)]
pub(crate) struct RunForm {
    #[serde(default)]
    file: String,
    #[serde(default)]
    csrf: String,
}

/// Imports the checked file, then forgets it.
pub(crate) async fn run(
    signed_in: Result<SignedIn, WebError>,
    form: Result<Form<RunForm>, FormRejection>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let Form(form) = form.map_err(|_| ApiError::bad_request("the form could not be read"))?;
    check_csrf(&csrf, &form.csrf)?;
    let (name, me, scope) = authed
        .run_and_keep(async |_tx, me| -> Result<_, ApiError> {
            me.require(atrium_domain::Action::ContactsImport)?;
            Ok(format!("{} {}", me.user.first_name, me.user.last_name))
        })
        .await?;
    let path = waiting_file(scope.tenant.id, &form.file)
        .ok_or_else(|| WebError::from(ApiError::not_found("no such file")))?;
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        let body = html! {
            p.alert role="alert" { "That file was imported already or is no longer here. Choose it again." }
            (upload_form(&csrf))
        };
        return Ok(page_of(&name, &csrf, body));
    };
    let tx = scope.begin().await?;
    let done = contacts_csv::import(&scope, tx, &me, &mut file, false).await;
    let _ = tokio::fs::remove_file(&path).await;
    let done = done?;
    let body = html! {
        p.notice role="status" { "The import is done." }
        (report(&done, false))
        p { a href="/contacts" { "See the contacts" } }
    };
    Ok(page_of(&name, &csrf, body))
}
