//! Importing contacts from the browser, as a job: the uploaded file is
//! checked first in the background (a dry run: what would be created,
//! updated and refused, with the reasons), then imported when the person
//! says so, also in the background. Its page shows how far it has got
//! and refreshes itself until it is done (a plain reload, no script), and
//! the refused rows download as a CSV file that imports again once fixed.
//! Export is the list's "Export" link.
//!
//! A job lives in the server that started it, next to its file in the
//! system's temporary directory, for an hour at most.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use atrium_services::contacts_csv::{
    self, ImportReport, ImportWatcher, RefusedRows, RowError, StringRecord,
};
use atrium_services::{CurrentUser, Scope};

use super::forms::csrf_field;
use super::page::{Viewer, layout, respond};
use super::session::{SignedIn, check_csrf, new_form_token};
use super::{PageResult, WebError, see_other};
use crate::AppState;
use crate::error::ApiError;
use crate::middleware::IMPORT_BODY_LIMIT;

/// How long a job and its files are kept.
const KEPT: Duration = Duration::from_secs(3600);
/// Refused rows a job's page lists; the download has them all.
const SHOWN_REFUSALS: usize = 20;

/// The imports this server is running or has run in the last hour, by
/// their random token.
#[derive(Default)]
pub(crate) struct ImportJobs(Mutex<HashMap<String, Arc<Mutex<Job>>>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Checking,
    Checked,
    Importing,
    Done,
    Failed,
}

/// A job as its page shows it.
#[derive(Debug, Clone)]
struct Job {
    tenant_id: i32,
    user_id: i32,
    started: Instant,
    phase: Phase,
    /// Why it failed, as a person reads it.
    failure: Option<String>,
    bytes_total: u64,
    bytes_read: u64,
    created: u64,
    updated: u64,
    failed: u64,
    refusals: Vec<RowError>,
    /// The check's figures, kept while the import runs and after.
    checked: Option<(u64, u64, u64)>,
}

impl ImportJobs {
    fn start(&self, token: &str, job: Job) -> Arc<Mutex<Job>> {
        let job = Arc::new(Mutex::new(job));
        let mut jobs = self.0.lock().expect("import jobs");
        jobs.retain(|_, j| {
            j.lock()
                .map(|j| j.started.elapsed() < KEPT)
                .unwrap_or(false)
        });
        jobs.insert(token.to_owned(), job.clone());
        job
    }

    /// The job, if it is this person's in this organisation.
    fn find(&self, token: &str, me: &CurrentUser, tenant_id: i32) -> Option<Arc<Mutex<Job>>> {
        let jobs = self.0.lock().expect("import jobs");
        let job = jobs.get(token)?;
        let ours = {
            let j = job.lock().expect("an import job");
            j.tenant_id == tenant_id && j.user_id == me.id()
        };
        ours.then(|| job.clone())
    }
}

/// Where a job's files are, by tenant and token: the upload, and the
/// refused rows.
fn job_files(tenant_id: i32, token: &str) -> Option<(PathBuf, PathBuf)> {
    let valid = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let dir = std::env::temp_dir().join("atrium-imports");
    valid.then(|| {
        (
            dir.join(format!("{tenant_id}-{token}.csv")),
            dir.join(format!("{tenant_id}-{token}.refused.csv")),
        )
    })
}

