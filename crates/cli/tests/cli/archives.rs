use std::os::unix::fs::PermissionsExt;

use atrium_testkit::migrated_database;

use crate::helpers::{assert_fails, atrium, json, stderr, stdout};

fn create_acme(url: &str) {
    crate::helpers::create_tenant(url, "acme");
}

#[tokio::test]
async fn export_writes_an_owner_only_archive_that_imports_under_a_new_subdomain() {
    let t = migrated_database().await;
    let url = &t.url;
    create_acme(url);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.atrium");
    let file_arg = file.to_str().unwrap();

    let exported = json(&atrium(
        url,
        &["tenant", "export", "acme", "--out", file_arg, "--json"],
    ));
    assert_eq!(exported["header"]["source"]["subdomain"], "acme");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "archives hold password hashes");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file is left"
    );

    let imported = json(&atrium(
        url,
        &[
            "tenant",
            "import",
            file_arg,
            "--subdomain",
            "acme-copy",
            "--name",
            "Acme Copy",
            "--json",
        ],
    ));
    assert_eq!(imported["tenant"]["subdomain"], "acme-copy");
    assert_eq!(imported["tenant"]["name"], "Acme Copy");
    assert_eq!(imported["tenant"]["user_count"], 1);

    // Bad input: one line, nothing written.
    assert_fails(
        &atrium(url, &["tenant", "import", file_arg, "--subdomain", "acme"]),
        1,
        "already taken",
    );
    assert_fails(
        &atrium(url, &["tenant", "import", file_arg, "--subdomain", "x_y"]),
        2,
        "subdomain",
    );
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.atrium");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    assert_fails(
        &atrium(
            url,
            &[
                "tenant",
                "import",
                cut.to_str().unwrap(),
                "--subdomain",
                "cut",
            ],
        ),
        1,
        "truncated",
    );
    assert_fails(
        &atrium(
            url,
            &[
                "tenant",
                "import",
                "/nonexistent/a.atrium",
                "--subdomain",
                "nope",
            ],
        ),
        1,
        "cannot read",
    );
    assert_fails(
        &atrium(
            url,
            &[
                "tenant",
                "export",
                "nobody",
                "--out",
                dir.path().join("n").to_str().unwrap(),
            ],
        ),
        1,
        "not found",
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "a failed export leaves no file"
    );
    let list = json(&atrium(url, &["tenant", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn backup_and_restore_bring_a_deleted_tenant_back() {
    let t = migrated_database().await;
    let url = &t.url;
    create_acme(url);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.backup");
    let file_arg = file.to_str().unwrap();
    let backup = atrium(url, &["tenant", "backup", "acme", "--out", file_arg]);
    assert!(backup.status.success(), "{}", stderr(&backup));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    assert_fails(
        &atrium(url, &["tenant", "restore", file_arg]),
        1,
        "live tenant",
    );
    assert!(
        atrium(url, &["tenant", "delete", "acme", "--yes"])
            .status
            .success()
    );
    let bogus = dir.path().join("bogus.backup");
    std::fs::write(&bogus, b"ATRIUM TENANT BACKUP 1\n{}\n").unwrap();
    assert_fails(
        &atrium(url, &["tenant", "restore", bogus.to_str().unwrap()]),
        1,
        "header",
    );
    let restored = json(&atrium(url, &["tenant", "restore", file_arg, "--json"]));
    // pg_dump prints some constraints differently (`IN` lists of varchar
    // as casts of each element): the same meaning is no drift.
    let checked = atrium(url, &["check", "--json"]);
    assert!(checked.status.success(), "{}", stdout(&checked));
    assert_eq!(
        (
            &restored["subdomain"],
            &restored["schema_name"],
            &restored["user_count"]
        ),
        (
            &serde_json::json!("acme"),
            &serde_json::json!("tenant_1"),
            &serde_json::json!(1)
        )
    );
}
