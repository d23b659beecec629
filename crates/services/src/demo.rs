//! The `demo` tenant of `atrium serve --demo`: a realistic, varied sample
//! made once through the same use cases as the API.

use serde_json::json;

use atrium_store::registry::directory::TenantDirectory;
use atrium_store::{Fleet, registry, users};

use crate::records::{self, ACTIVITY, COMPANY, CONTACT, DEAL};
use crate::tenants::{self, CreateTenant};
use crate::{CurrentUser, Scope, ServiceError};

pub const SUBDOMAIN: &str = "demo";
pub const ADMIN_EMAIL: &str = "admin@demo.example";
/// Published on purpose: the demo holds made-up data only.
pub const ADMIN_PASSWORD: &str = "demo-password";

/// A tiny deterministic generator, so every demo looks the same.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const INDUSTRIES: &[&str] = &[
    "Software",
    "Manufacturing",
    "Retail",
    "Healthcare",
    "Finance",
    "Logistics",
    "Energy",
];
const CITIES: &[(&str, &str)] = &[
    ("Berlin", "Germany"),
    ("Austin", "USA"),
    ("Lyon", "France"),
    ("Osaka", "Japan"),
    ("Toronto", "Canada"),
    ("Melbourne", "Australia"),
    ("Zürich", "Switzerland"),
];
const FIRST: &[&str] = &[
    "Ada", "Ben", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi",
    "Lena", "Mateo", "Nora", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tamar", "Ugo", "Vera",
    "Wei", "Yara", "Zoe", "John",
];
const LAST: &[&str] = &[
    "Smith", "Müller", "García", "Tanaka", "Okafor", "Novak", "Rossi", "Dubois", "Kowalski",
    "Andersen", "Silva", "Nakamura", "O'Brien", "Haddad", "Larsen", "Petrov", "Costa", "Fischer",
    "Moreau", "Singh",
];
const PREFIXES: &[&str] = &[
    "Blue", "North", "Quantum", "Bright", "Iron", "Silver", "Green", "Atlas", "Nova", "Summit",
];
const SUFFIXES: &[&str] = &[
    "Systems",
    "Labs",
    "Works",
    "Partners",
    "Group",
    "Dynamics",
    "Foods",
    "Logistics",
];
const STAGES: &[&str] = &[
    "lead",
    "qualified",
    "proposal",
    "negotiation",
    "won",
    "lost",
];
const SOURCES: &[&str] = &["website", "referral", "trade show", "cold call", "partner"];
const KINDS: &[&str] = &["call", "email", "meeting", "task", "note"];

/// Makes the demo tenant unless it exists; says whether it made it.
pub async fn ensure(fleet: &Fleet) -> Result<bool, ServiceError> {
    if registry::find_by_subdomain(&fleet.home().db, SUBDOMAIN)
        .await
        .is_ok()
    {
        return Ok(false);
    }
    let created = tenants::create(
        fleet,
        CreateTenant {
            name: "Demo Trading Co.".into(),
            subdomain: SUBDOMAIN.into(),
            tier: Some("medium".into()),
            admin_email: ADMIN_EMAIL.into(),
            admin_first_name: "Demo".into(),
            admin_last_name: "Admin".into(),
            admin_password: ADMIN_PASSWORD.into(),
            cluster: None,
        },
    )
    .await?;
    let directory = TenantDirectory::start(fleet.home().db.clone()).await?;
    let tenant = directory
        .resolve(SUBDOMAIN)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the demo tenant just made is not there"))?;
    let scope = Scope {
        db: tenants::cluster_of(fleet, &created.tenant)?.db.clone(),
        tenant,
        placement: None,
        statement_timeout: std::time::Duration::from_secs(120),
    };
    scope
        .run(async |tx| fill(tx, created.admin_user_id).await)
        .await?;
    Ok(true)
}

async fn fill(tx: &atrium_store::TenantTx, admin_id: i32) -> Result<(), ServiceError> {
    let admin = users::get(tx, admin_id, false)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the demo admin is missing"))?;
    let me = CurrentUser::new(admin, 0)?;
    let mut dice = Dice(2024);
    let mut companies = Vec::new();
    for i in 0..36 {
        let (city, country) = CITIES[(dice.below(CITIES.len() as u64)) as usize];
        let name = format!("{} {} {}", dice.pick(PREFIXES), dice.pick(SUFFIXES), i + 1);
        let domain = format!("{}.example", name.to_lowercase().replace(' ', "-"));
        // The first six are groups; later companies often belong to one.
        let parent = (i >= 6 && dice.below(3) == 0).then(|| companies[(dice.below(6)) as usize]);
        let body = json!({
            "name": name, "domain": domain, "industry": dice.pick(INDUSTRIES),
            "city": city, "country": country, "parent_company_id": parent,
            "employee_count": 10 + dice.below(5000),
            "annual_revenue": format!("{}.00", 100_000 + dice.below(50_000_000)),
        });
        let company = records::create(tx, &me, &COMPANY, body).await?;
        companies.push(company["id"].as_i64().unwrap_or_default());
    }
    let mut contacts = Vec::new();
    for i in 0..300 {
        let first = dice.pick(FIRST);
        let last = dice.pick(LAST);
        let company = companies[(dice.below(companies.len() as u64)) as usize];
        let email = format!(
            "{}.{}{}@example.com",
            first.to_lowercase(),
            last.to_lowercase().replace(['\'', 'ü', 'í'], ""),
            i
        );
        let body = json!({
            "first_name": first, "last_name": last, "email": email,
            "phone": format!("+1 555 {:04}", dice.below(10_000)), "company_id": company,
        });
        let contact = records::create(tx, &me, &CONTACT, body).await?;
        contacts.push(contact["id"].as_i64().unwrap_or_default());
    }
    let mut deals = Vec::new();
    for i in 0..120 {
        let stage = STAGES[i % STAGES.len()];
        let month = 1 + dice.below(12);
        let body = json!({
            "title": format!("{} for {}", dice.pick(&["Renewal", "Expansion", "Pilot", "Licence", "Consulting"]), dice.pick(PREFIXES)),
            "stage": stage,
            "value": format!("{}.00", 1_000 + dice.below(250_000)),
            "company_id": companies[(dice.below(companies.len() as u64)) as usize],
            "primary_contact_id": contacts[(dice.below(contacts.len() as u64)) as usize],
            "expected_close_date": format!("2026-{month:02}-{:02}", 1 + dice.below(28)),
            "deal_source": dice.pick(SOURCES),
        });
        let deal = records::create(tx, &me, &DEAL, body).await?;
        deals.push(deal["id"].as_i64().unwrap_or_default());
    }
    for _ in 0..200 {
        let kind = dice.pick(KINDS);
        let body = json!({
            "kind": kind,
            "subject": format!("{} with {}", kind, dice.pick(FIRST)),
            "due_at": format!("2026-{:02}-{:02}T{:02}:00:00Z", 1 + dice.below(12), 1 + dice.below(28), 8 + dice.below(9)),
            "contact_id": contacts[(dice.below(contacts.len() as u64)) as usize],
            "deal_id": deals[(dice.below(deals.len() as u64)) as usize],
        });
        let activity = records::create(tx, &me, &ACTIVITY, body).await?;
        if dice.below(2) == 0 {
            let id = activity["id"].as_i64().unwrap_or_default() as i32;
            records::complete_activity(tx, &me, id).await?;
        }
    }
    Ok(())
}
