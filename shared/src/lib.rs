//! Kong Pulsar: the library behind the Lambda functions that put Apache Pulsar
//! behind Kong with real caller identity.
//!
//! Each module owns one domain concept; the functions' `main.rs` files only
//! compose them. See `../shared/DESIGN.md` (kept beside the repository) for
//! the contract these modules implement.

pub mod broker;
pub mod config;
pub mod secrets;
pub mod telemetry;
