//! Tenant archives: export, import, and what an import refuses.

use atrium_store::AdminDatabase;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use atrium_domain::Subdomain;
use atrium_store::Database;
use atrium_store::fleet::archive::{self, ARCHIVED_TABLES, ImportTarget, NOT_ARCHIVED};
use atrium_store::fleet::migrate::{self, MigrateOptions, MigrationSets};
use atrium_store::registry::{self, TenantEntry};
use atrium_testkit::migrated_database;
use sha2::{Digest, Sha256};

use crate::helpers::{new_tenant, scalar_i64, sql, with_extra_tenant_migration};

/// A tenant with rows in every archived table, a company hierarchy whose
/// parent has the higher id, and text that COPY must escape.
async fn fill(db: &Database, schema: &str) {
    sql(
        db,
        &format!(
            "SET search_path = {schema};
             INSERT INTO users (email, password_hash, first_name, last_name, role, created_by)
               VALUES ('rep@x.example', 'hash', 'Rép', 'Ünïcode', 'sales_rep', 1);
             INSERT INTO custom_field_definitions (entity, key, label, type, options, created_by)
               VALUES ('contact', 'tier', 'Tier', 'select', '[\"a\",\"b\"]', 1);
             INSERT INTO companies (name, created_by) VALUES ('Child', 1), ('Parent', 1);
             UPDATE companies SET parent_company_id = 2 WHERE id = 1;
             INSERT INTO contacts (first_name, last_name, email, company_id, custom_fields, created_by)
               VALUES ('Zoë', 'O''Brien', 'z@x.com', 1, '{{\"tier\": \"a\"}}', 2),
                      (E'tab\\there', E'new\\nline \\\\ back', NULL, NULL, '{{}}', 1),
                      ('\\.', 'Robert''); DROP TABLE users;--', 'bobby@x.com', 2, '{{}}', 1);
             INSERT INTO deals (title, stage, value, owner_id, primary_contact_id, company_id, created_by)
               VALUES ('Big deal', 'won', 1000.50, 2, 1, 2, 1);
             INSERT INTO deal_contacts (deal_id, contact_id, role, created_by) VALUES (1, 2, 'champion', 1);
             INSERT INTO saved_views (name, path, query, shared, created_by)
               VALUES ('Open deals', '/deals', 'next_step=overdue', true, 2);
             INSERT INTO activities (kind, subject, contact_id, deal_id, created_by)
               VALUES ('call', 'Intro call', 1, 1, 2);
             INSERT INTO audit_events (entity, entity_id, action, user_id, changes)
               VALUES ('contact', 1, 'create', 2, '{{}}');
             UPDATE contacts SET deleted_at = now() WHERE id = 3;"
        ),
    )
    .await;
}

async fn export_bytes(db: &Database, tenant: &TenantEntry) -> Vec<u8> {
    let mut out = Vec::new();
    archive::export(&AdminDatabase::new(db.clone()), tenant, &mut out)
        .await
        .unwrap();
    out
}

async fn import_bytes(
    db: &Database,
    sets: &MigrationSets,
    bytes: &[u8],
    subdomain: &str,
) -> Result<TenantEntry, atrium_store::StoreError> {
    let subdomain = Subdomain::parse(subdomain).unwrap();
    archive::import(
        &AdminDatabase::new(db.clone()),
        sets,
        bytes,
        &ImportTarget {
            subdomain: &subdomain,
            name: None,
        },
    )
    .await
    .map(|(tenant, _)| tenant)
}

/// Rows of `table` in one schema and not the other, both ways.
async fn differing_rows(db: &Database, a: &str, b: &str, table: &str) -> i64 {
    scalar_i64(
        db,
        &format!(
            "SELECT (SELECT count(*) FROM (TABLE {a}.{table} EXCEPT ALL TABLE {b}.{table}) x)
                  + (SELECT count(*) FROM (TABLE {b}.{table} EXCEPT ALL TABLE {a}.{table}) y)"
        ),
    )
    .await
}

/// Schemas, roles and registry rows: what a failed import must not leave.
async fn footprint(db: &Database) -> (i64, i64, i64) {
    (
        scalar_i64(db, "SELECT count(*) FROM public.tenants").await,
        scalar_i64(
            db,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'",
        )
        .await,
        scalar_i64(
            db,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE (SELECT role_prefix FROM public.installation) || '\\_tenant\\_%'",
        )
        .await,
    )
}

