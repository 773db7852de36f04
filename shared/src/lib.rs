//! Kong Pulsar: the library behind the Lambda functions that put Apache Pulsar
//! behind Kong with real caller identity.
//!
//! Each module owns one domain concept; the functions' `main.rs` files only
//! compose them. `DESIGN.md` (in the shared folder beside the repository) is
//! the contract these modules implement.

pub mod admin;
pub mod broker;
pub mod certificates;
pub mod config;
pub mod identity;
pub mod kong;
pub mod policy;
pub mod problem;
pub mod publish;
pub mod reconcile;
pub mod rotate;
pub mod rotation;
pub mod secrets;
pub mod telemetry;
pub mod topic;
