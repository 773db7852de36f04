//! Logging set-up shared by every function, and the one way secrets appear in
//! logs: as a short, irreversible fingerprint.

use sha2::{Digest, Sha256};
use tracing_subscriber::EnvFilter;

/// Installs JSON logging to stdout (CloudWatch picks it up line by line).
///
/// The level comes from `RUST_LOG` (default `info`). Calling it twice is
/// harmless, so tests and binaries can both call it.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// A short fingerprint of a secret value (first 12 hex digits of its
/// SHA-256) for logs and error messages: enough to tell two tokens apart,
/// useless to an attacker.
pub fn fingerprint(secret: &[u8]) -> String {
    let digest = Sha256::digest(secret);
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_short_stable_and_does_not_contain_the_secret() {
        let fp = fingerprint(b"eyJhbGciOiJIUzI1NiJ9.secret");
        assert_eq!(fp.len(), 12);
        assert_eq!(fp, fingerprint(b"eyJhbGciOiJIUzI1NiJ9.secret"));
        assert_ne!(fp, fingerprint(b"eyJhbGciOiJIUzI1NiJ9.other"));
        assert!(!fp.contains("secret"));
    }
}