#[tokio::test]
async fn an_import_equals_its_source_row_for_row_in_every_table() {
    let t = migrated_database().await;
    let source = new_tenant(&t.db, "source").await;
    fill(&t.db, &source.schema_name).await;
    let bytes = export_bytes(&t.db, &source).await;
    let copy = import_bytes(&t.db, &MigrationSets::embedded(), &bytes, "copy")
        .await
        .unwrap();
    assert_eq!(copy.name, source.name);
    for table in ARCHIVED_TABLES {
        assert!(
            scalar_i64(
                &t.db,
                &format!("SELECT count(*) FROM {}.{table}", copy.schema_name)
            )
            .await
                > 0,
            "{table} is empty: the test should fill every table"
        );
        assert_eq!(
            differing_rows(&t.db, &source.schema_name, &copy.schema_name, table).await,
            0,
            "{table} differs"
        );
    }
    // The generated search column is computed again, and the counters and
    // sequences follow the loaded rows.
    assert_eq!(
        scalar_i64(
            &t.db,
            &format!(
                "SELECT count(*) FROM {}.contacts WHERE search_vector @@ to_tsquery('simple', 'zoë')",
                copy.schema_name
            )
        )
        .await,
        1
    );
    let copy = registry::find_by_id(&t.db, copy.id).await.unwrap();
    assert_eq!((copy.counts.contacts, copy.counts.users), (2, 2));
    sql(
        &t.db,
        &format!(
            "INSERT INTO {}.contacts (first_name, last_name, created_by) VALUES ('New', 'Row', 1)",
            copy.schema_name
        ),
    )
    .await;
    assert_eq!(
        scalar_i64(
            &t.db,
            &format!("SELECT max(id)::bigint FROM {}.contacts", copy.schema_name)
        )
        .await,
        4
    );
    // Sessions are credentials of the source and stay behind.
    assert_eq!(
        scalar_i64(
            &t.db,
            &format!("SELECT count(*) FROM {}.sessions", copy.schema_name)
        )
        .await,
        0
    );
}

#[tokio::test]
async fn the_archived_tables_are_every_table_of_a_tenant_schema() {
    let t = migrated_database().await;
    let session = t.db.connection().await.unwrap();
    let rows = session
        .query(
            "SELECT relname::text FROM pg_class
              WHERE relnamespace = 'template'::regnamespace AND relkind = 'r' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut in_template: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut known: Vec<String> = ARCHIVED_TABLES
        .iter()
        .chain(NOT_ARCHIVED)
        .map(|s| s.to_string())
        .collect();
    in_template.sort();
    known.sort();
    assert_eq!(
        in_template, known,
        "a new table must be archived or left out on purpose"
    );
}

#[tokio::test]
async fn an_export_taken_while_the_tenant_is_written_is_one_consistent_snapshot() {
    let t = migrated_database().await;
    let source = new_tenant(&t.db, "busy").await;
    fill(&t.db, &source.schema_name).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, schema, stop) = (t.db.clone(), source.schema_name.clone(), stop.clone());
        tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                // A contact and its activity, committed together.
                sql(
                    &db,
                    &format!(
                        "WITH c AS (INSERT INTO {schema}.contacts (first_name, last_name, created_by)
                                    VALUES ('Live', 'Write', 1) RETURNING id)
                         INSERT INTO {schema}.activities (kind, subject, contact_id, created_by)
                         SELECT 'note', 'pair', id, 1 FROM c"
                    ),
                )
                .await;
                written += 1;
            }
            written
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let bytes = export_bytes(&t.db, &source).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 0);
    let copy = import_bytes(&t.db, &MigrationSets::embedded(), &bytes, "busy-copy")
        .await
        .unwrap();
    let (contacts, pairs) = (
        scalar_i64(
            &t.db,
            &format!(
                "SELECT count(*) FROM {}.contacts WHERE first_name = 'Live'",
                copy.schema_name
            ),
        )
        .await,
        scalar_i64(
            &t.db,
            &format!(
                "SELECT count(*) FROM {}.activities WHERE subject = 'pair'",
                copy.schema_name
            ),
        )
        .await,
    );
    assert_eq!(
        contacts, pairs,
        "every contact with its activity, none without"
    );
    // The archive holds exactly the source's rows as of one moment.
    let snapshot_max = scalar_i64(
        &t.db,
        &format!("SELECT max(id)::bigint FROM {}.contacts", copy.schema_name),
    )
    .await;
    for table in ["contacts", "activities"] {
        assert_eq!(
            scalar_i64(
                &t.db,
                &format!(
                    "SELECT count(*) FROM (
                       (SELECT * FROM {s}.{table} WHERE {key} <= {snapshot_max}
                        EXCEPT ALL TABLE {c}.{table})
                       UNION ALL
                       (TABLE {c}.{table} EXCEPT ALL SELECT * FROM {s}.{table})) d",
                    s = source.schema_name,
                    c = copy.schema_name,
                    key = if table == "contacts" {
                        "id"
                    } else {
                        "coalesce(contact_id, 0)"
                    },
                )
            )
            .await,
            0,
            "{table}"
        );
    }
    assert!(
        snapshot_max
            < scalar_i64(
                &t.db,
                &format!(
                    "SELECT max(id)::bigint FROM {}.contacts",
                    source.schema_name
                )
            )
            .await
    );
}

