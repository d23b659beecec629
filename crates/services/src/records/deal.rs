//! A deal's own rules: its stage must be one of the pipeline's, and the
//! stage it enters gives it a probability and, when won or lost, a close
//! date. Its owner defaults to its creator.

use serde_json::Value;

use atrium_domain::Invalid;
use atrium_domain::records::{Changes, Datum, NewRecord};
use atrium_store::TenantTx;
use atrium_store::pipeline::{self, StageDefaults};
use atrium_store::records;

use crate::{CurrentUser, Problems, ServiceError};

async fn stage(
    tx: &TenantTx,
    name: &Datum,
    problems: &mut Problems,
) -> Result<Option<StageDefaults>, ServiceError> {
    let defaults = pipeline::stage_defaults(tx, name.as_text().unwrap_or_default()).await?;
    if defaults.is_none() {
        problems.push(Invalid::new("stage", "is not a stage of the pipeline"));
    }
    Ok(defaults)
}

/// The owner defaults to the creator; the probability to the stage's; a
/// deal created closed (won or lost) gets today as its close date.
pub(super) async fn on_create(
    tx: &TenantTx,
    me: &CurrentUser,
    values: &mut NewRecord,
    problems: &mut Problems,
) -> Result<(), ServiceError> {
    let owner = values.get_mut("owner_id");
    if owner.is_none() {
        *owner = Some(Datum::Int(me.id()));
    }
    let Some(name) = values.get("stage").clone() else {
        return Ok(());
    };
    let Some(defaults) = stage(tx, &name, problems).await? else {
        return Ok(());
    };
    let probability = values.get_mut("probability");
    if probability.is_none() {
        *probability = Some(Datum::Decimal(defaults.probability));
    }
    if defaults.closed && values.get("actual_close_date").is_none() {
        let today = records::today_utc(tx).await?;
        values.set("actual_close_date", Some(Datum::Date(today)));
    }
    Ok(())
}

/// A deal moved to another stage takes that stage's probability unless
/// one is given, and moving it to a won or lost stage sets its close date
/// to today if it has none.
pub(super) async fn on_change(
    tx: &TenantTx,
    current: &Value,
    changes: &mut Changes,
    problems: &mut Problems,
) -> Result<(), ServiceError> {
    let Some(Some(name)) = changes.get("stage").clone() else {
        return Ok(());
    };
    let Some(defaults) = stage(tx, &name, problems).await? else {
        return Ok(());
    };
    let moved = current["stage"].as_str() != name.as_text();
    if changes.get("probability").is_none() && moved {
        changes.set(
            "probability",
            Some(Some(Datum::Decimal(defaults.probability))),
        );
    }
    if defaults.closed
        && changes.get("actual_close_date").is_none()
        && current["actual_close_date"].is_null()
    {
        let today = records::today_utc(tx).await?;
        changes.set("actual_close_date", Some(Some(Datum::Date(today))));
    }
    Ok(())
}
