//! Kong Pulsar: the library behind the Lambda functions that put Apache Pulsar
//! behind Kong with real caller identity.
//!
//! The folders are the architecture, and imports point one way, down this
//! list:
//!
//! * [`edge`] and [`rotation`]: what the two functions do — serve HTTP that
//!   Kong forwards (publish), and keep secrets and Pulsar's tenants in step
//!   with the policy (rotate);
//! * [`identity`] and [`policy`]: who is calling, and what they may do;
//! * [`pulsar`] and [`secrets`]: the two systems the functions talk to;
//! * [`config`], [`telemetry`], [`http`]: what everything above uses.
//!
//! The functions' `main.rs` files only compose these. `DESIGN.md` (in the
//! shared folder beside the repository) is the original contract; the README
//! says where the code has moved on from it.

pub mod config;
pub mod edge;
pub mod http;
pub mod identity;
pub mod policy;
pub mod provenance;
pub mod pulsar;
pub mod rotation;
pub mod secrets;
pub mod telemetry;