/// Rewrites an archive's checksums after an edit, as a careful forger
/// would: the import must still refuse names the schema does not have.
fn reseal(archive: &str) -> Vec<u8> {
    let mut out = String::new();
    let mut tables = Vec::new();
    let mut current: Option<(String, Sha256, u64)> = None;
    for line in archive.lines() {
        if line.starts_with("END ") {
            let whole = hex::encode(Sha256::digest(out.as_bytes()));
            let manifest = serde_json::json!({"tables": tables, "sha256": whole});
            out.push_str(&format!("END {manifest}\n"));
            break;
        }
        out.push_str(line);
        out.push('\n');
        if let Some(json) = line.strip_prefix("TABLE ") {
            let header: serde_json::Value = serde_json::from_str(json).unwrap();
            current = Some((
                header["name"].as_str().unwrap().to_owned(),
                Sha256::new(),
                0,
            ));
        } else if line == "\\." {
            let (name, hash, rows) = current.take().unwrap();
            tables.push(serde_json::json!({"name": name, "rows": rows, "sha256": hex::encode(hash.finalize())}));
        } else if let Some((_, hash, rows)) = current.as_mut() {
            hash.update(line.as_bytes());
            hash.update(b"\n");
            *rows += 1;
        }
    }
    out.into_bytes()
}

#[tokio::test]
async fn damaged_or_altered_archives_are_refused_and_leave_nothing() {
    let t = migrated_database().await;
    let source = new_tenant(&t.db, "source").await;
    fill(&t.db, &source.schema_name).await;
    let bytes = export_bytes(&t.db, &source).await;
    let text = String::from_utf8(bytes.clone()).unwrap();
    let before = footprint(&t.db).await;
    let sets = MigrationSets::embedded();
    let edited = text.replace("Big deal", "Bog deal").into_bytes();
    let mut truncated_in_rows = bytes.clone();
    truncated_in_rows.truncate(bytes.len() / 2);
    let mut without_end = bytes.clone();
    without_end.truncate(text.rfind("END ").unwrap());
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"one more line\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("edited row", edited, "checksum"),
        ("cut in the rows", truncated_in_rows, "truncated"),
        ("no closing line", without_end, "truncated"),
        ("trailing bytes", trailing, "after its closing line"),
        (
            "not an archive",
            b"id,name\n1,x\n".to_vec(),
            "not an Atrium",
        ),
        ("empty", Vec::new(), "truncated"),
        (
            "newer format",
            text.replacen("ARCHIVE 1", "ARCHIVE 2", 1).into_bytes(),
            "format 2",
        ),
        (
            "unknown column, resealed",
            reseal(&text.replacen("\"email\",", "\"email\",\"is_superuser\",", 1)),
            "unknown column users.is_superuser",
        ),
        (
            "unknown table, resealed",
            reseal(&text.replacen("\"name\":\"audit_events\"", "\"name\":\"pg_authid\"", 1)),
            "unknown table pg_authid",
        ),
        (
            "sessions, resealed",
            reseal(&text.replacen("\"name\":\"audit_events\"", "\"name\":\"sessions\"", 1)),
            "may not",
        ),
        (
            "broken reference, resealed",
            reseal(&text.replacen("\t2\tchampion", "\t99\tchampion", 1)),
            "cannot be loaded",
        ),
        (
            "newer schema version",
            text.replacen(
                &format!(
                    "\"schema_version\":{}",
                    MigrationSets::embedded().latest_tenant_version()
                ),
                "\"schema_version\":99",
                1,
            )
            .into_bytes(),
            "schema version 99",
        ),
    ];
    for (case, archive, expected) in cases {
        let err = import_bytes(&t.db, &sets, &archive, "victim")
            .await
            .expect_err(case);
        assert!(
            matches!(&err, atrium_store::StoreError::Damaged(m) if m.contains(expected)),
            "{case}: {err}"
        );
        assert_eq!(footprint(&t.db).await, before, "{case} left something");
    }
    // The untouched archive still imports.
    import_bytes(&t.db, &sets, &bytes, "victim").await.unwrap();
}

