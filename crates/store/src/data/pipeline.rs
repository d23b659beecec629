//! A tenant's pipeline stages, kept in a dense 1-based order.

use tokio_postgres::Row;

use crate::connection::database::constraint_of;
use crate::{StoreError, TenantTx};

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub position: i32,
    /// Two decimals, as text (`"25.00"`).
    pub probability: String,
    pub kind: String,
}

const COLUMNS: &str = "name, position, probability::text, kind";

fn from_row(r: &Row) -> Stage {
    Stage {
        name: r.get(0),
        position: r.get(1),
        probability: r.get(2),
        kind: r.get(3),
    }
}

fn name_taken(e: tokio_postgres::Error) -> StoreError {
    match constraint_of(&e) {
        Some("pipeline_stages_name_key") => {
            StoreError::Conflict("a stage with this name exists".into())
        }
        _ => e.into(),
    }
}

pub async fn list(tx: &TenantTx) -> Result<Vec<Stage>, StoreError> {
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM pipeline_stages ORDER BY position"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn get(tx: &TenantTx, name: &str) -> Result<Option<Stage>, StoreError> {
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM pipeline_stages WHERE name = $1"),
            &[&name],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Serialises changes to the pipeline's order: two concurrent inserts
/// would otherwise both take the last position.
async fn lock(tx: &TenantTx) -> Result<(), StoreError> {
    tx.execute(
        "LOCK TABLE pipeline_stages IN SHARE ROW EXCLUSIVE MODE",
        &[],
    )
    .await?;
    Ok(())
}

async fn count(tx: &TenantTx) -> Result<i32, StoreError> {
    let row = tx
        .query_one("SELECT count(*)::int FROM pipeline_stages", &[])
        .await?;
    Ok(row.get(0))
}

/// Inserts a stage at `position` (1-based, default last), moving the
/// stages from there on one place down.
pub async fn insert(
    tx: &TenantTx,
    name: &str,
    probability: &str,
    kind: &str,
    position: Option<i32>,
) -> Result<Stage, StoreError> {
    lock(tx).await?;
    let last = count(tx).await? + 1;
    let position = position.unwrap_or(last).clamp(1, last);
    tx.execute(
        "UPDATE pipeline_stages SET position = position + 1 WHERE position >= $1",
        &[&position],
    )
    .await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO pipeline_stages (name, position, probability, kind)
                 VALUES ($1, $2, $3::text::numeric, $4) RETURNING {COLUMNS}"
            ),
            &[&name, &position, &probability, &kind],
        )
        .await
        .map_err(name_taken)?;
    Ok(from_row(&row))
}

/// Changes a stage. A rename moves every deal with it (the foreign key
/// cascades); a new position moves the stages in between by one.
pub async fn update(
    tx: &TenantTx,
    name: &str,
    new_name: Option<&str>,
    probability: Option<&str>,
    kind: Option<&str>,
    position: Option<i32>,
) -> Result<Option<Stage>, StoreError> {
    lock(tx).await?;
    let Some(current) = get(tx, name).await? else {
        return Ok(None);
    };
    if let Some(target) = position {
        let target = target.clamp(1, count(tx).await?);
        let from = current.position;
        if target < from {
            tx.execute(
                "UPDATE pipeline_stages SET position = position + 1 WHERE position >= $1 AND position < $2",
                &[&target, &from],
            )
            .await?;
        } else if target > from {
            tx.execute(
                "UPDATE pipeline_stages SET position = position - 1 WHERE position > $1 AND position <= $2",
                &[&from, &target],
            )
            .await?;
        }
        tx.execute(
            "UPDATE pipeline_stages SET position = $2 WHERE name = $1",
            &[&name, &target],
        )
        .await?;
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE pipeline_stages SET
                   name = COALESCE($2, name),
                   probability = COALESCE($3::text::numeric, probability),
                   kind = COALESCE($4, kind)
                 WHERE name = $1 RETURNING {COLUMNS}"
            ),
            &[&name, &new_name, &probability, &kind],
        )
        .await
        .map_err(name_taken)?;
    Ok(Some(from_row(&row)))
}

/// Deletes a stage no deal uses (deleted deals included).
pub async fn delete(tx: &TenantTx, name: &str) -> Result<bool, StoreError> {
    lock(tx).await?;
    let row = tx
        .query_opt(
            "DELETE FROM pipeline_stages WHERE name = $1 RETURNING position",
            &[&name],
        )
        .await
        .map_err(|e| match constraint_of(&e) {
            Some(c) if c.starts_with("deals_stage") => StoreError::Conflict(
                "deals use this stage (deleted deals too); move them first".into(),
            ),
            _ => e.into(),
        })?;
    let Some(row) = row else { return Ok(false) };
    let position: i32 = row.get(0);
    tx.execute(
        "UPDATE pipeline_stages SET position = position - 1 WHERE position > $1",
        &[&position],
    )
    .await?;
    Ok(true)
}

/// One stage's totals in the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageSummary {
    pub stage: String,
    pub count: i64,
    /// Two decimals, as text.
    pub total_value: String,
    /// Σ value × probability / 100 over the stage's deals, rounded to
    /// cents once, at the end.
    pub weighted_value: String,
}

/// Every stage in order (stages without deals too), over the deals that
/// are not deleted, optionally of one owner and closing in a window.
pub async fn summary(
    tx: &TenantTx,
    owner_id: Option<i32>,
    close_from: Option<&str>,
    close_to: Option<&str>,
) -> Result<Vec<StageSummary>, StoreError> {
    let rows = tx
        .query(
            "SELECT s.name, count(d.id),
                    COALESCE(sum(d.value), 0)::numeric(16,2)::text,
                    round(COALESCE(sum(d.value * d.probability), 0) / 100, 2)::numeric(16,2)::text
             FROM pipeline_stages s
             LEFT JOIN deals d ON d.stage = s.name AND d.deleted_at IS NULL
               AND ($1::int IS NULL OR d.owner_id = $1)
               AND ($2::text IS NULL OR d.expected_close_date >= $2::text::date)
               AND ($3::text IS NULL OR d.expected_close_date <= $3::text::date)
             GROUP BY s.name, s.position
             ORDER BY s.position",
            &[&owner_id, &close_from, &close_to],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| StageSummary {
            stage: r.get(0),
            count: r.get(1),
            total_value: r.get(2),
            weighted_value: r.get(3),
        })
        .collect())
}

/// What a deal takes from the stage it enters.
#[derive(Debug, Clone, Copy)]
pub struct StageDefaults {
    pub probability: atrium_domain::decimal::Decimal2,
    /// Won or lost: a deal entering it is closed.
    pub closed: bool,
}

/// The defaults of the stage with this name, if there is one.
pub async fn stage_defaults(
    tx: &TenantTx,
    name: &str,
) -> Result<Option<StageDefaults>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT probability::text, kind <> 'open' FROM pipeline_stages WHERE name = $1",
            &[&name],
        )
        .await?;
    row.map(|r| {
        let probability: String = r.get(0);
        let probability = atrium_domain::decimal::parse(
            "probability",
            &serde_json::Value::String(probability),
            3,
        )
        .map_err(|e| anyhow::anyhow!("stored probability: {e}"))?;
        Ok(StageDefaults {
            probability,
            closed: r.get(1),
        })
    })
    .transpose()
}
