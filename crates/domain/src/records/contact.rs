//! Contacts: the people a team talks to, found by name, email and typos.

use super::{Entity, Field, Filter, Kind, RecordType, Search, SortOption, Test};
use crate::custom_fields::CustomEntity;

pub static CONTACT: Entity = Entity {
    record: RecordType::Contact,
    name: "contact",
    table: "contacts",
    schema: "Contact",
    fields: &[
        Field::text("first_name", 100).required(),
        Field::text("last_name", 100).required(),
        Field::new("email", Kind::Email),
        Field::text("phone", 20),
        Field::new("company_id", Kind::Ref(RecordType::Company)),
        Field::new("custom_fields", Kind::CustomFields).default("{}"),
    ],
    custom: Some(CustomEntity::Contact),
    sorts: &[
        SortOption::new("-created_at", "created_at", true),
        SortOption::new("created_at", "created_at", false),
        SortOption::new("last_name", "last_name", false),
        SortOption::new("-last_name", "last_name", true),
        SortOption::new("name", "last_name", false),
        SortOption::new("-name", "last_name", true),
    ],
    filters: &[
        Filter::new("email", "email", Test::EqualsAnyCase),
        Filter::new("company_id", "company_id", Test::Equals),
    ],
    search: Some(Search::Person),
};