#[tokio::test]
async fn an_archive_of_an_older_schema_version_imports_and_is_migrated() {
    let t = migrated_database().await;
    let source = new_tenant(&t.db, "old").await;
    fill(&t.db, &source.schema_name).await;
    let bytes = export_bytes(&t.db, &source).await;
    // The installation moves on a version.
    let sets = with_extra_tenant_migration(
        "ALTER TABLE contacts ADD COLUMN nickname VARCHAR(100) NOT NULL DEFAULT '';",
    );
    let report = migrate::migrate_sets(&t.admin, sets, &MigrateOptions::default(), &|_, _| {})
        .await
        .unwrap();
    assert!(report.failures.is_empty());
    let copy = import_bytes(&t.db, &sets, &bytes, "old-copy")
        .await
        .unwrap();
    assert_eq!(copy.schema_version, sets.latest_tenant_version());
    assert_eq!(
        scalar_i64(
            &t.db,
            &format!(
                "SELECT count(*) FROM {}.contacts WHERE nickname = '' AND first_name = 'Zoë'",
                copy.schema_name
            )
        )
        .await,
        1
    );
    assert_eq!(
        scalar_i64(
            &t.db,
            &format!(
                "SELECT count(*) FROM {}.schema_migrations",
                copy.schema_name
            )
        )
        .await,
        i64::from(sets.latest_tenant_version())
    );
    assert!(
        atrium_store::fleet::check::check(&t.admin)
            .await
            .unwrap()
            .drifted
            .is_empty()
    );
}

async fn backup_bytes(db: &Database, tenant: &TenantEntry) -> Vec<u8> {
    let mut out = Vec::new();
    atrium_store::fleet::backup::backup(&AdminDatabase::new(db.clone()), tenant, &mut out)
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn a_backup_restores_a_deleted_tenant_and_never_replaces_a_live_one() {
    let t = migrated_database().await;
    let source = new_tenant(&t.db, "kept").await;
    fill(&t.db, &source.schema_name).await;
    // A reference copy to compare the restored tenant with.
    let reference = import_bytes(
        &t.db,
        &MigrationSets::embedded(),
        &export_bytes(&t.db, &source).await,
        "reference",
    )
    .await
    .unwrap();
    let backup = backup_bytes(&t.db, &source).await;

    let live = atrium_store::fleet::backup::restore(&t.admin, backup.as_slice())
        .await
        .expect_err("the tenant is live");
    assert!(
        matches!(&live, atrium_store::StoreError::Conflict(m) if m.contains("live")),
        "{live}"
    );

    registry::delete(
        &atrium_store::Fleet::single(t.db.clone(), t.admin.clone()),
        source.id,
    )
    .await
    .unwrap();
    let before = footprint(&t.db).await;
    let mut truncated = backup.clone();
    truncated.truncate(backup.len() * 2 / 3);
    for (case, bytes) in [
        ("truncated", truncated),
        ("not a backup", b"hello\n".to_vec()),
        (
            "header only",
            backup[..backup.iter().position(|b| *b == b'\n').unwrap() + 1].to_vec(),
        ),
    ] {
        let err = atrium_store::fleet::backup::restore(&t.admin, bytes.as_slice())
            .await
            .expect_err(case);
        assert!(
            matches!(err, atrium_store::StoreError::Damaged(_)),
            "{case}: {err}"
        );
        assert_eq!(footprint(&t.db).await, before, "{case} left something");
    }

    let restored = atrium_store::fleet::backup::restore(&t.admin, backup.as_slice())
        .await
        .unwrap();
    assert_eq!(
        (
            restored.id,
            restored.subdomain.as_str(),
            restored.schema_name.as_str()
        ),
        (source.id, "kept", source.schema_name.as_str())
    );
    for table in ARCHIVED_TABLES {
        assert_eq!(
            differing_rows(&t.db, &reference.schema_name, &restored.schema_name, table).await,
            0,
            "{table} differs"
        );
    }
    assert_eq!(
        restored.counts.contacts,
        registry::count_rows(&t.db, &restored.schema_name)
            .await
            .unwrap()
            .contacts
    );
    // The tenant role works on the restored tables, and only on its data.
    let tenant_role = scalar_text(
        &t.db,
        &format!(
            "SELECT role_prefix || '_tenant_{}' FROM public.installation",
            restored.id
        ),
    )
    .await;
    sql(
        &t.db,
        &format!(
            "BEGIN; SET LOCAL ROLE \"{tenant_role}\";
             INSERT INTO {s}.contacts (first_name, last_name, created_by) VALUES ('After', 'Restore', 1);
             COMMIT;",
            s = restored.schema_name
        ),
    )
    .await;
    let session = t.db.connection().await.unwrap();
    let denied = session
        .batch_execute(&format!(
            "BEGIN; SET LOCAL ROLE \"{tenant_role}\"; SELECT * FROM {}.schema_migrations",
            restored.schema_name
        ))
        .await;
    let _ = session.batch_execute("ROLLBACK").await;
    assert!(
        denied.is_err(),
        "the migration history is not the tenant's to read"
    );
}

async fn scalar_text(db: &Database, query: &str) -> String {
    db.connection()
        .await
        .unwrap()
        .query_one(query, &[])
        .await
        .unwrap()
        .get(0)
}
