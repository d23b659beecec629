//! The web application in a real browser: headless Chromium driven
//! through WebDriver (Debian's `chromium` and `chromium-driver`), against
//! the real server and a real PostgreSQL. Elements are found by their
//! labels and accessible names, as a person finds them.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod a11y;
mod account;
mod driver;
mod records;
mod work;
