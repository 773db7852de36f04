//! The demo OIDC issuer behind `make run`: serves discovery and JWKS at
//! `http://127.0.0.1:9400/demo` (the issuer `policy/demo.yaml` trusts), writes
//! a 12-hour access token for a caller in group `checkout` to the file given
//! as the first argument, and serves until killed. For local demos only.

use std::time::Duration;

use kp_tests::oidc::{KeyType, TestIssuer};
use serde_json::json;

#[tokio::main]
async fn main() {
    let token_file = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "demo.token".to_owned());
    let issuer = TestIssuer::start_on(9400, "/demo", KeyType::Rs256).await;
    let now = kp_tests::unix_now();
    let token = issuer.sign(&json!({
        "iss": issuer.issuer(),
        "sub": "demo-user",
        "aud": "kong-pulsar",
        "azp": "demo-client",
        "groups": ["checkout"],
        "iat": now,
        "exp": now + 12 * 3600,
    }));
    std::fs::write(&token_file, &token)
        .unwrap_or_else(|e| panic!("cannot write {token_file}: {e}"));
    eprintln!(
        "demo issuer {} serving; token in {token_file}",
        issuer.issuer()
    );
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
