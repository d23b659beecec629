//! The HTTP API through the real server on a random port, against a real
//! PostgreSQL (a fresh database per test).

mod auth;
mod conventions;
mod health;
mod helpers;
mod hosts;
mod invitations;
mod isolation;
mod platform;
mod users;
