//! The CRM record types, each described once.
//!
//! A record type's definition (in its own module) names its table, its
//! writable fields in column order with what each accepts, how its lists
//! sort, filter and search. Everything else follows from it: the store's
//! SQL, the services' checks of bodies and query strings, the OpenAPI
//! schemas and parameters, and the HTTP routes. A field's name is its SQL
//! column and its JSON name alike: the origin document's names.
//!
//! Rules that belong to one record type and need the database (a deal's
//! stage, a company's parent) live with that type in the services.

mod activity;
mod company;
mod contact;
mod deal;
mod values;

pub use activity::{ACTIVITY, ACTIVITY_KINDS};
pub use company::COMPANY;
pub use contact::CONTACT;
pub use deal::DEAL;
pub use values::{ByField, Changes, Datum, NewRecord};

use crate::custom_fields::CustomEntity;

/// Which record type a definition is: where a type has rules of its own,
/// they are chosen by matching on this, so a new type cannot be missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    Company,
    Contact,
    Deal,
    Activity,
}

impl RecordType {
    pub fn entity(self) -> &'static Entity {
        match self {
            Self::Company => &COMPANY,
            Self::Contact => &CONTACT,
            Self::Deal => &DEAL,
            Self::Activity => &ACTIVITY,
        }
    }
}

/// Every record type, in the order the API documents them.
pub static ENTITIES: &[&Entity] = &[&COMPANY, &CONTACT, &DEAL, &ACTIVITY];

/// Fields every record has that no body may set.
pub const READ_ONLY: &[&str] = &[
    "id",
    "created_by",
    "updated_by",
    "created_at",
    "updated_at",
    "deleted_at",
];

/// A record type.
#[derive(Debug)]
pub struct Entity {
    pub record: RecordType,
    /// One record, in audit events and messages: `company`.
    pub name: &'static str,
    /// The table, and the collection in the API's paths: `companies`.
    pub table: &'static str,
    /// The name of its schema in the OpenAPI document: `Company`.
    pub schema: &'static str,
    /// The writable fields, in the table's column order.
    pub fields: &'static [Field],
    /// Which custom field definitions apply, if the record has any.
    pub custom: Option<CustomEntity>,
    /// `sort` values; the first is the default.
    pub sorts: &'static [SortOption],
    /// Query parameters that narrow a list, besides `q` and `cf.<key>`.
    pub filters: &'static [Filter],
    /// What `q` searches, if the list takes it.
    pub search: Option<Search>,
}

impl Entity {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn sort(&self, name: &str) -> Option<&'static SortOption> {
        self.sorts.iter().find(|s| s.name == name)
    }
}

/// What a field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text {
        max: usize,
    },
    Email,
    Int {
        min: i64,
        max: i64,
    },
    /// A non-negative decimal with two places and this many integer digits.
    Money {
        int_digits: usize,
    },
    /// A three-letter ISO 4217 code, kept upper-case.
    Currency,
    /// The id of a live record of this type.
    Ref(RecordType),
    /// The id of an active user of this tenant.
    UserRef,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 timestamp with offset.
    Timestamp,
    /// 0–100 with two decimals.
    Percent,
    /// One of a fixed list.
    Choice(&'static [&'static str]),
    /// The name of one of the organisation's pipeline stages.
    Stage,
    /// Values of the organisation's custom fields, by key.
    CustomFields,
}

/// The longest stage name (the `pipeline_stages.name` column).
pub const STAGE_NAME_MAX: usize = 50;

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// Used on create when the body leaves the field out.
    pub default: Option<&'static str>,
}

impl Field {
    pub const fn new(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            required: false,
            default: None,
        }
    }

    pub const fn text(name: &'static str, max: usize) -> Self {
        Self::new(name, Kind::Text { max })
    }

    pub const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    pub const fn default(self, value: &'static str) -> Self {
        Self {
            default: Some(value),
            ..self
        }
    }
}

/// One `sort` value of a list: the column it orders by (a field, or
/// `created_at`) and the direction.
#[derive(Debug, Clone, Copy)]
pub struct SortOption {
    pub name: &'static str,
    pub column: &'static str,
    pub descending: bool,
}

impl SortOption {
    pub const fn new(name: &'static str, column: &'static str, descending: bool) -> Self {
        Self {
            name,
            column,
            descending,
        }
    }
}

/// A query parameter that narrows a list by one column.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub param: &'static str,
    /// A field of the record (its kind parses the parameter).
    pub column: &'static str,
    pub test: Test,
}

impl Filter {
    pub const fn new(param: &'static str, column: &'static str, test: Test) -> Self {
        Self {
            param,
            column,
            test,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Equals,
    /// Equal ignoring case (emails, domains).
    EqualsAnyCase,
    /// On or after.
    AtLeast,
    /// On or before.
    AtMost,
    /// Strictly before.
    Before,
    /// `true`: the column is empty (an open activity has no
    /// `completed_at`); `false`: it is set.
    Unset,
}

/// What `q` finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Any of these columns starts with the query, ignoring case.
    Prefix(&'static [&'static str]),
    /// The column contains the query, ignoring case.
    Contains(&'static str),
    /// People: every word a prefix of a name word or the email, typos
    /// forgiven, best match first.
    Person,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_definition_names_its_own_columns() {
        for entity in ENTITIES {
            assert_eq!(entity.record.entity().name, entity.name);
            for filter in entity.filters {
                assert!(entity.field(filter.column).is_some(), "{}", filter.param);
            }
            for sort in entity.sorts {
                assert!(
                    sort.column == "created_at" || entity.field(sort.column).is_some(),
                    "{}",
                    sort.name
                );
            }
            match entity.search {
                Some(Search::Prefix(columns)) => {
                    assert!(columns.iter().all(|c| entity.field(c).is_some()))
                }
                Some(Search::Contains(column)) => assert!(entity.field(column).is_some()),
                Some(Search::Person) | None => {}
            }
            let custom = entity.field("custom_fields").is_some();
            assert_eq!(custom, entity.custom.is_some(), "{}", entity.name);
        }
    }
}
