//! Contacts in and out as CSV: the export imports back unchanged, into
//! this tenant or any other.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use atrium_domain::custom_fields::CustomEntity;
use atrium_domain::{Action, NUL_MESSAGE};
use atrium_store::TenantTx;
use atrium_store::custom_fields as definitions;
use atrium_store::records as store;

use crate::records::{self, COMPANY, CONTACT, ListRequest};
use crate::{CurrentUser, Scope, ServiceError};

pub use csv_async::StringRecord;

/// Contact fields a CSV may carry, besides `company` and `cf.<key>`.
const FIELDS: &[&str] = &["first_name", "last_name", "email", "phone"];
/// Columns of an export that an import ignores: ids differ between tenants;
/// the `company` name links the company.
/// `import_problem` is the column a file of refused rows adds: fixed, the
/// file imports again as it is.
const IGNORED: &[&str] = &["id", "company_id", REFUSED_PROBLEM_COLUMN];

/// The column a file of refused rows ([`RefusedRows`]) adds to the file's
/// own: why the row was refused.
pub const REFUSED_PROBLEM_COLUMN: &str = "import_problem";

/// Data rows one import may hold: a larger file is refused before any row
/// is written (split it). 100,000 contacts of a typical export are about
/// 10 MiB, half the body limit.
pub const MAX_IMPORT_ROWS: u64 = 100_000;

/// Row errors an import report lists; `error_count` counts them all. A
/// file of millions of bad rows must not become gigabytes of answer.
pub const MAX_REPORTED_ERRORS: usize = 1_000;

#[derive(Debug, Default, serde::Serialize)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub failed: u64,
    /// Every row error found; `errors` holds the first
    /// [`MAX_REPORTED_ERRORS`] of them.
    pub error_count: u64,
    pub errors: Vec<RowError>,
}

