//! Verifying Kong Pulsar's provenance signature.
//!
//! Every event the gateway publishes carries a `kp-provenance` property: a
//! compact JWS (ES256) whose claims bind the identity the gateway verified
//! to this exact message — its payload bytes, its topic, its key and event
//! time, its caller properties and every `kp-*` property. A consumer that
//! checks the signature against the gateway's JWKS and compares the claims
//! with the message it holds knows who really sent it; anyone who can only
//! produce to the topic directly cannot forge that.
//!
//! [`claims`] is the public contract (claim names, canonical forms): the
//! gateway signs with it, and verifiers in other languages follow the README's
//! procedure, which describes the same thing.

//! [`verify`] checks one received message against a key set; [`fetch`]
//! (feature `fetch`, on by default) keeps the gateway's key set cached. The
//! `kong-pulsar-verify` binary (feature `cli`) reads a topic and says, for
//! each message, who really sent it.

pub mod claims;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod jwks;
pub mod verify;

pub use claims::{Claims, PROPERTY, TYP, caller_properties_digest, payload_digest};
#[cfg(feature = "fetch")]
pub use fetch::{FetchError, JwksFetcher};
pub use jwks::{Jwk, Jwks};
pub use verify::{Received, Verified, Verifier, VerifyError, properties_from_pairs, verify};