/// Removes files older than [`KEPT`], so the directory holds at most the
/// last hour's imports.
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
            .is_some_and(|age| age > KEPT);
        if stale {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

fn page_of(name: &str, csrf: &str, body: Markup) -> Response {
    let viewer = Viewer { name, csrf };
    respond(
        StatusCode::OK,
        layout("Import contacts", "/contacts", Some(&viewer), body),
    )
}

fn upload_form(csrf: &str) -> Markup {
    html! {
        p { "A CSV file with a header row: " code { "first_name, last_name, email, phone, company" } " and " code { "cf.<key>" } " for custom fields (an export imports back as it is). A contact whose email exists is updated; a company is matched by name or created. Files up to 20 MiB." }
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

pub(crate) async fn form(signed_in: Result<SignedIn, WebError>) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let name = authed
        .run(async |_tx, me| -> Result<_, ApiError> {
            me.require(atrium_domain::Action::ContactsImport)?;
            Ok(super::page::person(&me.user))
        })
        .await?;
    Ok(page_of(&name, &csrf, upload_form(&csrf)))
}

/// Keeps the uploaded file and starts checking it. The person is signed
/// in and allowed before a byte of the file is read.
pub(crate) async fn check(
    State(state): State<AppState>,
    signed_in: Result<SignedIn, WebError>,
    mut multipart: Multipart,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let ((), me, scope) = authed
        .run_and_keep(async |_tx, me| me.require(atrium_domain::Action::ContactsImport))
        .await?;
    let unreadable = || WebError::from(ApiError::bad_request("the upload could not be read"));
    let token = new_form_token();
    let (path, _) = job_files(scope.tenant.id, &token).expect("tokens are URL-safe");
    let dir = path.parent().expect("a directory");
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(anyhow::Error::from)?;
    forget_stale_files(dir).await;
    let mut given_csrf = String::new();
    let mut written = 0usize;
    let mut file = tokio::fs::File::create_new(&path)
        .await
        .map_err(anyhow::Error::from)?;
    let saved = async {
        while let Some(mut field) = multipart.next_field().await.map_err(|_| unreadable())? {
            match field.name() {
                Some("csrf") => given_csrf = field.text().await.map_err(|_| unreadable())?,
                Some("file") => {
                    check_csrf(&csrf, &given_csrf)?;
                    while let Some(chunk) = field.chunk().await.map_err(|_| unreadable())? {
                        written += chunk.len();
                        if written > IMPORT_BODY_LIMIT {
                            return Err(ApiError::payload_too_large("20 MiB").into());
                        }
                        file.write_all(&chunk).await.map_err(anyhow::Error::from)?;
                    }
                }
                _ => {}
            }
        }
        check_csrf(&csrf, &given_csrf)?;
        if written == 0 {
            return Err(WebError::from(ApiError::bad_request("the file is empty")));
        }
        file.flush().await.map_err(anyhow::Error::from)?;
        Ok(())
    }
    .await;
    if let Err(e) = saved {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e);
    }
    let job = state.imports.start(
        &token,
        Job {
            tenant_id: scope.tenant.id,
            user_id: me.id(),
            started: Instant::now(),
            phase: Phase::Checking,
            failure: None,
            bytes_total: written as u64,
            bytes_read: 0,
            created: 0,
            updated: 0,
            failed: 0,
            refusals: Vec::new(),
            checked: None,
        },
    );
    tokio::spawn(run_job(scope, me, token.clone(), job, true));
    Ok(see_other(&format!("/contacts/import/{token}")))
}

/// Reports an import's progress into its job and writes its refused rows.
struct JobWatcher {
    job: Arc<Mutex<Job>>,
    refused: Option<RefusedRows<std::io::BufWriter<std::fs::File>>>,
}

impl ImportWatcher for JobWatcher {
    fn progress(&mut self, report: &ImportReport, bytes_read: u64) {
        let mut job = self.job.lock().expect("an import job");
        job.bytes_read = bytes_read.min(job.bytes_total);
        job.created = report.created;
        job.updated = report.updated;
        job.failed = report.failed;
    }

    fn refused(&mut self, line: u64, cells: Option<&StringRecord>, problems: &[RowError]) {
        {
            let mut job = self.job.lock().expect("an import job");
            for problem in problems {
                if job.refusals.len() < SHOWN_REFUSALS {
                    job.refusals.push(RowError {
                        row: problem.row,
                        field: problem.field.clone(),
                        message: problem.message.clone(),
                    });
                }
            }
        }
        // The download is a convenience: a write that fails leaves it short,
        // never the import.
        if let Some(out) = &mut self.refused
            && out.write(line, cells, problems).is_err()
        {
            self.refused = None;
        }
    }
}

/// The file's header row, for the refused rows' file.
async fn header_of(path: &std::path::Path) -> Vec<String> {
    match tokio::fs::File::open(path).await {
        Ok(file) => contacts_csv::header_row(file).await,
        Err(_) => Vec::new(),
    }
}

/// Checks (`dry_run`) or imports the job's file, in the background.
async fn run_job(
    scope: Scope,
    me: CurrentUser,
    token: String,
    job: Arc<Mutex<Job>>,
    dry_run: bool,
) {
    let (path, refused_path) = job_files(scope.tenant.id, &token).expect("a valid token");
    let header = header_of(&path).await;
    let refused = std::fs::File::create(&refused_path)
        .ok()
        .and_then(|f| RefusedRows::new(std::io::BufWriter::new(f), &header).ok());
    let mut watcher = JobWatcher {
        job: job.clone(),
        refused,
    };
    let outcome = async {
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(anyhow::Error::from)?;
        let tx = scope.begin().await?;
        contacts_csv::import(&scope, tx, &me, &mut file, dry_run, &mut watcher).await
    }
    .await;
    if let Some(refused) = watcher.refused.take() {
        let _ = refused.finish();
    }
    if !dry_run {
        let _ = tokio::fs::remove_file(&path).await;
    }
    let mut job = job.lock().expect("an import job");
    match outcome {
        Ok(report) => {
            job.bytes_read = job.bytes_total;
            job.created = report.created;
            job.updated = report.updated;
            job.failed = report.failed;
            job.phase = if dry_run { Phase::Checked } else { Phase::Done };
            if dry_run {
                job.checked = Some((report.created, report.updated, report.failed));
            }
        }
        Err(e) => {
            let problem = ApiError::from(e);
            tracing::warn!(status = %problem.status(), "a browser import failed: {}", problem.detail());
            job.phase = Phase::Failed;
            job.failure = Some(problem.detail().to_owned());
        }
    }
}

/// The job's page: progress while it runs (refreshing itself), then what
/// it did, with the refused rows.
pub(crate) async fn show(
    State(state): State<AppState>,
    signed_in: Result<SignedIn, WebError>,
    Path(token): Path<String>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let (name, me, scope) = authed
        .run_and_keep(async |_tx, me| -> Result<_, ApiError> {
            me.require(atrium_domain::Action::ContactsImport)?;
            Ok(super::page::person(&me.user))
        })
        .await?;
    let Some(job) = state.imports.find(&token, &me, scope.tenant.id) else {
        let body = html! {
            p.alert role="alert" { "This import is no longer here (they are kept for an hour). Choose the file again." }
            (upload_form(&csrf))
        };
        return Ok(page_of(&name, &csrf, body));
    };
    let job = job.lock().expect("an import job").clone();
    let running = matches!(job.phase, Phase::Checking | Phase::Importing);
    let percent = (job.bytes_read * 100)
        .checked_div(job.bytes_total)
        .unwrap_or(0);
    // "2 contacts would be created", "2 contacts created so far".
    let figures = |verb: &str, tail: &str, (created, updated, failed): (u64, u64, u64)| {
        html! {
            ul.plain.card {
                li { (count(created, "contact", "contacts")) " " (verb) "created" (tail) }
                li { (count(updated, "contact", "contacts")) " " (verb) "updated" (tail) }
                li { (count(failed, "row", "rows")) " " (verb) "refused" (tail) }
            }
        }
    };
    let so_far = (job.created, job.updated, job.failed);
    let refusals = html! {
        @if job.failed > 0 {
            h2 { "Refused rows" }
            @if job.failed as usize > job.refusals.len() {
                p.muted { "The first " (job.refusals.len()) " problems." }
            }
            table {
                thead { tr { th scope="col" { "Line" } th scope="col" { "Field" } th scope="col" { "Why" } } }
                tbody { @for e in &job.refusals {
                    tr { td { (e.row) } td { (e.field.as_deref().unwrap_or("")) } td { (e.message) } }
                } }
            }
            p { a href=(format!("/contacts/import/{token}/refused.csv")) download { "Download the refused rows" } " (CSV: fix them and import the file again)" }
        }
    };
    let body = html! {
        @match job.phase {
            Phase::Checking | Phase::Importing => {
                @let doing = if job.phase == Phase::Checking { "Checking the file" } else { "Importing" };
                p role="status" { (doing) "… " (percent) "%" }
                progress max="100" value=(percent) aria-label=(doing) { (percent) "%" }
                (figures("", " so far", so_far))
                p.muted { "This page refreshes by itself. " a href=(format!("/contacts/import/{token}")) { "Refresh" } }
            }
            Phase::Checked => {
                h2 { "What the file would do" }
                (figures("would be ", "", so_far))
                (refusals)
                @if job.created + job.updated > 0 {
                    form method="post" action=(format!("/contacts/import/{token}/run")) {
                        (csrf_field(&csrf))
                        button type="submit" { "Import" }
                    }
                }
                p { a href="/contacts/import" { "Choose another file" } }
            }
            Phase::Done => {
                p.notice role="status" { "The import is done." }
                (figures("", "", so_far))
                (refusals)
                p { a href="/contacts" { "See the contacts" } }
            }
            Phase::Failed => {
                p.alert role="alert" { "The import stopped: " (job.failure.as_deref().unwrap_or("an error")) }
                @if job.checked.is_some() && (job.created + job.updated) > 0 {
                    p { "The rows before the problem were imported; importing the same file again updates them by email and goes on." }
                }
                (upload_form(&csrf))
            }
        }
    };
    let mut response = page_of(&name, &csrf, body);
    if running {
        response
            .headers_mut()
            .insert(header::REFRESH, HeaderValue::from_static("1"));
    }
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct RunForm {
    #[serde(default)]
    csrf: String,
}

/// Imports a checked file, in the background.
pub(crate) async fn run(
    State(state): State<AppState>,
    signed_in: Result<SignedIn, WebError>,
    Path(token): Path<String>,
    form: Result<Form<RunForm>, FormRejection>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let Form(form) = form.map_err(|_| ApiError::bad_request("the form could not be read"))?;
    check_csrf(&csrf, &form.csrf)?;
    let ((), me, scope) = authed
        .run_and_keep(async |_tx, me| me.require(atrium_domain::Action::ContactsImport))
        .await?;
    let job = state
        .imports
        .find(&token, &me, scope.tenant.id)
        .ok_or_else(|| WebError::from(ApiError::not_found("no such import")))?;
    {
        let mut job = job.lock().expect("an import job");
        // Pressed twice, or after it ran: the job's page says where it is.
        if job.phase != Phase::Checked {
            return Ok(see_other(&format!("/contacts/import/{token}")));
        }
        job.phase = Phase::Importing;
        job.bytes_read = 0;
        (job.created, job.updated, job.failed) = (0, 0, 0);
        job.refusals.clear();
    }
    tokio::spawn(run_job(scope, me, token.clone(), job, false));
    Ok(see_other(&format!("/contacts/import/{token}")))
}

/// The refused rows of the job's last run, as CSV.
pub(crate) async fn refused_rows(
    State(state): State<AppState>,
    signed_in: Result<SignedIn, WebError>,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let SignedIn { authed, .. } = signed_in?;
    let ((), me, scope) = authed
        .run_and_keep(async |_tx, me| me.require(atrium_domain::Action::ContactsImport))
        .await?;
    let missing = || WebError::from(ApiError::not_found("no such import"));
    let job = state
        .imports
        .find(&token, &me, scope.tenant.id)
        .ok_or_else(missing)?;
    if matches!(
        job.lock().expect("an import job").phase,
        Phase::Checking | Phase::Importing
    ) {
        return Ok(see_other(&format!("/contacts/import/{token}")));
    }
    let (_, refused) = job_files(scope.tenant.id, &token).ok_or_else(missing)?;
    let body = tokio::fs::read(&refused).await.map_err(|_| missing())?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"refused-rows.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}