impl ImportReport {
    fn fail_row(&mut self, problems: Vec<RowError>) {
        self.failed += 1;
        for problem in problems {
            self.error_count += 1;
            if self.errors.len() < MAX_REPORTED_ERRORS {
                self.errors.push(problem);
            }
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RowError {
    /// The line in the file; the header is line 1.
    pub row: u64,
    pub field: Option<String>,
    pub message: String,
}

/// Told what an import does while it runs: the browser's import job
/// shows its progress and offers the refused rows as a file.
pub trait ImportWatcher: Send {
    /// After each batch of rows (committed, or rolled back in a dry run)
    /// and at the end: the report so far and the bytes of the file read.
    fn progress(&mut self, _report: &ImportReport, _bytes_read: u64) {}
    /// A refused row: its line, its cells when they could be read, why.
    fn refused(
        &mut self,
        _line: u64,
        _cells: Option<&csv_async::StringRecord>,
        _problems: &[RowError],
    ) {
    }
}

/// Nobody watching (the API's import answers with the report).
impl ImportWatcher for () {}

/// The refused rows of an import as a CSV file a person can fix: the
/// file's own columns with the row as it was, then why it was refused.
/// The importer ignores that last column, so the fixed file imports again.
pub struct RefusedRows<W: std::io::Write> {
    out: csv::Writer<W>,
    width: usize,
}

impl<W: std::io::Write> RefusedRows<W> {
    pub fn new(out: W, header: &[String]) -> std::io::Result<Self> {
        let mut out = csv::Writer::from_writer(out);
        let mut row: Vec<&str> = header.iter().map(String::as_str).collect();
        row.push(REFUSED_PROBLEM_COLUMN);
        out.write_record(&row).map_err(std::io::Error::other)?;
        Ok(Self {
            out,
            width: header.len(),
        })
    }

    pub fn write(
        &mut self,
        line: u64,
        cells: Option<&csv_async::StringRecord>,
        problems: &[RowError],
    ) -> std::io::Result<()> {
        let mut row: Vec<String> = (0..self.width)
            .map(|i| cells.and_then(|c| c.get(i)).unwrap_or_default().to_owned())
            .collect();
        let why: Vec<String> = problems
            .iter()
            .map(|p| match &p.field {
                Some(field) => format!("{field}: {}", p.message),
                None => p.message.clone(),
            })
            .collect();
        row.push(neutralised(format!("line {line}: {}", why.join("; "))));
        self.out.write_record(&row).map_err(std::io::Error::other)
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A CSV file's header row (empty when it cannot be read).
pub async fn header_row<R>(csv_text: R) -> Vec<String>
where
    R: tokio::io::AsyncRead + Unpin + Send,
{
    let mut reader = csv_async::AsyncReaderBuilder::new().create_reader(csv_text);
    match reader.headers().await {
        Ok(header) => header.iter().map(|h| h.trim().to_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

enum Column {
    Field(&'static str),
    Company,
    Custom(String),
    Ignored,
}

/// Refuses a file of more than [`MAX_IMPORT_ROWS`] data rows, reading it
/// once without keeping anything: run before [`import`] writes a row.
pub async fn check_row_count<R>(csv_text: R) -> Result<u64, ServiceError>
where
    R: tokio::io::AsyncRead + Unpin + Send,
{
    let mut reader = csv_async::AsyncReaderBuilder::new()
        .flexible(true)
        .create_reader(csv_text);
    let mut record = csv_async::ByteRecord::new();
    let mut rows = 0;
    loop {
        match reader.read_byte_record(&mut record).await {
            Ok(false) => return Ok(rows),
            Ok(true) => rows += 1,
            Err(e) if matches!(e.kind(), csv_async::ErrorKind::Io(_)) => {
                return Err(anyhow::anyhow!("reading the CSV body: {e}").into());
            }
            Err(_) => rows += 1, // a malformed row is still a row
        }
        if rows > MAX_IMPORT_ROWS {
            return Err(ServiceError::TooLarge(format!(
                "the file holds more than {MAX_IMPORT_ROWS} rows; split it into smaller files"
            )));
        }
    }
}

/// Rows per transaction. A whole file in one transaction would hold back
/// vacuum for the entire database while it runs, overflow the snapshot's
/// subtransaction cache for every other session, and update the tenant's
/// counters row once per row in one transaction (each update walking the
/// chain of its earlier versions). Batches bound all three. A thousand
/// rows rather than fewer: a batch's fixed cost (its lookups, commit and
/// the next transaction's setup) was an eighth of an import's time at 250
/// (`atrium bench import`: 0.44× `COPY`'s rows per second at 250, 0.50×
/// at 1,000). The counters row is updated once per statement, so only
/// rows that go one by one (updates do not change the count) grow its
/// chain, to at most a batch.
const BATCH_ROWS: u64 = 1000;

/// Imports contacts from CSV, read a batch of [`BATCH_ROWS`] rows at a
/// time, each batch in a transaction of its own: an import that breaks off
/// keeps the batches before it (running the file again updates those
/// contacts by email). A batch's new contacts are checked row by row and
/// written in a few statements; rows that update a contact, and every row
/// of a batch whose bulk write fails, go one at a time, each in a
/// savepoint: a failed row leaves nothing behind and does not stop the
/// others. Either way a row is checked, linked, counted and audited as
/// the records service does it for one request. With `dry_run` every batch
/// is rolled back instead.
pub async fn import<R>(
    scope: &Scope,
    tx: TenantTx,
    me: &CurrentUser,
    csv_text: R,
    dry_run: bool,
    watcher: &mut dyn ImportWatcher,
) -> Result<ImportReport, ServiceError>
where
    R: tokio::io::AsyncRead + Unpin + Send,
{
    let mut batch = Batch {
        tx: Some(tx),
        dry_run,
    };
    let result = import_rows(scope, &mut batch, me, csv_text, watcher).await;
    // No transaction when the next batch's could not be opened: the error
    // says why, and the batches before it are committed.
    let Some(tx) = batch.tx else {
        return result;
    };
    if dry_run || result.is_err() {
        let _ = tx.rollback().await;
        return result;
    }
    tx.commit().await?;
    if let Ok(report) = &result
        && report.created + report.updated >= TIDY_AFTER_ROWS
    {
        tidy_after_import(scope);
    }
    result
}

/// Rows written by one import after which its tables are vacuumed at
/// once rather than at the next scheduled maintenance: a batch's worth.
const TIDY_AFTER_ROWS: u64 = BATCH_ROWS;

/// The tables an import writes, vacuumed in this order after a large one.
pub const TABLES_WRITTEN: [&str; 3] = ["contacts", "companies", "audit_events"];

/// Vacuums and analyzes the tables an import wrote, in the background, on
/// the tenant's cluster with the rights to change the schema
/// ([`atrium_store::fleet::maintain::vacuum_tables`] says why). Without a
/// placement (no fleet to ask) nothing runs: the scheduled maintenance
/// does it within the hour.
fn tidy_after_import(scope: &Scope) {
    let Some(placement) = &scope.placement else {
        return;
    };
    let Some(cluster) = placement.fleet.cluster(&scope.tenant.cluster) else {
        return;
    };
    let admin = cluster.admin.clone();
    let schema = scope.tenant.schema_name.clone();
    tokio::spawn(async move {
        if let Err(e) =
            atrium_store::fleet::maintain::vacuum_tables(&admin, &schema, &TABLES_WRITTEN).await
        {
            tracing::warn!(schema, error = %e, "vacuuming after an import failed");
        }
    });
}

/// The open transaction of an import.
struct Batch {
    /// None only between one batch's end and the next one's start.
    tx: Option<TenantTx>,
    dry_run: bool,
}

impl Batch {
    fn tx(&self) -> &TenantTx {
        self.tx.as_ref().expect("an import's batch is open")
    }

    /// Ends the transaction (committed, or rolled back in a dry run), then
    /// opens the next. In that order: a transaction opened first would
    /// wait for the tenant's lane, which the one still open holds.
    async fn next(&mut self, scope: &Scope) -> Result<(), ServiceError> {
        let done = self.tx.take().expect("an import's batch is open");
        if self.dry_run {
            done.rollback().await?;
        } else {
            done.commit().await?;
        }
        let next = scope.begin().await?;
        next.plan_for_current_sizes().await?;
        next.savepoint().await?;
        self.tx = Some(next);
        Ok(())
    }
}

/// What became of one row of the file.
enum Outcome {
    Imported(Imported),
    /// Refused, with the row's cells when they could be read.
    Refused(Option<csv_async::StringRecord>, Vec<RowError>),
}

async fn import_rows<R>(
    scope: &Scope,
    batch: &mut Batch,
    me: &CurrentUser,
    csv_text: R,
    watcher: &mut dyn ImportWatcher,
) -> Result<ImportReport, ServiceError>
where
    R: tokio::io::AsyncRead + Unpin + Send,
{
    me.require(Action::ContactsImport)?;
    batch.tx().plan_for_current_sizes().await?;
    batch.tx().savepoint().await?;
    let mut reader = csv_async::AsyncReaderBuilder::new()
        .flexible(false)
        .create_reader(csv_text);
    let headers = reader
        .headers()
        .await
        .map_err(|e| {
            atrium_domain::Invalid::new("body", format!("the CSV header row cannot be read: {e}"))
        })?
        .clone();
    let defined: Vec<String> = definitions::list(batch.tx(), Some(CustomEntity::Contact.as_str()))
        .await?
        .into_iter()
        .map(|d| d.key)
        .collect();
    let mut columns = Vec::new();
    for name in headers.iter() {
        let name = name.trim();
        columns.push(if let Some(field) = FIELDS.iter().find(|f| **f == name) {
            Column::Field(field)
        } else if name == "company" {
            Column::Company
        } else if IGNORED.contains(&name) {
            Column::Ignored
        } else if let Some(key) = name
            .strip_prefix("cf.")
            .filter(|k| defined.iter().any(|d| d == k))
        {
            Column::Custom(key.to_owned())
        } else {
            return Err(atrium_domain::Invalid::new(
                "body",
                format!("column '{name}' is not a contact field, company, or a defined cf.<key>"),
            )
            .into());
        });
    }
    let mut report = ImportReport::default();
    let mut companies: HashMap<String, i64> = HashMap::new();
    // A dry run rolls each batch back, so a later row with the email of an
    // earlier one finds nothing; these emails make it count as the update
    // the real import would make.
    let mut dry_run_emails: HashSet<String> = HashSet::new();
    // A batch of rows at a time: the file is never held whole.
    let mut rows: Vec<(u64, csv_async::StringRecord)> = Vec::new();
    let mut outcomes: Vec<(u64, Outcome)> = Vec::new();
    let mut record = csv_async::StringRecord::new();
    loop {
        let read = reader.read_record(&mut record).await;
        let more = !matches!(read, Ok(false));
        match read {
            Ok(false) => {}
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                // PostgreSQL cannot store U+0000 in text: the row fails,
                // naming the column, before anything of it is tried.
                match record.iter().position(|cell| cell.contains('\0')) {
                    Some(column) => outcomes.push((
                        line,
                        Outcome::Refused(
                            None,
                            vec![RowError {
                                row: line,
                                field: Some(
                                    headers.get(column).unwrap_or_default().trim().to_owned(),
                                ),
                                message: NUL_MESSAGE.to_owned(),
                            }],
                        ),
                    )),
                    None => rows.push((line, record.clone())),
                }
            }
            Err(e) if matches!(e.kind(), csv_async::ErrorKind::Io(_)) => {
                return Err(anyhow::anyhow!("reading the CSV body: {e}").into());
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                outcomes.push((
                    line,
                    Outcome::Refused(
                        None,
                        vec![RowError {
                            row: line,
                            field: None,
                            message: format!("the row cannot be read: {e}"),
                        }],
                    ),
                ));
            }
        }
        let batch_full = (rows.len() + outcomes.len()) as u64 >= BATCH_ROWS;
        if !batch_full && more {
            continue;
        }
        let tx = batch.tx();
        outcomes.extend(import_batch(tx, me, &columns, &rows, &mut companies).await?);
        outcomes.sort_by_key(|(line, _)| *line);
        for (line, outcome) in outcomes.drain(..) {
            match outcome {
                Outcome::Imported(Imported { created, email }) => {
                    let seen = batch.dry_run
                        && email.is_some_and(|e| !dry_run_emails.insert(e.to_lowercase()));
                    if created && !seen {
                        report.created += 1;
                    } else {
                        report.updated += 1;
                    }
                }
                Outcome::Refused(cells, problems) => {
                    watcher.refused(line, cells.as_ref(), &problems);
                    report.fail_row(problems);
                }
            }
        }
        rows.clear();
        if !more {
            break;
        }
        batch.next(scope).await?;
        if batch.dry_run {
            companies.clear();
        }
        watcher.progress(&report, reader.position().byte());
    }
    watcher.progress(&report, reader.position().byte());
    Ok(report)
}

/// Imports a batch of rows in the open transaction, whose savepoint is
/// set: in a few statements when it can ([`import_new_contacts`]), and row
/// by row, each in a savepoint of its own, for the rows it cannot and for
/// the whole batch when that path fails.
async fn import_batch(
    tx: &TenantTx,
    me: &CurrentUser,
    columns: &[Column],
    rows: &[(u64, csv_async::StringRecord)],
    companies: &mut HashMap<String, i64>,
) -> Result<Vec<(u64, Outcome)>, ServiceError> {
    let mut outcomes = Vec::with_capacity(rows.len());
    let one_by_one: Vec<usize> = match import_new_contacts(tx, me, columns, rows, companies).await?
    {
        Some((done, left)) => {
            tx.keep_and_savepoint().await?;
            for id in companies.values_mut() {
                *id = id.abs();
            }
            outcomes.extend(done);
            left
        }
        None => {
            tx.rollback_to_savepoint().await?;
            companies.retain(|_, id| *id > 0);
            (0..rows.len()).collect()
        }
    };
    for i in one_by_one {
        let (line, record) = &rows[i];
        match import_row(tx, me, columns, record, companies).await {
            Ok(imported) => {
                tx.keep_and_savepoint().await?;
                outcomes.push((*line, Outcome::Imported(imported)));
            }
            Err(problems) => {
                tx.rollback_to_savepoint().await?;
                // Companies made for this row were rolled back too.
                companies.retain(|_, id| *id > 0);
                let problems = row_errors(*line, problems);
                outcomes.push((*line, Outcome::Refused(Some(record.clone()), problems)));
            }
        }
    }
    Ok(outcomes)
}

/// The bulk path: the rows that make new contacts are checked as one
/// [`records::create`] checks a row, their companies found (or made) and
/// the contacts inserted and audited in a few statements for the whole
/// batch. A row that would update a contact, share its email with an
/// earlier row of the batch, or find its email ambiguous is left for the
/// row-by-row path (returned by index, to run after these), as is every
/// row when a statement here fails: `None`, and the caller rolls back to
/// the batch's savepoint. A row whose values are refused is refused here,
/// as the row-by-row path would refuse it.
#[allow(clippy::type_complexity)]
async fn import_new_contacts(
    tx: &TenantTx,
    me: &CurrentUser,
    columns: &[Column],
    rows: &[(u64, csv_async::StringRecord)],
    companies: &mut HashMap<String, i64>,
) -> Result<Option<(Vec<(u64, Outcome)>, Vec<usize>)>, ServiceError> {
    let bodies: Vec<RowBody> = rows
        .iter()
        .map(|(_, record)| RowBody::read(columns, record))
        .collect();
    let emails: Vec<&str> = bodies.iter().filter_map(|b| b.email()).collect();
    let found = match store::contacts_by_emails(tx, &emails).await {
        Ok(found) => found,
        Err(_) => return Ok(None),
    };
    // Each email as PostgreSQL compares them (lower-cased), and the ids it
    // finds: the same reading as the row path's lookup.
    let found: HashMap<String, (String, Vec<i32>)> = found
        .into_iter()
        .map(|(given, key, ids)| (given, (key, ids)))
        .collect();
    let mut seen_in_batch: HashSet<&str> = HashSet::new();
    let mut left = Vec::new();
    let mut done = Vec::new();
    let mut new_contacts: Vec<(usize, NewContact)> = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        if let Some(email) = body.email() {
            let Some((key, ids)) = found.get(email) else {
                return Ok(None);
            };
            if !ids.is_empty() || !seen_in_batch.insert(key.as_str()) {
                left.push(i);
                continue;
            }
        }
        let values = records::checked_new(tx, me, &CONTACT, body.without_company()).await;
        match values {
            Ok(values) => new_contacts.push((
                i,
                NewContact {
                    values,
                    company: body.company.clone(),
                },
            )),
            Err(e) => {
                let line = rows[i].0;
                let problems = row_errors(line, problems_of(e));
                done.push((line, Outcome::Refused(Some(rows[i].1.clone()), problems)));
            }
        }
    }
    if !find_companies(tx, &new_contacts, companies).await? {
        return Ok(None);
    }
    // What follows inserts, and the inserts' foreign key checks are primary
    // key lookups, planned once.
    tx.plan_generically().await?;
    if !link_companies(tx, me, &mut new_contacts, companies).await? {
        return Ok(None);
    }
    let values: Vec<atrium_domain::records::NewRecord> =
        new_contacts.iter().map(|(_, c)| c.values.clone()).collect();
    let created = records::create_many(tx, me, &values).await;
    if created.is_err() {
        return Ok(None);
    }
    tx.plan_for_current_sizes().await?;
    for (i, _) in &new_contacts {
        done.push((
            rows[*i].0,
            Outcome::Imported(Imported {
                created: true,
                email: bodies[*i].email().map(str::to_owned),
            }),
        ));
    }
    Ok(Some((done, left)))
}

/// A new contact of the bulk path and the company it names.
struct NewContact {
    values: atrium_domain::records::NewRecord,
    company: Option<String>,
}

/// Looks up by name the companies the new contacts name that this import
/// has not met yet. False when the lookup fails.
async fn find_companies(
    tx: &TenantTx,
    contacts: &[(usize, NewContact)],
    companies: &mut HashMap<String, i64>,
) -> Result<bool, ServiceError> {
    let unknown: Vec<&str> = contacts
        .iter()
        .filter_map(|(_, c)| c.company.as_deref())
        .filter(|name| !companies.contains_key(&name.to_lowercase()))
        .collect();
    if unknown.is_empty() {
        return Ok(true);
    }
    let Ok(found) = store::companies_by_names(tx, &unknown).await else {
        return Ok(false);
    };
    for (name, id) in found {
        if let Some(id) = id {
            companies.insert(name.to_lowercase(), i64::from(id));
        }
    }
    Ok(true)
}

/// Sets each new contact's company: one [`find_companies`] found, or one
/// made here. The companies still missing are made together, in the order
/// the batch first names them, each checked and audited as one made by
/// the row path. False when they cannot be made: the row path then says
/// why, row by row.
async fn link_companies(
    tx: &TenantTx,
    me: &CurrentUser,
    contacts: &mut [(usize, NewContact)],
    companies: &mut HashMap<String, i64>,
) -> Result<bool, ServiceError> {
    let mut missing: Vec<(String, &str)> = Vec::new();
    let mut named: HashSet<String> = HashSet::new();
    for name in contacts.iter().filter_map(|(_, c)| c.company.as_deref()) {
        let key = name.to_lowercase();
        if !companies.contains_key(&key) && named.insert(key.clone()) {
            missing.push((key, name));
        }
    }
    if !missing.is_empty() {
        let mut values = Vec::with_capacity(missing.len());
        for (_, name) in &missing {
            match records::checked_new(tx, me, &COMPANY, json!({ "name": name })).await {
                Ok(checked) => values.push(checked),
                Err(_) => return Ok(false),
            }
        }
        let Ok(ids) = records::create_many(tx, me, &values).await else {
            return Ok(false);
        };
        for ((key, _), id) in missing.into_iter().zip(ids) {
            // Negative until the batch is kept.
            companies.insert(key, -i64::from(id));
        }
    }
    for (_, contact) in contacts.iter_mut() {
        let Some(name) = &contact.company else {
            continue;
        };
        let Some(id) = companies.get(&name.to_lowercase()) else {
            return Ok(false);
        };
        let id =
            i32::try_from(id.abs()).map_err(|_| anyhow::anyhow!("company id {id} out of range"))?;
        contact
            .values
            .set("company_id", Some(atrium_domain::records::Datum::Int(id)));
    }
    Ok(true)
}

type RowProblems = Vec<(Option<String>, String)>;

fn row_problems(e: ServiceError) -> Result<RowProblems, ServiceError> {
    Ok(match e {
        ServiceError::Invalid(problems) => problems
            .into_iter()
            .map(|p| (Some(p.field.into_owned()), p.message))
            .collect(),
        ServiceError::Forbidden(_) => {
            vec![(None, "forbidden: you may not change this contact".into())]
        }
        ServiceError::Conflict(m) => vec![(None, m)],
        ServiceError::NotFound(m) => vec![(None, format!("{m} not found"))],
        other => return Err(other),
    })
}

/// What one row did.
struct Imported {
    /// True when it created a contact, false when it updated one.
    created: bool,
    email: Option<String>,
}

/// A row's cells as a contact's body, and the company it names.
struct RowBody {
    body: Map<String, Value>,
    company: Option<String>,
}

impl RowBody {
    fn read(columns: &[Column], record: &csv_async::StringRecord) -> Self {
        let mut body = Map::new();
        let mut custom = Map::new();
        let mut company = None;
        for (column, value) in columns.iter().zip(record.iter()) {
            let value = restored(value);
            match column {
                Column::Field(name) => {
                    let value = if value.is_empty() {
                        Value::Null
                    } else {
                        json!(value)
                    };
                    body.insert((*name).to_owned(), value);
                }
                Column::Custom(key) if !value.is_empty() => {
                    // The CSV holds each value as its JSON text (see export).
                    let parsed = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
                    custom.insert(key.clone(), parsed);
                }
                Column::Company if !value.trim().is_empty() => {
                    company = Some(value.trim().to_owned());
                }
                _ => {}
            }
        }
        if !custom.is_empty() {
            body.insert("custom_fields".into(), Value::Object(custom));
        }
        Self { body, company }
    }

    fn email(&self) -> Option<&str> {
        self.body.get("email").and_then(Value::as_str)
    }

    /// The body as a request would send it, before the company is linked.
    fn without_company(&self) -> Value {
        Value::Object(self.body.clone())
    }
}

/// A row's problems as the report lists them.
fn row_errors(line: u64, problems: RowProblems) -> Vec<RowError> {
    problems
        .into_iter()
        .map(|(field, message)| RowError {
            row: line,
            field,
            message,
        })
        .collect()
}

/// Why a row was refused, from the error of the record service.
fn problems_of(e: ServiceError) -> RowProblems {
    row_problems(e).unwrap_or_else(|e| vec![(None, e.to_string())])
}

async fn import_row(
    tx: &TenantTx,
    me: &CurrentUser,
    columns: &[Column],
    record: &csv_async::StringRecord,
    companies: &mut HashMap<String, i64>,
) -> Result<Imported, RowProblems> {
    let RowBody { mut body, company } = RowBody::read(columns, record);
    if let Some(name) = company {
        let id = match companies.get(&name.to_lowercase()) {
            Some(id) => id.abs(),
            None => {
                let found = store::company_by_name(tx, &name)
                    .await
                    .map_err(|e| problems_of(e.into()))?;
                match found {
                    Some(id) => {
                        companies.insert(name.to_lowercase(), i64::from(id));
                        i64::from(id)
                    }
                    None => {
                        let made = records::create(tx, me, &COMPANY, json!({"name": name}))
                            .await
                            .map_err(problems_of)?;
                        let id = made["id"].as_i64().unwrap_or_default();
                        // Negative until the row commits: a failed row
                        // takes its new company with it.
                        companies.insert(name.to_lowercase(), -id);
                        id
                    }
                }
            }
        };
        body.insert("company_id".into(), json!(id));
    }
    let email = body.get("email").and_then(Value::as_str).map(str::to_owned);
    let existing = match &email {
        Some(email) => store::contacts_by_email(tx, email)
            .await
            .map_err(|e| problems_of(e.into()))?,
        None => Vec::new(),
    };
    let created = match existing.as_slice() {
        [] => records::create(tx, me, &CONTACT, Value::Object(body))
            .await
            .map(|_| true),
        [id] => records::update(tx, me, &CONTACT, *id, Value::Object(body), None)
            .await
            .map(|_| false),
        _ => {
            return Err(vec![(
                Some("email".into()),
                "is ambiguous: several contacts have this email".into(),
            )]);
        }
    };
    let created = created.map_err(problems_of)?;
    for id in companies.values_mut() {
        *id = id.abs();
    }
    Ok(Imported { created, email })
}

/// What a spreadsheet would run as a formula when a cell starts with it
/// (and the quote that marks a neutralised cell, so it round-trips).
const FORMULA_STARTS: &[char] = &['=', '+', '-', '@', '\t', '\r', '\''];

/// A cell a spreadsheet shows as text: one that starts like a formula
/// gets a leading `'` (OWASP's advice against CSV injection).
fn neutralised(cell: String) -> String {
    if cell.starts_with(FORMULA_STARTS) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// A cell as it was before [`neutralised`]: the import takes back what
/// the export wrote.
fn restored(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    }
}

/// The export's header: the contact columns, then each defined custom
/// field.
pub async fn export_header(tx: &TenantTx, me: &CurrentUser) -> Result<Vec<String>, ServiceError> {
    me.require(Action::ContactsExport)?;
    let mut header: Vec<String> = [
        "id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "company_id",
        "company",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for d in definitions::list(tx, Some(CustomEntity::Contact.as_str())).await? {
        header.push(format!("cf.{}", d.key));
    }
    Ok(header)
}

/// One page of the export as CSV lines (no header), and the cursor of the
/// next page. `params` are the list's filters.
pub async fn export_page(
    tx: &TenantTx,
    me: &CurrentUser,
    header: &[String],
    params: &HashMap<String, String>,
) -> Result<(Vec<u8>, Option<String>), ServiceError> {
    let page = records::list::<Value>(
        tx,
        me,
        &CONTACT,
        ListRequest {
            params,
            limit: 1000,
            include_deleted: false,
        },
    )
    .await?;
    let company_ids: Vec<i32> = page
        .data
        .iter()
        .filter_map(|c| c["company_id"].as_i64().map(|id| id as i32))
        .collect();
    let names: HashMap<i32, String> = store::company_names(tx, &company_ids)
        .await?
        .into_iter()
        .collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    for contact in &page.data {
        let text = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut row = Vec::with_capacity(header.len());
        for column in header {
            row.push(neutralised(match column.as_str() {
                "company" => contact["company_id"]
                    .as_i64()
                    .and_then(|id| names.get(&(id as i32)).cloned())
                    .unwrap_or_default(),
                c if c.starts_with("cf.") => {
                    let value = &contact["custom_fields"][&c[3..]];
                    // Strings as they are; other values as JSON, which the
                    // import reads back to the same type.
                    match value {
                        Value::String(s) if serde_json::from_str::<Value>(s).is_err() => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    }
                }
                c => text(&contact[c]),
            }));
        }
        writer
            .write_record(&row)
            .map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
    Ok((bytes, page.next_cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_rows_keep_the_files_columns_and_say_why_last() {
        let header: Vec<String> = ["first_name", "email"].map(String::from).into();
        let mut out = Vec::new();
        let mut refused = RefusedRows::new(&mut out, &header).unwrap();
        let cells = StringRecord::from(vec!["Cy", "not-an-email"]);
        let why = |field: Option<&str>, message: &str| RowError {
            row: 3,
            field: field.map(str::to_owned),
            message: message.to_owned(),
        };
        refused
            .write(3, Some(&cells), &[why(Some("email"), "is not an email")])
            .unwrap();
        refused
            .write(4, None, &[why(None, "the row cannot be read")])
            .unwrap();
        refused.finish().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "first_name,email,import_problem\n\
             Cy,not-an-email,line 3: email: is not an email\n\
             ,,line 4: the row cannot be read\n"
        );
    }

    #[test]
    fn formula_cells_are_neutralised_and_read_back_as_they_were() {
        for cell in [
            "=1+2",
            "+1 555 0100",
            "-5",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "'=x",
            "'plain",
        ] {
            let written = neutralised(cell.to_owned());
            assert!(written.starts_with('\''), "{cell:?} -> {written:?}");
            assert_eq!(restored(&written), cell);
        }
        for cell in ["Ann", "O'Brien", "", "5", "a=b"] {
            assert_eq!(neutralised(cell.to_owned()), cell);
            assert_eq!(restored(cell), cell);
        }
    }
}
