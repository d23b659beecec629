//! Record pages, made from the record types' definitions like the API's
//! routes: a list with search and pages, a record with its history, and
//! the form that creates and edits one (custom fields included, each as
//! an input of its type).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use maud::html;
use serde_json::Value;

use atrium_domain::Action;
use atrium_domain::records::{ENTITIES, Entity, Field, Kind, RecordType};
use atrium_services::records::{self, ListRequest};
use atrium_services::{CurrentUser, custom_fields};

use super::forms::csrf_field;
use super::page::{Viewer, layout, respond};
use super::session::SignedIn;
use super::{PageResult, WebError, id_of};
use crate::AppState;
use crate::error::ApiError;

mod actions;
mod form;

pub(crate) use actions::posted;
use actions::{
    add_deal_contact, create, delete, edit_form, new_form, remove_deal_contact, restore, update,
};

/// Records a list page shows at once.
const PAGE_SIZE: i64 = 50;
/// Choices a reference's select offers (the first by name).
const CHOICES: i64 = 200;

pub(crate) fn router() -> Router<AppState> {
    let mut router = Router::new();
    router = router
        .route("/deals/{id}/contacts", post(add_deal_contact))
        .route(
            "/deals/{id}/contacts/{contact_id}/remove",
            post(remove_deal_contact),
        );
    for entity in ENTITIES {
        let base = format!("/{}", entity.table);
        // The deals' list page is the pipeline board (`pipeline.rs`), the
        // activities' is "my activities" (`activities.rs`).
        if !matches!(entity.record, RecordType::Deal | RecordType::Activity) {
            router = router.route(&base, get(move |s, q| list(entity, s, q)));
        }
        router = router
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
    title_fields(entity)
        .iter()
        .map(|f| record[*f].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fields a record is named by.
fn title_fields(entity: &Entity) -> &'static [&'static str] {
    match entity.record {
        RecordType::Contact => &["first_name", "last_name"],
        RecordType::Company => &["name"],
        RecordType::Deal => &["title"],
        RecordType::Activity => &["subject"],
    }
}

fn plural_title(entity: &Entity) -> String {
    let mut title = entity.table.to_owned();
    title[..1].make_ascii_uppercase();
    title
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
    super::page::person(&me.user)
}

pub(crate) async fn list(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let mut params = query.clone();
    // A filter left at "Any" sends an empty value: no filter.
    params.retain(|k, v| k != "limit" && !v.is_empty());
    let path = format!("/{}", entity.table);
    let (name, page, may_create, choices, views, me_id) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            // Sent together: the connection pipelines them, so the page
            // waits for one round trip where it would wait for three.
            let (choices, views, page) = futures::try_join!(
                form::choices(tx, me, entity, form::ChoicesFor::Filters),
                async { Ok(atrium_services::saved_views::visible(tx, me, &path).await?) },
                async {
                    let request = ListRequest {
                        params: &params,
                        limit: PAGE_SIZE,
                        include_deleted: false,
                    };
                    Ok::<_, ApiError>(records::list::<Value>(tx, me, entity, request).await?)
                },
            )?;
            Ok((
                viewer_name(me),
                page,
                me.access.allows(Action::RecordsCreate),
                choices,
                views,
                me.id(),
            ))
        })
        .await?;
    let title = plural_title(entity);
    let q = query.get("q").cloned().unwrap_or_default();
    // The record's name first (a link), then a few of its other fields.
    let columns: Vec<&Field> = entity
        .fields
        .iter()
        .filter(|f| !matches!(f.kind, Kind::CustomFields | Kind::Ref(_) | Kind::UserRef))
        .filter(|f| !title_fields(entity).contains(&f.name))
        .take(3)
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
                form.search role="search" method="get" action=(format!("/{}", entity.table)) data-live-search {
                    label for="q" { "Search " (entity.table) }
                    input id="q" name="q" type="search" value=(q) autocomplete="off";
                    @if let Some(view) = query.get("view") { input type="hidden" name="view" value=(view); }
                    button type="submit" { "Search" }
                }
            }
            @if may_create {
                a.button href=(format!("/{}/new", entity.table)) { "New " (entity.name) }
            }
            @if entity.record == RecordType::Contact {
                a href="/contacts/import" { "Import" }
                " "
                a href="/contacts/export" download { "Export" }
            }
        }
        (super::views::panel(&path, &query, &views, me_id, &csrf))
        (form::filter_form(entity, &choices, &query))
        div id="results" aria-live="polite" {
        @if page.data.is_empty() {
            @if q.is_empty() { p.muted { "No " (entity.table) " here yet." } }
            @else { p.muted { "Nothing matches." } }
        } @else {
            table {
                thead { tr { th scope="col" { "Name" } @for field in &columns { th scope="col" { (label(field)) } } } }
                tbody {
                    @for record in &page.data {
                        tr {
                            td { a href=(format!("/{}/{}", entity.table, record["id"])) { (title_of(entity, record)) } }
                            @for field in &columns {
                                td { (shown(field, &record[field.name])) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a href=(next) rel="next" { "Next page" } }
        }
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

/// What a record's page lists besides the record: a company's
/// subsidiaries, contacts and deals; a contact's deals and activities; a
/// deal's activities.
async fn related_records(
    tx: &atrium_store::TenantTx,
    me: &CurrentUser,
    entity: &'static Entity,
    id: i32,
) -> Result<Vec<(&'static str, &'static Entity, Vec<Value>)>, ApiError> {
    use atrium_domain::records::{ACTIVITY, COMPANY, CONTACT, DEAL};
    let wanted: &[(&str, &'static Entity, &str)] = match entity.record {
        RecordType::Company => &[
            ("Subsidiaries", &COMPANY, "parent_company_id"),
            ("Contacts", &CONTACT, "company_id"),
            ("Deals", &DEAL, "company_id"),
        ],
        RecordType::Contact => &[
            ("Deals", &DEAL, "primary_contact_id"),
            ("Activities", &ACTIVITY, "contact_id"),
        ],
        RecordType::Deal => &[("Activities", &ACTIVITY, "deal_id")],
        RecordType::Activity => &[],
    };
    let mut out = Vec::new();
    for (heading, other, filter) in wanted {
        let params: HashMap<String, String> = [((*filter).to_owned(), id.to_string())].into();
        let page = records::list::<Value>(
            tx,
            me,
            other,
            ListRequest {
                params: &params,
                limit: PAGE_SIZE,
                include_deleted: false,
            },
        )
        .await?;
        out.push((*heading, *other, page.data));
    }
    Ok(out)
}

async fn show(
    entity: &'static Entity,
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let id = id_of(&id)?;
    let (name, record, refs, history, custom, stages, related, people, people_on_deal) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let record = records::get(tx, me, entity, id, false).await?;
            let related = related_records(tx, me, entity, id).await?;
            let people_on_deal = if entity.record == RecordType::Deal {
                let linked = records::deal_contacts(tx, me, id, 0, PAGE_SIZE).await?;
                let contact = &atrium_domain::records::CONTACT;
                let all = records::titles(tx, contact, title_fields(contact), CHOICES).await?;
                Some((linked, all))
            } else {
                None
            };
            // Who made each change, by name (deactivated people too).
            let everyone = me.access.allows(Action::RecordsRestore);
            let people: HashMap<i64, String> =
                atrium_services::users::list(tx, me, 0, 1000, everyone)
                    .await?
                    .into_iter()
                    .map(|u| (i64::from(u.id), super::page::person(&u)))
                    .collect();
            let stages: Vec<String> = if entity.record == RecordType::Deal {
                atrium_services::pipeline::list(tx)
                    .await?
                    .into_iter()
                    .map(|s| s.name)
                    .collect()
            } else {
                Vec::new()
            };
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
            Ok((
                viewer_name(me),
                record,
                refs,
                history,
                custom,
                stages,
                related,
                people,
                people_on_deal,
            ))
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
        @if entity.record == RecordType::Deal {
            div.card {
                (super::pipeline::move_form(&csrf, i64::from(id), &stages, record["stage"].as_str().unwrap_or_default(), "Stage", &base))
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
        @if let Some((linked, all)) = &people_on_deal {
            section aria-labelledby="deal-contacts" {
                h2 id="deal-contacts" { "Contacts" }
                @if linked.is_empty() { p.muted { "None yet." } } @else {
                    ul.plain.card {
                        @for (contact_id, link) in linked {
                            li.activity {
                                span {
                                    a href=(format!("/contacts/{contact_id}")) { (title_of(&atrium_domain::records::CONTACT, &link["contact"])) }
                                    @if let Some(role) = link["role"].as_str() { " " span.muted { "(" (role) ")" } }
                                }
                                form method="post" action=(format!("{base}/contacts/{contact_id}/remove")) {
                                    (csrf_field(&csrf))
                                    button.quiet type="submit" { "Remove" }
                                }
                            }
                        }
                    }
                }
                form.inline.card method="post" action=(format!("{base}/contacts")) {
                    (csrf_field(&csrf))
                    label for="deal-contact" { "Contact" }
                    select id="deal-contact" name="contact_id" {
                        @for (contact_id, name) in all {
                            option value=(contact_id) { (name) }
                        }
                    }
                    label for="deal-role" { "Role" }
                    input id="deal-role" name="role" type="text" placeholder="decision maker";
                    button type="submit" { "Add contact" }
                }
            }
        }
        @for (heading, other, rows) in &related {
            section aria-label=(heading) {
                h2 { (heading) }
                @if rows.is_empty() { p.muted { "None." } } @else {
                    ul.plain.card {
                        @for row in rows {
                            li { a href=(format!("/{}/{}", other.table, row["id"])) { (title_of(other, row)) } }
                        }
                    }
                }
            }
        }
        @if entity.record == RecordType::Contact {
            h2 { "Log an activity" }
            form.stack.card method="post" action="/activities/new" {
                (csrf_field(&csrf))
                input type="hidden" name="contact_id" value=(id);
                input type="hidden" name="back" value=(base);
                div { label for="log-kind" { "Kind" } select id="log-kind" name="kind" {
                    @for kind in ["call", "meeting", "email", "note"] { option value=(kind) { (kind) } }
                } }
                div { label for="log-subject" { "Subject" } input id="log-subject" name="subject" required; }
                div { label for="log-body" { "Notes" } textarea id="log-body" name="body" rows="3" {} }
                div { button type="submit" { "Log activity" } }
            }
        }
        h2 { "History" }
        ul.plain {
            @for (_, event) in &history {
                li {
                    strong { (event["action"].as_str().unwrap_or_default()) }
                    @if let Some(who) = event["user_id"].as_i64().and_then(|id| people.get(&id)) {
                        " by " (who)
                    }
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

#[cfg(test)]
mod tests {
    use super::form::{Typed, body_of};
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
