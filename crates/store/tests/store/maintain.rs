//! `atrium maintain`: what it removes, what it keeps, and when it vacuums.

use std::time::Duration;

use atrium_store::Database;
use atrium_store::fleet::maintain::{MAINTENANCE_LOCK_KEY, Policy, maintain};
use atrium_testkit::migrated_database;

use crate::helpers::{new_tenant, scalar_i64, sql, wait_for};

const DAY: u64 = 24 * 3600;

fn policy(vacuum: bool) -> Policy {
    Policy {
        retention: Duration::from_secs(30 * DAY),
        session_idle: Duration::from_secs(7 * DAY),
        vacuum,
        reindex_every: None,
    }
}

fn token(n: u32) -> String {
    format!("md5('{n}') || md5('x{n}')")
}

/// Rows on both sides of every line `maintain` draws; "keep" rows must
/// survive.
async fn seed(db: &Database, schema: &str, tenant_id: i32) {
    sql(
        db,
        &format!(
            "SET search_path = {schema};
             INSERT INTO sessions (user_id, token, expires_at, last_seen_at, revoked_at) VALUES
               (1, {t1}, now() - interval '1 minute', now(), NULL),          -- expired
               (1, {t2}, now() + interval '1 day', now(), now()),            -- revoked
               (1, {t3}, now() + interval '20 days', now() - interval '8 days', NULL), -- idle
               (1, {t4}, now() + interval '20 days', now() - interval '6 days', NULL); -- keep
             INSERT INTO password_reset_tokens (user_id, token, expires_at, used_at) VALUES
               (1, {t5}, now() - interval '1 minute', NULL),                 -- expired
               (1, {t6}, now() + interval '1 hour', now()),                  -- used
               (1, {t7}, now() + interval '1 hour', NULL);                   -- keep
             INSERT INTO companies (name, created_by, deleted_at) VALUES
               ('Old deleted', 1, now() - interval '40 days'),               -- purge
               ('Live', 1, NULL);                                            -- keep
             INSERT INTO contacts (first_name, last_name, company_id, created_by, deleted_at) VALUES
               ('Purge', 'Me', 1, 1, now() - interval '31 days'),            -- purge
               ('Just', 'Inside', NULL, 1, now() - interval '30 days' + interval '1 hour'), -- keep
               ('Live', 'One', 1, 1, NULL);                                  -- keep, company set null
             INSERT INTO deals (title, stage, primary_contact_id, created_by, deleted_at) VALUES
               ('Old deal', 'lead', 1, 1, now() - interval '31 days'),       -- purge
               ('Live deal', 'lead', 1, 1, NULL);                            -- keep, contact set null
             INSERT INTO deal_contacts (deal_id, contact_id, created_by) VALUES (2, 1, 1); -- cascades
             INSERT INTO activities (kind, subject, contact_id, created_by, deleted_at) VALUES
               ('call', 'Old', 3, 1, now() - interval '31 days'),            -- purge
               ('call', 'About the purged', 1, 1, NULL);                     -- keep, contact set null
             INSERT INTO audit_events (entity, entity_id, action, user_id, changes) VALUES
               ('contact', 1, 'delete', 1, '{{}}'),                          -- purge with contact 1
               ('company', 1, 'delete', 1, '{{}}'),                          -- purge with company 1
               ('contact', 2, 'delete', 1, '{{}}'),                          -- keep
               ('company', 2, 'create', 1, '{{}}');                          -- keep
             INSERT INTO public.invitations (tenant_id, email, role, token, expires_at, accepted_at, revoked_at) VALUES
               ({tenant_id}, 'a@x.example', 'viewer', {t8}, now() - interval '1 minute', NULL, NULL), -- expired
               ({tenant_id}, 'b@x.example', 'viewer', {t9}, now() - interval '1 day', now() - interval '2 days', NULL), -- keep (accepted)
               ({tenant_id}, 'c@x.example', 'viewer', {t10}, now() + interval '1 day', NULL, now()), -- revoked
               ({tenant_id}, 'd@x.example', 'viewer', {t11}, now() + interval '1 day', NULL, NULL); -- keep
             INSERT INTO public.outbox (tenant_id, to_email, kind, subject, body, token_expires_at) VALUES
               ({tenant_id}, 'a@x.example', 'invitation', 'Join', 'http://x/accept?token=abc123 bye', now() - interval '1 minute'),
               ({tenant_id}, 'd@x.example', 'invitation', 'Join', 'http://x/accept?token=def456 bye', now() + interval '1 day');",
            t1 = token(1 + tenant_id as u32 * 100),
            t2 = token(2 + tenant_id as u32 * 100),
            t3 = token(3 + tenant_id as u32 * 100),
            t4 = token(4 + tenant_id as u32 * 100),
            t5 = token(5 + tenant_id as u32 * 100),
            t6 = token(6 + tenant_id as u32 * 100),
            t7 = token(7 + tenant_id as u32 * 100),
            t8 = token(8 + tenant_id as u32 * 100),
            t9 = token(9 + tenant_id as u32 * 100),
            t10 = token(10 + tenant_id as u32 * 100),
            t11 = token(11 + tenant_id as u32 * 100),
        ),
    )
    .await;
}

