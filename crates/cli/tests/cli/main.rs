//! The `atrium` binary as an operator uses it: exit codes, one-line errors,
//! JSON output, and the embedded default.

mod archives;
mod duties;
mod embedded;
mod faults;
mod fleet;
mod helpers;
mod https;
mod sealed;
mod tenants;
