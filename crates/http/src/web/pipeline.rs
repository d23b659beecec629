//! The pipeline board: a column per stage in order, with the count, the
//! value and the weighted value the server computes, and the deals as
//! cards. A deal moves with the form on its card or its page (no
//! JavaScript needed); `app.js` adds dragging a card onto a column,
//! which submits that same form.

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use maud::{Markup, html};
use serde_json::{Value, json};

use atrium_domain::Action;
use atrium_domain::pipeline::NextStep;
use atrium_domain::records::DEAL;
use atrium_services::records;
use atrium_services::{pipeline, users};

use super::forms::csrf_field;
use super::page::{Viewer, layout, respond};
use super::session::SignedIn;
use super::{PageResult, WebError, id_of, see_other};
use crate::error::ApiError;

/// Cards a column shows; the list view pages through the rest.
const CARDS_PER_STAGE: i64 = 50;

/// The form that moves a deal: a select of the stages and "Move".
pub(crate) fn move_form(
    csrf: &str,
    deal_id: i64,
    stages: &[String],
    current: &str,
    label: &str,
    back: &str,
) -> Markup {
    let select_id = format!("move-{deal_id}");
    html! {
        form.move method="post" action=(format!("/deals/{deal_id}/move")) data-deal=(deal_id) {
            (csrf_field(csrf))
            input type="hidden" name="back" value=(back);
            label for=(select_id) { (label) }
            select id=(select_id) name="stage" {
                @for stage in stages {
                    option value=(stage) selected[stage == current] { (stage) }
                }
            }
            button type="submit" { "Move" }
        }
    }
}

pub(crate) async fn board(
    signed_in: Result<SignedIn, WebError>,
    query: Query<HashMap<String, String>>,
) -> PageResult {
    if query.get("view").is_some_and(|v| v == "list") {
        return super::records::list(&DEAL, signed_in, query).await;
    }
    let SignedIn { authed, csrf } = signed_in?;
    // A filter left at "Any" sends an empty value: no filter.
    let mut params = query.0.clone();
    params.retain(|_, v| !v.is_empty());
    // Creating deals and moving one's own go together (a viewer does
    // neither); moving someone else's is checked by the update itself.
    let (name, columns, owners, may_change, views, me_id) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let columns = pipeline::board(tx, &params, CARDS_PER_STAGE).await?;
            let views = atrium_services::saved_views::visible(tx, me, "/deals").await?;
            let owners: Vec<(i64, String)> = users::list(tx, me, 0, 200, false)
                .await?
                .into_iter()
                .map(|u| (i64::from(u.id), super::page::person(&u)))
                .collect();
            let name = super::page::person(&me.user);
            Ok((
                name,
                columns,
                owners,
                me.access.allows(Action::RecordsCreate),
                views,
                me.id(),
            ))
        })
        .await?;
    let stages: Vec<String> = columns.iter().map(|c| c.summary.stage.clone()).collect();
    let viewer = Viewer {
        name: &name,
        csrf: &csrf,
    };
    // After a move the board comes back as it was filtered.
    let back = match form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish()
    {
        q if q.is_empty() => "/deals".to_owned(),
        q => format!("/deals?{q}"),
    };
    let given = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let owner_name = |id: Option<i32>| {
        id.and_then(|id| owners.iter().find(|(o, _)| *o == i64::from(id)))
            .map(|(_, name)| name.as_str())
            .unwrap_or("no owner")
    };
    let content = html! {
        div.toolbar {
            @if may_change { a.button href="/deals/new" { "New deal" } }
            a href="/deals?view=list" { "List" }
        }
        (super::views::panel("/deals", &params, &views, me_id, &csrf))
        details.filters open[params.contains_key("owner_id") || params.contains_key("next_step")] {
            summary { "Filters" }
            form.filters method="get" action="/deals" {
                div {
                    label for="board-owner" { "Owner" }
                    select id="board-owner" name="owner_id" {
                        option value="" { "Anyone" }
                        @for (id, name) in &owners {
                            option value=(id) selected[given("owner_id") == id.to_string()] { (name) }
                        }
                    }
                }
                div {
                    label for="board-next-step" { "Next step" }
                    select id="board-next-step" name="next_step" {
                        option value="" { "Any" }
                        @for step in NextStep::ALL {
                            option value=(step.as_str()) selected[given("next_step") == step.as_str()] { (step.describe()) }
                        }
                    }
                }
                div { button type="submit" { "Filter" } " " a href="/deals" { "Clear" } }
            }
        }
        p.visually-hidden aria-live="polite" id="board-status" {}
        @if may_change {
            p.muted.hint { "Drag a card to another stage, or focus a card and press Alt with ← or → to move it one stage." }
        }
        div.board data-board {
            @for column in &columns {
                @let heading = format!("stage-{}", column.summary.stage.replace(' ', "-"));
                section.column data-stage-column=(column.summary.stage) aria-labelledby=(heading) {
                    h2 id=(heading) { (column.summary.stage) }
                    p.muted.figures data-figures {
                        (column.summary.count) @if column.summary.count == 1 { " deal · " } @else { " deals · " } (column.summary.total_value) " · weighted " (column.summary.weighted_value)
                    }
                    ul.plain.cards {
                        @for deal in &column.cards {
                            li.deal-card data-deal-card=(deal.id) data-title=(deal.title) {
                                a href=(format!("/deals/{}", deal.id)) { (deal.title) }
                                p.muted {
                                    @if let Some(company) = &deal.company_name { (company) " · " }
                                    @if let Some(value) = &deal.value { (value) " · " }
                                    (owner_name(deal.owner_id))
                                }
                                p.signals {
                                    span class=(format!("badge step-{}", deal.next_step.as_str())) { (deal.next_step.describe()) }
                                    " "
                                    span.muted { (deal.days_in_stage) @if deal.days_in_stage == 1 { " day in stage" } @else { " days in stage" } }
                                }
                                @if may_change {
                                    (move_form(&csrf, i64::from(deal.id), &stages, &column.summary.stage, "Move to stage", &back))
                                }
                            }
                        }
                    }
                    @if column.summary.count > column.cards.len() as i64 {
                        p { a href=(format!("/deals?view=list&stage={}", form_urlencoded::byte_serialize(column.summary.stage.as_bytes()).collect::<String>())) { "All " (column.summary.count) " in " (column.summary.stage) } }
                    }
                }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout("Pipeline", "/deals", Some(&viewer), content),
    ))
}

/// Moves a deal to another stage (its probability and, when won or lost,
/// its close date follow the stage, as in the API), then goes back.
pub(crate) async fn move_deal(
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let id = id_of(&id)?;
    let (authed, _, form) = super::records::posted(signed_in, form)?;
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    authed
        .run(async |tx, me| {
            let body: Value = json!({"stage": field("stage")});
            records::update(tx, me, &DEAL, id, body, None).await
        })
        .await?;
    // Only a path of this site: never a redirect elsewhere.
    let back = field("back");
    let back = if back.starts_with('/') && !back.starts_with("//") {
        back
    } else {
        "/deals"
    };
    Ok(see_other(back))
}