#[tokio::test]
async fn maintain_removes_exactly_what_has_expired_and_keeps_the_rest() {
    let t = migrated_database().await;
    let a = new_tenant(&t.db, "alpha").await;
    let b = new_tenant(&t.db, "bravo").await;
    seed(&t.db, &a.schema_name, a.id).await;
    seed(&t.db, &b.schema_name, b.id).await;

    let report = maintain(&t.admin, &policy(false)).await.unwrap().unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.tenants, 2);
    assert_eq!(
        (
            report.sessions_removed,
            report.reset_tokens_removed,
            report.companies_purged,
            report.contacts_purged,
            report.deals_purged,
            report.activities_purged,
            report.audit_events_purged,
            report.invitations_removed,
            report.outbox_tokens_blanked,
        ),
        (6, 4, 2, 2, 2, 2, 4, 4, 2)
    );
    for schema in [&a.schema_name, &b.schema_name] {
        let count = |sql: String| {
            let db = t.db.clone();
            async move { scalar_i64(&db, &sql).await }
        };
        assert_eq!(
            count(format!("SELECT count(*) FROM {schema}.sessions")).await,
            1
        );
        assert_eq!(
            count(format!(
                "SELECT count(*) FROM {schema}.password_reset_tokens"
            ))
            .await,
            1
        );
        assert_eq!(
            count(format!(
                "SELECT count(*) FROM {schema}.contacts WHERE first_name IN ('Just', 'Live')"
            ))
            .await,
            2,
            "a record deleted just inside the retention stays"
        );
        assert_eq!(
            count(format!("SELECT count(*) FROM {schema}.contacts")).await,
            2
        );
        assert_eq!(
            count(format!(
                "SELECT count(*) FROM {schema}.contacts WHERE company_id IS NULL"
            ))
            .await,
            2,
            "references to a purged company are cleared"
        );
        assert_eq!(
            count(format!("SELECT count(*) FROM {schema}.deals")).await,
            1
        );
        assert_eq!(
            count(format!("SELECT count(*) FROM {schema}.deal_contacts")).await,
            0
        );
        assert_eq!(
            count(format!("SELECT count(*) FROM {schema}.activities")).await,
            1
        );
        assert_eq!(
            count(format!("SELECT count(*) FROM {schema}.audit_events")).await,
            2
        );
    }
    assert_eq!(
        scalar_i64(
            &t.db,
            "SELECT count(*) FROM public.invitations WHERE email IN ('b@x.example', 'd@x.example')"
        )
        .await,
        4
    );
    assert_eq!(
        scalar_i64(&t.db, "SELECT count(*) FROM public.invitations").await,
        4
    );
    assert_eq!(
        scalar_i64(
            &t.db,
            "SELECT count(*) FROM public.outbox WHERE body LIKE '%token=abc123%'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(
            &t.db,
            "SELECT count(*) FROM public.outbox WHERE body LIKE '%token=def456%'"
        )
        .await,
        2,
        "a token still valid stays until the email is sent"
    );

    let again = maintain(&t.admin, &policy(false)).await.unwrap().unwrap();
    assert_eq!(
        again.sessions_removed
            + again.reset_tokens_removed
            + again.contacts_purged
            + again.invitations_removed
            + again.outbox_tokens_blanked,
        0,
        "a second run finds nothing: {again:?}"
    );
    assert_eq!(
        scalar_i64(&t.db, "SELECT count(*) FROM public.maintenance_runs").await,
        2
    );
}

