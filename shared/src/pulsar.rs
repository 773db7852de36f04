//! The Pulsar side: the binary-protocol client that publishes and probes
//! tokens ([`broker`], with its per-tenant producer pool), the admin REST
//! client that reconciliation drives ([`admin`]), and Pulsar's naming rules
//! ([`topic`]), which both the edge and the policy parse names with.

pub mod admin;
pub mod broker;
pub mod read;
pub mod topic;
