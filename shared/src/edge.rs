//! The edge: everything that serves HTTP through Kong. Kong's `aws-lambda`
//! payloads come in ([`kong`]), are parsed into types once, and go out as
//! proxy-integration responses; errors become `application/problem+json` in
//! exactly one place ([`problem`]). [`publish`] is the publish function's
//! handler; [`idempotency`] remembers its answers for retries.
//!
//! Nothing below the edge sees a raw request: identity gets [`Headers`],
//! the policy a parsed topic name, Pulsar an outgoing message.
//!
//! [`Headers`]: crate::http::Headers

pub mod idempotency;
pub mod kong;
pub mod problem;
pub mod publish;
