//! Companies: the organisations a team sells to, with an optional parent.

use super::{Entity, Field, Filter, Kind, RecordType, Search, SortOption, Test};
use crate::custom_fields::CustomEntity;

pub static COMPANY: Entity = Entity {
    record: RecordType::Company,
    name: "company",
    table: "companies",
    schema: "Company",
    fields: &[
        Field::text("name", 255).required(),
        Field::text("domain", 255),
        Field::text("industry", 100),
        Field::text("street", 255),
        Field::text("city", 100),
        Field::text("state", 100),
        Field::text("country", 100),
        Field::text("postal_code", 20),
        Field::new("parent_company_id", Kind::Ref(RecordType::Company)),
        Field::new("custom_fields", Kind::CustomFields).default("{}"),
        Field::text("company_size", 20),
        Field::new(
            "employee_count",
            Kind::Int {
                min: 0,
                max: i32::MAX as i64,
            },
        ),
        Field::new("annual_revenue", Kind::Money { int_digits: 13 }),
        Field::new("revenue_currency", Kind::Currency).default("USD"),
    ],
    custom: Some(CustomEntity::Company),
    sorts: &[
        SortOption::new("-created_at", "created_at", true),
        SortOption::new("created_at", "created_at", false),
        SortOption::new("name", "name", false),
        SortOption::new("-name", "name", true),
    ],
    filters: &[
        Filter::new("industry", "industry", Test::Equals),
        Filter::new("domain", "domain", Test::EqualsAnyCase),
        Filter::new("parent_company_id", "parent_company_id", Test::Equals),
    ],
    search: Some(Search::Prefix(&["name", "domain"])),
};
