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
use serde::Deserialize;
use serde_json::{Value, json};

use atrium_domain::records::DEAL;
use atrium_services::records::{self, ListRequest};
use atrium_services::{pipeline, users};

use super::forms::csrf_field;
use super::page::{Viewer, layout, respond};
use super::session::{SignedIn, check_csrf};
use super::{PageResult, WebError, see_other};
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
    let (name, summary, cards, owners) = authed
        .run(async |tx, me| -> Result<_, ApiError> {
            let summary = pipeline::summary(tx, &HashMap::new()).await?;
            let mut cards = HashMap::new();
            for stage in &summary {
                let params: HashMap<String, String> =
                    [("stage".to_owned(), stage.stage.clone())].into();
                let page = records::list(
                    tx,
                    me,
                    &DEAL,
                    ListRequest {
                        params: &params,
                        limit: CARDS_PER_STAGE,
                        include_deleted: false,
                    },
                )
                .await?;
                cards.insert(stage.stage.clone(), page.data);
            }
            let owners: HashMap<i64, String> = users::list(tx, me, 0, 200, false)
                .await?
                .into_iter()
                .map(|u| (i64::from(u.id), format!("{} {}", u.first_name, u.last_name)))
                .collect();
            let name = format!("{} {}", me.user.first_name, me.user.last_name);
            Ok((name, summary, cards, owners))
        })
        .await?;
    let stages: Vec<String> = summary.iter().map(|s| s.stage.clone()).collect();
    let viewer = Viewer {
        name: &name,
        csrf: &csrf,
    };
    let empty = Vec::new();
    let content = html! {
        div.toolbar {
            a.button href="/deals/new" { "New deal" }
            a href="/deals?view=list" { "List" }
        }
        p.visually-hidden aria-live="polite" id="board-status" {}
        div.board {
            @for column in &summary {
                section.column data-stage-column=(column.stage) aria-labelledby=(format!("stage-{}", column.stage.replace(' ', "-"))) {
                    h2 id=(format!("stage-{}", column.stage.replace(' ', "-"))) { (column.stage) }
                    p.muted.figures {
                        (column.count) @if column.count == 1 { " deal · " } @else { " deals · " } (column.total_value) " · weighted " (column.weighted_value)
                    }
                    ul.plain.cards {
                        @for deal in cards.get(&column.stage).unwrap_or(&empty) {
                            li.deal-card data-deal-card=(deal["id"]) {
                                a href=(format!("/deals/{}", deal["id"])) { (deal["title"].as_str().unwrap_or_default()) }
                                p.muted {
                                    @if let Some(value) = deal["value"].as_str() { (value) " · " }
                                    (deal["owner_id"].as_i64().and_then(|id| owners.get(&id)).map(String::as_str).unwrap_or("no owner"))
                                }
                                (move_form(&csrf, deal["id"].as_i64().unwrap_or_default(), &stages, &column.stage, "Move to stage", "/deals"))
                            }
                        }
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

#[derive(Deserialize)]
pub(crate) struct MoveForm {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    back: String,
    #[serde(default)]
    csrf: String,
}

/// Moves a deal to another stage (its probability and, when won or lost,
/// its close date follow the stage, as in the API), then goes back.
pub(crate) async fn move_deal(
    signed_in: Result<SignedIn, WebError>,
    Path(id): Path<String>,
    form: Result<Form<MoveForm>, FormRejection>,
) -> PageResult {
    let SignedIn { authed, csrf } = signed_in?;
    let Form(form) = form.map_err(|_| ApiError::bad_request("the form could not be read"))?;
    check_csrf(&csrf, &form.csrf)?;
    let id: i32 = id
        .parse()
        .map_err(|_| WebError::from(ApiError::not_found("no such deal")))?;
    authed
        .run(async |tx, me| {
            let body: Value = json!({"stage": form.stage});
            records::update(tx, me, &DEAL, id, body, None).await
        })
        .await?;
    // Only a path of this site: never a redirect elsewhere.
    let back = if form.back.starts_with('/') && !form.back.starts_with("//") {
        form.back.as_str()
    } else {
        "/deals"
    };
    Ok(see_other(back))
}
