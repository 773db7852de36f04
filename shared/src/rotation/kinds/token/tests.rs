use super::*;

fn tenant(rotate_before: &str) -> Policy {
    Policy::from_str(
        &format!(
            r#"version: 1
pulsar: {{ cluster: standalone, token_signing_secret: kp/signing }}
tenants:
  payments:
    role: payments-gw
    token_secret: kp/tokens/payments
    token_ttl: 1h
    rotate_before: {rotate_before}
    namespaces: {{ orders: {{}} }}
"#
        ),
        None,
    )
    .unwrap()
}

fn token(sub: &str, role: Option<&str>, expires_at: Option<DateTime<Utc>>) -> TenantToken {
    use base64::Engine as _;
    let b64 = |v: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    TenantToken {
        token: SecretValue::new(format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256"}"#.into()),
            b64(format!(r#"{{"sub":"{sub}"}}"#))
        )),
        role: role.map(str::to_owned),
        expires_at,
    }
}

#[test]
fn tokens_rotate_from_expiry_minus_rotate_before() {
    let policy = tenant("15m");
    let tenant = policy.tenants().next().unwrap();
    let now = Utc::now();
    let at = |mins: i64| Some(now + chrono::Duration::minutes(mins));
    let judge_at = |expires| judge(Some(&token("payments-gw", None, expires)), tenant, now);
    assert_eq!(judge_at(at(16)), Ok(at(16).unwrap()));
    // The window opens exactly `rotate_before` ahead of expiry.
    assert_eq!(judge_at(at(15)), Err(Reason::Expiring));
    assert_eq!(judge_at(at(1)), Err(Reason::Expiring));
    assert_eq!(judge_at(at(-5)), Err(Reason::Expiring));
    assert_eq!(judge_at(None), Err(Reason::NoExpiry));
}

#[test]
fn unusable_tokens_are_replaced_for_what_is_wrong_with_them() {
    let policy = tenant("15m");
    let tenant = policy.tenants().next().unwrap();
    let now = Utc::now();
    let later = Some(now + chrono::Duration::hours(1));
    let cases = [
        (None, Reason::Malformed),
        (
            Some(token("someone-else", None, later)),
            Reason::RoleMismatch,
        ),
        (
            Some(token("payments-gw", Some("someone-else"), later)),
            Reason::RoleMismatch,
        ),
    ];
    for (stored, reason) in cases {
        assert_eq!(
            judge(stored.as_ref(), tenant, now),
            Err(reason),
            "{stored:?}"
        );
    }
}
