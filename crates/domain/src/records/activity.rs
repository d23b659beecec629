//! Activities: calls, emails, meetings, tasks and notes, done or to do.

use super::{Entity, Field, Filter, Kind, RecordType, SortOption, Test};

pub const ACTIVITY_KINDS: &[&str] = &["call", "email", "meeting", "task", "note"];

pub static ACTIVITY: Entity = Entity {
    record: RecordType::Activity,
    name: "activity",
    table: "activities",
    schema: "Activity",
    fields: &[
        Field::new("kind", Kind::Choice(ACTIVITY_KINDS)).required(),
        Field::text("subject", 255).required(),
        Field::text("body", 100_000),
        Field::new("due_at", Kind::Timestamp),
        Field::new("completed_at", Kind::Timestamp),
        Field::new("contact_id", Kind::Ref(RecordType::Contact)),
        Field::new("company_id", Kind::Ref(RecordType::Company)),
        Field::new("deal_id", Kind::Ref(RecordType::Deal)),
        Field::new("owner_id", Kind::UserRef),
    ],
    custom: None,
    sorts: &[
        SortOption::new("-created_at", "created_at", true),
        SortOption::new("created_at", "created_at", false),
    ],
    filters: &[
        Filter::new("contact_id", "contact_id", Test::Equals),
        Filter::new("company_id", "company_id", Test::Equals),
        Filter::new("deal_id", "deal_id", Test::Equals),
        Filter::new("owner_id", "owner_id", Test::Equals),
        Filter::new("kind", "kind", Test::Equals),
        Filter::new("open", "completed_at", Test::Unset),
        Filter::new("due_before", "due_at", Test::Before),
    ],
    search: None,
};
