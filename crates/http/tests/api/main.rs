//! The HTTP API through the real server on a random port, against a real
//! PostgreSQL (a fresh database per test).

mod helpers;
mod isolation;
