use atrium_store::registry;
use atrium_testkit::migrated_database;

use crate::helpers::{new_tenant, sql};

#[tokio::test]
async fn counters_match_a_full_count_after_inserts_deletes_and_restores() {
    let t = migrated_database().await;
    let a = new_tenant(&t.db, "alpha").await;
    let b = new_tenant(&t.db, "bravo").await;
    sql(
        &t.db,
        "INSERT INTO tenant_1.users (email, password_hash, first_name, last_name, role)
           SELECT 'u' || g || '@x.com', 'h', 'U', 'Ser', 'sales_rep' FROM generate_series(1, 4) g;
         UPDATE tenant_1.users SET active = false WHERE email = 'u1@x.com';
         UPDATE tenant_1.users SET deleted_at = now() WHERE email = 'u2@x.com';
         INSERT INTO tenant_1.companies (name, created_by) SELECT 'C' || g, 1 FROM generate_series(1, 7) g;
         INSERT INTO tenant_1.contacts (first_name, last_name, company_id, created_by)
           SELECT 'F', 'L' || g, 1, 1 FROM generate_series(1, 20) g;
         UPDATE tenant_1.contacts SET deleted_at = now() WHERE id <= 5;
         UPDATE tenant_1.contacts SET deleted_at = NULL WHERE id = 1;
         DELETE FROM tenant_1.contacts WHERE id = 20;
         INSERT INTO tenant_1.deals (title, stage, created_by) SELECT 'D' || g, 'lead', 1 FROM generate_series(1, 3) g;
         INSERT INTO tenant_1.activities (kind, subject, created_by) VALUES ('call', 'Hi', 1);
         INSERT INTO tenant_2.contacts (first_name, last_name, created_by) VALUES ('Only', 'One', 1);",
    )
    .await;
    for tenant in [&a, &b] {
        let counted = registry::count_rows(&t.db, &tenant.schema_name)
            .await
            .unwrap();
        let kept = registry::find_by_id(&t.db, tenant.id).await.unwrap().counts;
        assert_eq!(kept, counted, "{}", tenant.schema_name);
    }
    let kept = registry::find_by_id(&t.db, a.id).await.unwrap().counts;
    assert_eq!(
        (
            kept.users,
            kept.companies,
            kept.contacts,
            kept.deals,
            kept.activities
        ),
        (3, 7, 15, 3, 1)
    );
    let totals = registry::totals(&t.db).await.unwrap();
    assert_eq!(
        (
            totals.tenant_count,
            totals.total_contacts,
            totals.total_users
        ),
        (2, 16, 4)
    );
}
