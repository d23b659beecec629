//! Deals: opportunities moving through the organisation's pipeline.

use super::{Entity, Field, Filter, Kind, RecordType, Search, SortOption, Test};
use crate::custom_fields::CustomEntity;

pub static DEAL: Entity = Entity {
    record: RecordType::Deal,
    name: "deal",
    table: "deals",
    schema: "Deal",
    fields: &[
        Field::text("title", 200).required(),
        Field::new("value", Kind::Money { int_digits: 10 }),
        Field::new("probability", Kind::Percent),
        Field::new("stage", Kind::Stage).required(),
        Field::new("primary_contact_id", Kind::Ref(RecordType::Contact)),
        Field::new("company_id", Kind::Ref(RecordType::Company)),
        Field::new("owner_id", Kind::UserRef),
        Field::new("expected_close_date", Kind::Date),
        Field::new("actual_close_date", Kind::Date),
        Field::text("deal_source", 100),
        Field::text("description", 100_000),
        Field::text("notes", 100_000),
        Field::new("custom_fields", Kind::CustomFields).default("{}"),
    ],
    custom: Some(CustomEntity::Deal),
    sorts: &[
        SortOption::new("-created_at", "created_at", true),
        SortOption::new("created_at", "created_at", false),
        SortOption::new("title", "title", false),
        SortOption::new("-title", "title", true),
    ],
    filters: &[
        Filter::new("stage", "stage", Test::Equals),
        Filter::new("owner_id", "owner_id", Test::Equals),
        Filter::new("company_id", "company_id", Test::Equals),
        Filter::new("primary_contact_id", "primary_contact_id", Test::Equals),
        Filter::new("expected_close_from", "expected_close_date", Test::AtLeast),
        Filter::new("expected_close_to", "expected_close_date", Test::AtMost),
    ],
    search: Some(Search::Contains("title")),
};
