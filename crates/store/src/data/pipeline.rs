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

/// A deal as the pipeline board shows it, with where its next step
/// stands and how long it has been in its stage.
#[derive(Debug, Clone)]
pub struct DealCard {
    pub id: i32,
    pub title: String,
    /// Two decimals, as text.
    pub value: Option<String>,
    pub stage: String,
    pub owner_id: Option<i32>,
    pub company_id: Option<i32>,
    pub company_name: Option<String>,
    pub next_step: atrium_domain::pipeline::NextStep,
    pub days_in_stage: i32,
}

/// One stage's cards and its figures over every deal that matches (not
/// only the cards shown).
#[derive(Debug, Clone)]
pub struct BoardStage {
    pub summary: StageSummary,
    /// `open`, `won` or `lost`.
    pub kind: String,
    pub cards: Vec<DealCard>,
}

/// Where a deal's next step stands (`NextStep`), and since when it has
/// been in its stage: its last stage change in the audit, or its
/// creation. `d` is the deal.
const NEXT_STEP_JOINS: &str = "
    LEFT JOIN LATERAL (
        SELECT min(a.due_at) AS due, count(*) AS open FROM activities a
        WHERE a.deal_id = d.id AND a.deleted_at IS NULL AND a.completed_at IS NULL
    ) act ON true
    LEFT JOIN LATERAL (
        SELECT max(e.at) AS since FROM audit_events e
        WHERE e.entity = 'deal' AND e.entity_id = d.id
          AND (e.action = 'create' OR e.changes ? 'stage')
    ) moved ON true";

const NEXT_STEP: &str = "CASE
        WHEN act.open = 0 THEN 'missing'
        WHEN (act.due AT TIME ZONE 'UTC')::date < (now() AT TIME ZONE 'UTC')::date THEN 'overdue'
        WHEN (act.due AT TIME ZONE 'UTC')::date = (now() AT TIME ZONE 'UTC')::date THEN 'today'
        ELSE 'planned' END";

/// The columns of a deal the board reads: only these are sorted.
const CARD_COLUMNS: &str =
    "d.id, d.title, d.value, d.probability, d.stage, d.owner_id, d.company_id, d.created_at";

/// The stage's figures, over the deals that match, and the newest
/// `per_stage` of them.
/// Stages are grouped by their bytes (`COLLATE "C"`): the grouping needs
/// no language's order, and the sort is much cheaper without one.
const RANKED: &str = "row_number() OVER (PARTITION BY d.stage COLLATE \"C\" ORDER BY d.created_at DESC, d.id DESC) AS n,
        count(*) OVER stage AS stage_count,
        COALESCE(sum(d.value) OVER stage, 0)::numeric(16,2)::text AS stage_total,
        round(COALESCE(sum(d.value * d.probability) OVER stage, 0) / 100, 2)::numeric(16,2)::text AS stage_weighted";

/// The pipeline board: every stage in order (stages without deals too),
/// with the newest `per_stage` live deals of each as cards, narrowed to
/// one owner's and to one state of the next step when asked. One
/// statement; the next step is worked out only for the cards shown,
/// unless it is what narrows.
pub async fn board(
    tx: &TenantTx,
    owner_id: Option<i32>,
    next_step: Option<atrium_domain::pipeline::NextStep>,
    per_stage: i64,
) -> Result<Vec<BoardStage>, StoreError> {
    let card = "d.id, d.title, d.value::text, d.stage, d.owner_id, d.company_id, c.name,
        d.next_step, d.days_in_stage, d.stage_count, d.stage_total, d.stage_weighted";
    let step_columns = format!(
        "{NEXT_STEP} AS next_step,
         floor(extract(epoch FROM now() - COALESCE(moved.since, d.created_at)) / 86400)::int AS days_in_stage"
    );
    let rows = match next_step {
        // Narrowed by the next step: it is worked out for every deal.
        Some(step) => {
            let sql = format!(
                "SELECT {card} FROM (
                    SELECT {CARD_COLUMNS}, {step_columns}, {RANKED}
                    FROM deals d {NEXT_STEP_JOINS}
                    WHERE d.deleted_at IS NULL AND ($1::int IS NULL OR d.owner_id = $1)
                      AND {NEXT_STEP} = $3
                    WINDOW stage AS (PARTITION BY d.stage COLLATE \"C\")
                 ) d
                 LEFT JOIN companies c ON c.id = d.company_id AND c.deleted_at IS NULL
                 WHERE d.n <= $2
                 ORDER BY d.n"
            );
            tx.query(&sql, &[&owner_id, &per_stage, &step.as_str()])
                .await?
        }
        None => {
            let sql = format!(
                "SELECT {card} FROM (
                    SELECT d.*, {step_columns} FROM (
                        SELECT {CARD_COLUMNS}, {RANKED}
                        FROM deals d
                        WHERE d.deleted_at IS NULL AND ($1::int IS NULL OR d.owner_id = $1)
                        WINDOW stage AS (PARTITION BY d.stage COLLATE \"C\")
                    ) d {NEXT_STEP_JOINS}
                    WHERE d.n <= $2
                 ) d
                 LEFT JOIN companies c ON c.id = d.company_id AND c.deleted_at IS NULL
                 ORDER BY d.n"
            );
            tx.query(&sql, &[&owner_id, &per_stage]).await?
        }
    };
    let stages = list(tx).await?;
    let mut board: Vec<BoardStage> = stages
        .into_iter()
        .map(|stage| BoardStage {
            kind: stage.kind,
            summary: StageSummary {
                stage: stage.name,
                count: 0,
                total_value: "0.00".into(),
                weighted_value: "0.00".into(),
            },
            cards: Vec::new(),
        })
        .collect();
    for row in &rows {
        let stage: String = row.get(3);
        let Some(column) = board.iter_mut().find(|c| c.summary.stage == stage) else {
            continue;
        };
        column.summary.count = row.get(9);
        column.summary.total_value = row.get(10);
        column.summary.weighted_value = row.get(11);
        let step: &str = row.get(7);
        column.cards.push(DealCard {
            id: row.get(0),
            title: row.get(1),
            value: row.get(2),
            stage,
            owner_id: row.get(4),
            company_id: row.get(5),
            company_name: row.get(6),
            next_step: atrium_domain::pipeline::NextStep::parse("next_step", step)
                .unwrap_or(atrium_domain::pipeline::NextStep::Missing),
            days_in_stage: row.get(8),
        });
    }
    Ok(board)
}