#[tokio::test]
async fn vacuum_runs_only_on_schemas_written_since_they_were_last_vacuumed() {
    let t = migrated_database().await;
    let a = new_tenant(&t.db, "alpha").await;
    let b = new_tenant(&t.db, "bravo").await;
    for schema in [&a.schema_name, &b.schema_name] {
        wait_for_write_statistics(&t.db, schema).await;
    }
    let first = maintain(&t.admin, &policy(true)).await.unwrap().unwrap();
    assert_eq!(
        first.vacuumed,
        vec![a.schema_name.clone(), b.schema_name.clone()]
    );

    sql(
        &t.db,
        &format!(
            "INSERT INTO {}.contacts (first_name, last_name, created_by) VALUES ('New', 'Write', 1)",
            b.schema_name
        ),
    )
    .await;
    wait_for_write_statistics(&t.db, &b.schema_name).await;
    let second = maintain(&t.admin, &policy(true)).await.unwrap().unwrap();
    assert_eq!(second.vacuumed, vec![b.schema_name.clone()]);
}

#[tokio::test]
async fn one_maintain_run_at_a_time() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    let holder = t.db.dedicated_connection().await.unwrap();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&MAINTENANCE_LOCK_KEY])
        .await
        .unwrap();
    assert!(maintain(&t.admin, &policy(false)).await.unwrap().is_none());
    drop(holder);
    // The lock goes with the holder's connection, as soon as the server
    // sees it close.
    assert!(
        wait_for(async || maintain(&t.admin, &policy(false)).await.unwrap().is_some()).await,
        "maintain did not run once the lock was free"
    );
}

/// Writes reach the statistics from the writing session within a second
/// or so.
async fn wait_for_write_statistics(db: &Database, schema: &str) {
    let written = format!(
        "SELECT coalesce(sum(n_mod_since_analyze), 0)::bigint FROM pg_stat_user_tables WHERE schemaname = '{schema}'"
    );
    for _ in 0..100 {
        if scalar_i64(db, &written).await > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no write statistics for {schema}");
}

#[tokio::test]
async fn the_schedule_looks_for_bloated_indexes_once_a_week() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    let weekly = Policy {
        reindex_every: Some(Duration::from_secs(7 * DAY)),
        ..policy(false)
    };
    let first = maintain_now(&t, &weekly).await;
    assert!(first.reindex_ran, "no run had looked yet");
    let second = maintain_now(&t, &weekly).await;
    assert!(!second.reindex_ran, "the last look is not a week old");
    sql(
        &t.db,
        "UPDATE public.maintenance_runs SET started_at = started_at - interval '8 days'",
    )
    .await;
    let third = maintain_now(&t, &weekly).await;
    assert!(third.reindex_ran, "a week has passed");
    let never = maintain_now(&t, &policy(false)).await;
    assert!(!never.reindex_ran);
}

/// A run as soon as the previous run's lock session has gone (its
/// connection closes in the background after the run returns).
async fn maintain_now(
    t: &atrium_testkit::TestDatabase,
    policy: &Policy,
) -> atrium_store::fleet::maintain::MaintainReport {
    for _ in 0..100 {
        if let Some(report) = maintain(&t.admin, policy).await.unwrap() {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the maintain lock stayed taken");
}

#[tokio::test]
async fn maintain_drops_what_an_interrupted_rehearsal_left_after_a_day() {
    let t = migrated_database().await;
    // Named as the rehearsal names them, so a name the pattern misses fails here.
    use atrium_store::fleet::migrate::rehearse::scratch_schema_name;
    let old = scratch_schema_name(1, chrono::Utc::now() - chrono::Duration::hours(25));
    let recent = scratch_schema_name(1, chrono::Utc::now());
    sql(
        &t.db,
        &format!("CREATE SCHEMA {old}; CREATE SCHEMA {recent};"),
    )
    .await;
    let report = maintain(&t.admin, &policy(false)).await.unwrap().unwrap();
    assert_eq!(report.rehearsals_dropped, vec![old]);
    assert_eq!(
        scalar_i64(
            &t.db,
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{recent}'")
        )
        .await,
        1,
        "a rehearsal that may still run is left alone"
    );
}
