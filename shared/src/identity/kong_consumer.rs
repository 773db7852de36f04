//! Consumers that a Kong auth plugin already authenticated: the headers Kong
//! sets upstream (`x-consumer-*`, `x-credential-identifier`, ACL groups)
//! become the identity — but only when the policy says Kong is trusted
//! (`identity.kong.trusted: true`). Without an auth plugin on the route a
//! client could send those headers itself, so trust is off by default.

use crate::http::Headers;
use crate::identity::{AuthMethod, Identity};

/// Reads the Kong consumer from `headers`. `None` when there is no
/// authenticated consumer: no consumer headers, or Kong's anonymous consumer
/// (`x-anonymous-consumer: true`).
pub fn consumer(headers: &Headers) -> Option<Identity> {
    if headers
        .get("x-anonymous-consumer")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return None;
    }
    let value = |name: &str| {
        headers
            .get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let id = value("x-consumer-id");
    let username = value("x-consumer-username");
    let credential = value("x-credential-identifier");
    // Plugins that authenticate without mapping a consumer (e.g. an
    // openid-connect route with consumer mapping off) set only the
    // credential identifier.
    let principal = id.clone().or_else(|| credential.clone())?;
    let mut groups: Vec<String> = Vec::new();
    for name in ["x-consumer-groups", "x-authenticated-groups"] {
        for value in headers.get_all(name) {
            for group in value.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                if !groups.iter().any(|g| g == group) {
                    groups.push(group.to_owned());
                }
            }
        }
    }
    let mut claims = serde_json::Map::new();
    for (key, v) in [
        ("consumer_id", &id),
        ("consumer_username", &username),
        ("consumer_custom_id", &value("x-consumer-custom-id")),
        ("credential_identifier", &credential),
    ] {
        if let Some(v) = v {
            claims.insert(key.to_owned(), v.clone().into());
        }
    }
    Some(Identity {
        kong_consumer: username.clone().or_else(|| id.clone()),
        service: username,
        principal,
        groups,
        method: AuthMethod::Kong,
        issuer: "kong".to_owned(),
        iam_arn: None,
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn a_consumer_with_groups_becomes_an_identity() {
        let id = consumer(&headers(&[
            ("x-consumer-id", "7d3e-uuid"),
            ("x-consumer-username", "checkout-svc"),
            ("x-consumer-custom-id", "cust-9"),
            ("x-credential-identifier", "key-1"),
            ("x-consumer-groups", "checkout, billing"),
            ("x-authenticated-groups", "billing,ops"),
        ]))
        .unwrap();
        assert_eq!(id.principal, "7d3e-uuid");
        assert_eq!(id.service.as_deref(), Some("checkout-svc"));
        assert_eq!(id.kong_consumer.as_deref(), Some("checkout-svc"));
        assert_eq!(id.groups, ["checkout", "billing", "ops"]);
        assert_eq!(id.method, AuthMethod::Kong);
        assert_eq!(id.issuer, "kong");
        assert_eq!(id.claims["consumer_custom_id"], "cust-9");
    }

    #[test]
    fn the_anonymous_consumer_and_missing_headers_are_nobody() {
        assert!(consumer(&headers(&[])).is_none());
        assert!(consumer(&headers(&[("x-consumer-username", "only-a-name")])).is_none());
        assert!(
            consumer(&headers(&[
                ("x-consumer-id", "anon-uuid"),
                ("x-consumer-username", "anonymous"),
                ("x-anonymous-consumer", "true"),
            ]))
            .is_none()
        );
        assert!(consumer(&headers(&[("x-consumer-id", "  ")])).is_none());
    }

    #[test]
    fn a_credential_without_a_consumer_is_still_an_identity() {
        let id = consumer(&headers(&[("x-credential-identifier", "oidc-sub-1")])).unwrap();
        assert_eq!(id.principal, "oidc-sub-1");
        assert!(id.service.is_none() && id.kong_consumer.is_none());
    }
}
