//! Managing the pipeline's stages.

use serde_json::Value;

use atrium_domain::Action;
use atrium_domain::pipeline::{StageKind, parse_percent, parse_stage_name};
use atrium_store::TenantTx;
use atrium_store::pipeline::{self, Stage};

use crate::{CurrentUser, Problems, ServiceError};

pub async fn list(tx: &TenantTx) -> Result<Vec<Stage>, ServiceError> {
    Ok(pipeline::list(tx).await?)
}

fn parse_position(problems: &mut Problems, value: Option<&Value>) -> Option<i32> {
    let value = value?;
    let position = value.as_i64().filter(|p| (1..=10_000).contains(p));
    if position.is_none() {
        problems.push(atrium_domain::Invalid::new(
            "position",
            "must be a whole number of at least 1",
        ));
    }
    position.map(|p| p as i32)
}

/// `{"name", "probability", "kind"?, "position"?}`; `kind` defaults to open,
/// `position` (1-based) to last.
pub struct NewStage {
    pub name: String,
    pub probability: Value,
    pub kind: Option<String>,
    pub position: Option<Value>,
}

pub async fn create(tx: &TenantTx, me: &CurrentUser, new: NewStage) -> Result<Stage, ServiceError> {
    me.require(Action::PipelineManage)?;
    let mut problems = Problems::default();
    let name = problems.check(parse_stage_name("name", &new.name));
    let probability = problems.check(parse_percent("probability", &new.probability));
    let kind = problems.check(
        new.kind
            .as_deref()
            .map_or(Ok(StageKind::Open), StageKind::parse),
    );
    let position = parse_position(&mut problems, new.position.as_ref());
    problems.into_result()?;
    Ok(pipeline::insert(
        tx,
        &name.expect("checked"),
        &probability.expect("checked"),
        kind.expect("checked").as_str(),
        position,
    )
    .await?)
}

#[derive(Default)]
pub struct StageChanges {
    pub name: Option<String>,
    pub probability: Option<Value>,
    pub kind: Option<String>,
    pub position: Option<Value>,
}

pub async fn update(
    tx: &TenantTx,
    me: &CurrentUser,
    name: &str,
    changes: StageChanges,
) -> Result<Stage, ServiceError> {
    me.require(Action::PipelineManage)?;
    let mut problems = Problems::default();
    let new_name = changes
        .name
        .and_then(|n| problems.check(parse_stage_name("name", &n)));
    let probability = changes
        .probability
        .and_then(|p| problems.check(parse_percent("probability", &p)));
    let kind = changes
        .kind
        .and_then(|k| problems.check(StageKind::parse(&k)));
    let position = parse_position(&mut problems, changes.position.as_ref());
    problems.into_result()?;
    pipeline::update(
        tx,
        name,
        new_name.as_deref(),
        probability.as_deref(),
        kind.map(StageKind::as_str),
        position,
    )
    .await?
    .ok_or_else(|| ServiceError::NotFound("stage".into()))
}

pub async fn delete(tx: &TenantTx, me: &CurrentUser, name: &str) -> Result<(), ServiceError> {
    me.require(Action::PipelineManage)?;
    if pipeline::delete(tx, name).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("stage".into()))
    }
}

/// The pipeline summary, filtered by owner and expected close window.
pub async fn summary(
    tx: &TenantTx,
    params: &std::collections::HashMap<String, String>,
) -> Result<Vec<atrium_store::pipeline::StageSummary>, ServiceError> {
    let mut problems = Problems::default();
    let owner = owner_param(params, &mut problems);
    // The close window reads as the deal list's filters do.
    let mut close = |param| {
        crate::records::filter_value(&crate::records::DEAL, param, params, &mut problems)
            .map(|date| date.to_sql_text())
    };
    let (from, to) = (close("expected_close_from"), close("expected_close_to"));
    problems.into_result()?;
    Ok(pipeline::summary(tx, owner, from.as_deref(), to.as_deref()).await?)
}

/// The `owner_id` that narrows the pipeline to one person's deals.
fn owner_param(
    params: &std::collections::HashMap<String, String>,
    problems: &mut Problems,
) -> Option<i32> {
    params
        .get("owner_id")
        .and_then(|raw| match raw.parse::<i32>() {
            Ok(id) if id > 0 => Some(id),
            _ => {
                problems.push(atrium_domain::Invalid::new(
                    "owner_id",
                    "must be the id of a user",
                ));
                None
            }
        })
}

/// The pipeline board: each stage's figures and its newest deals,
/// narrowed by `owner_id` and by `next_step` (overdue, today, planned,
/// missing) when given.
pub async fn board(
    tx: &TenantTx,
    params: &std::collections::HashMap<String, String>,
    per_stage: i64,
) -> Result<Vec<pipeline::BoardStage>, ServiceError> {
    let mut problems = Problems::default();
    let owner = owner_param(params, &mut problems);
    let next_step = params.get("next_step").and_then(|raw| {
        atrium_domain::pipeline::NextStep::parse("next_step", raw)
            .map_err(|invalid| problems.push(invalid))
            .ok()
    });
    problems.into_result()?;
    Ok(pipeline::board(tx, owner, next_step, per_stage).await?)
}
