//! The fleet commands with tenants on several clusters: placement, moving,
//! draining, and migrating while one cluster is down.

use std::process::Output;

use atrium_testkit::{DataCluster, migrated_database};

use crate::helpers::*;

/// `atrium` with the home database and clusters `eu` and `us` declared in
/// the environment.
fn on_fleet(home: &str, clusters: &[&DataCluster], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("ATRIUM_DATABASE_URL", home);
    for cluster in clusters {
        cmd.env(
            format!(
                "ATRIUM_CLUSTER_{}_DATABASE_URL",
                cluster.name.to_uppercase()
            ),
            &cluster.url,
        );
    }
    cmd.args(args).output().expect("running atrium")
}

fn create(subdomain: &str, cluster: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "tenant",
        "create",
        "--name",
        "Org",
        "--subdomain",
        subdomain,
        "--admin-email",
        "admin@org.example",
        "--admin-password",
        "correct horse battery",
        "--json",
    ]
    .map(String::from)
    .to_vec();
    if let Some(cluster) = cluster {
        args.extend(["--cluster".into(), cluster.into()]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_placed_moved_drained_and_migrated_across_clusters() {
    let (eu, us) = tokio::join!(DataCluster::start("eu"), DataCluster::start("us"));
    let home = migrated_database().await;
    let run = |args: &[&str]| on_fleet(&home.url, &[&eu, &us], args);
    let run_owned = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        on_fleet(&home.url, &[&eu, &us], &args)
    };

    // A declared cluster is set up (and recorded) by `atrium migrate`.
    let migrated = run(&["migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(
        stderr(&migrated).contains("cluster eu: registry applied"),
        "{}",
        stderr(&migrated)
    );

    // Placement: asked for, else the least filled (ties by name).
    let alpha = json(&run_owned(create("alpha", Some("eu"))));
    assert_eq!(alpha["tenant"]["cluster"], "eu", "{alpha}");
    let beta = json(&run_owned(create("beta", None)));
    assert_eq!(beta["tenant"]["cluster"], "default", "{beta}");
    let gamma = json(&run_owned(create("gamma", None)));
    assert_eq!(gamma["tenant"]["cluster"], "us", "{gamma}");
    assert_fails(
        &run_owned(create("delta", Some("mars"))),
        2,
        "no cluster is called \"mars\"",
    );
    let listed = json(&run(&["tenant", "list", "--json"]));
    let clusters: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(clusters, ["eu", "default", "us"]);
    let table = stdout(&run(&["tenant", "list"]));
    assert!(table.contains("CLUSTER"), "{table}");

    // A move, with its figures on stdout and its progress on stderr.
    let moved = run(&["tenant", "move", "alpha", "--to", "us", "--json"]);
    let result = json(&moved);
    assert_eq!(
        (result["from"].as_str(), result["to"].as_str()),
        (Some("eu"), Some("us"))
    );
    assert_eq!(result["verified"], true, "{result}");
    for key in ["copy_ms", "rows", "bytes", "longest_pause_ms"] {
        assert!(result[key].is_u64(), "{key} in {result}");
    }
    let progress = stderr(&moved);
    assert!(progress.contains("alpha: copying"), "{progress}");
    assert!(progress.contains("moved alpha from eu to us"), "{progress}");
    assert_fails(
        &run(&["tenant", "move", "alpha", "--to", "us"]),
        2,
        "already on cluster us",
    );
    assert_fails(
        &run(&["tenant", "move", "alpha", "--to", "mars"]),
        2,
        "no cluster mars",
    );
    // A move stopped half-way (its record says it was copying) is taken
    // over by the next run, which cleans up and completes it.
    let gamma_id = gamma["tenant"]["id"].as_i64().unwrap() as i32;
    atrium_store::Database::connect(&home.url, 1)
        .await
        .unwrap()
        .connection()
        .await
        .unwrap()
        .execute(
            "INSERT INTO public.tenant_moves (tenant_id, source, target, state, max_pause_ms)
             VALUES ($1, 'us', 'eu', 'copying', 2000)",
            &[&gamma_id],
        )
        .await
        .unwrap();
    let resumed = json(&run(&["tenant", "move", "gamma", "--to", "eu", "--json"]));
    assert_eq!(
        (resumed["to"].as_str(), resumed["verified"].as_bool()),
        (Some("eu"), Some(true)),
        "{resumed}"
    );

    // wal_level on the home database is the machine's (replica): refused
    // with what to change, and nothing is left behind.
    let from_home = run(&["tenant", "move", "beta", "--to", "eu"]);
    if !from_home.status.success() {
        assert_fails(&from_home, 1, "wal_level");
    }

    // Draining us: a dry run says where its tenants would go.
    let plan = json(&run(&["cluster", "drain", "us", "--dry-run", "--json"]));
    let plan = plan.as_array().unwrap();
    assert_eq!(plan.len(), 1, "alpha only: {plan:?}");
    assert!(plan.iter().all(|step| step["to"] != "us"), "{plan:?}");
    let listed = json(&run(&["cluster", "list", "--json"]));
    let us_view = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "us")
        .unwrap();
    assert_eq!(
        us_view["accepting"], false,
        "a drained cluster takes no tenants"
    );

    // Migrating while eu is down: the others are migrated, eu is named.
    eu.server.stop().unwrap();
    let migrated = run(&["migrate"]);
    let report = stderr(&migrated);
    assert_eq!(migrated.status.code(), Some(1), "{report}");
    let last = report.trim_end().lines().last().unwrap();
    assert!(last.contains("could not be migrated, first eu"), "{report}");
    assert!(
        report.contains("cluster us: registry up to date"),
        "{report}"
    );
    let status = json(&run(&["migrate", "status", "--json"]));
    let eu_status = status["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"] == "eu")
        .unwrap();
    assert!(eu_status["error"].is_string(), "{status}");
    // Its tenants' commands fail, the others' work.
    assert!(run(&["tenant", "show", "alpha"]).status.success());
    eu.server.start_again().unwrap();
    // Back up (once its socket is there), it is migrated again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let migrated = run(&["migrate"]);
        if migrated.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            stderr(&migrated)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
