//! The HTTP API through the real server on a random port, against a real
//! PostgreSQL (a fresh database per test).

mod auth;
mod clusters;
mod companies;
mod contacts;
mod conventions;
mod csv_io;
mod custom_fields;
mod deals;
mod document;
mod faults;
mod hardening;
mod health;
mod helpers;
mod hosts;
mod invitations;
mod isolation;
mod lists;
mod moves;
mod observability;
mod passwords;
mod pipeline;
mod platform;
mod platform_changes;
mod sessions;
mod text;
mod users;
