//! Provenance: the gateway's signature on every event it publishes, so a
//! consumer can tell an identity the gateway verified from properties anyone
//! with produce permission could have typed.
//!
//! The claims and their canonical forms are a public contract and live in
//! the `kong-pulsar-verify` crate consumers depend on; this module holds the
//! side only the gateway needs: the key set kept in Secrets Manager
//! ([`keys`]: minted and rotated by `rotate`, the public halves served as the
//! JWKS), and the [`signer`] `publish` seals each message with.

pub mod keys;
pub mod signer;

pub use keys::{KeySet, KeySetError, verifies_with};
pub use signer::{ProvenanceError, Signer, SigningKeys};
