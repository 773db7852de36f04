//! Rules must say whose names they mean: every refused pattern of the
//! anchored-identity rules (unpinned subject/service/groups, `iam_arn`
//! patterns spanning AWS accounts, IAM settings admitting every account or
//! outliving STS, empty or garbled `token_types`), each at the line the
//! operator must fix.

use super::*;

const IAM_BLOCK: &str = "  iam:\n    sts_endpoint: https://sts.us-east-1.amazonaws.com/\n    server_id: kong-pulsar\n    max_age_seconds: 900\n    allowed_accounts: [\"123456789012\"]\n";

/// `BASE` with an `identity.iam` block.
fn base_with_iam(iam: &str) -> String {
    base_with(
        "tenants:\n  payments:",
        &format!("{iam}tenants:\n  payments:"),
    )
}

fn rule_text(base: &str, when: &str) -> String {
    format!(
        "{base}rules:\n  - name: the-rule\n    when: {when}\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }}\n"
    )
}

#[test]
fn a_bare_name_any_identity_source_could_carry_is_refused() {
    // (when, the unpinned field named in the message)
    for (when, field) in [
        ("{ service: checkout-api }", "service"),
        ("{ subject: alice }", "subject"),
        ("{ groups_any: [checkout] }", "groups_any"),
        // A Kong consumer condition does not say where `subject` comes from.
        ("{ subject: alice, kong_consumer: acme }", "subject"),
        ("{ service: checkout-api, groups_any: [ops] }", "service"),
    ] {
        let text = rule_text(&base_with_iam(IAM_BLOCK), when);
        assert_fails_at(
            &text,
            "when:",
            &[
                "rule \"the-rule\"",
                &format!("`{field}` matches that name from every identity source"),
                "pin `issuer`",
            ],
        );
    }
}

#[test]
fn a_name_pinned_to_its_source_loads() {
    for when in [
        "{ issuer: \"https://idp.example.com\", service: checkout-api }",
        "{ issuer: \"https://idp.example.com\", subject: alice }",
        "{ issuer: \"https://idp.example.com\", groups_any: [checkout] }",
        "{ issuer: aws-iam, service: checkout-api }",
        "{ auth_method: kong, subject: acme-id }",
        "{ auth_method: iam, iam_arn: \"arn:aws:iam::123456789012:role/checkout-*\" }",
        // No name condition: nothing to anchor.
        "{ kong_consumer: acme }",
        "{ iam_arn: \"arn:aws:iam::123456789012:role/ci\" }",
    ] {
        let text = rule_text(&base_with_iam(IAM_BLOCK), when);
        if let Err(e) = Policy::from_str(&text, None) {
            panic!("{when} was refused: {e}");
        }
    }
}

#[test]
fn an_iam_arn_pattern_spanning_aws_accounts_is_refused() {
    // (pattern, a phrase of the message)
    for (pattern, expected) in [
        (
            "arn:aws:iam::*:role/checkout-*",
            "wildcard before the resource",
        ),
        (
            "arn:aws:iam::????????????:role/ci",
            "wildcard before the resource",
        ),
        (
            "arn:aws:iam::12345678901?:role/ci",
            "wildcard before the resource",
        ),
        (
            "arn:aws:iam::123456789012*:role/ci",
            "wildcard before the resource",
        ),
        (
            "arn:*:iam::123456789012:role/ci",
            "wildcard before the resource",
        ),
        (
            "arn:aws:*::123456789012:role/ci",
            "wildcard before the resource",
        ),
        ("*:123456789012:role/ci", "not an ARN pattern"),
        ("*", "not an ARN pattern"),
        ("arn:aws:iam::*", "not an ARN pattern"),
        ("role/checkout-*", "not an ARN pattern"),
        ("arn:aws:iam::123456789012:", "not an ARN pattern"),
        ("ARN:aws:iam::123456789012:role/ci", "not an ARN pattern"),
        ("arn:aws:iam:::role/ci", "must name one AWS account"),
        (
            "arn:aws:iam::12345678901:role/ci",
            "must name one AWS account",
        ),
        (
            "arn:aws:iam::1234567890123:role/ci",
            "must name one AWS account",
        ),
        (
            "arn:aws:iam::12345678901x:role/ci",
            "must name one AWS account",
        ),
        // Well formed, but no caller from that account gets this far.
        (
            "arn:aws:iam::444455556666:role/ci",
            "not in identity.iam.allowed_accounts",
        ),
    ] {
        let text = rule_text(
            &base_with_iam(IAM_BLOCK),
            &format!("{{ auth_method: iam, iam_arn: \"{pattern}\" }}"),
        );
        assert_fails_at(&text, "when:", &["rule \"the-rule\"", expected]);
    }
}

#[test]
fn iam_settings_that_admit_every_account_or_outlive_sts_are_refused() {
    let iam = |accounts: &str, max_age: &str| {
        format!(
            "  iam:\n    sts_endpoint: https://sts.us-east-1.amazonaws.com/\n    server_id: kong-pulsar\n    max_age_seconds: {max_age}  # age\n{accounts}"
        )
    };
    let accounts = |list: &str| format!("    allowed_accounts: {list}  # accounts\n");
    // (identity.iam block, marker of the line at fault, message phrase)
    for (block, marker, expected) in [
        (
            iam("", "900"),
            "sts_endpoint",
            "missing field `allowed_accounts`",
        ),
        (
            iam(&accounts("[]"), "900"),
            "# accounts",
            "allowed_accounts is empty",
        ),
        (
            iam(&accounts("[\"*\"]"), "900"),
            "# accounts",
            "not an AWS account id",
        ),
        (
            iam(&accounts("[\"12345678901\"]"), "900"),
            "# accounts",
            "exactly 12 digits",
        ),
        (
            iam(&accounts("[\"1234567890123\"]"), "900"),
            "# accounts",
            "exactly 12 digits",
        ),
        (
            iam(&accounts("[\" 123456789012\"]"), "900"),
            "# accounts",
            "exactly 12 digits",
        ),
        (
            iam(&accounts("[\"12345678901a\"]"), "900"),
            "# accounts",
            "exactly 12 digits",
        ),
        (
            iam(&accounts("[\"123456789012\", \"123456789012\"]"), "900"),
            "# accounts",
            "listed twice",
        ),
        (
            iam(&accounts("[\"123456789012\"]"), "901"),
            "# age",
            "between 1 and 900",
        ),
        (
            iam(&accounts("[\"123456789012\"]"), "3600"),
            "# age",
            "STS refuses",
        ),
        (
            iam(&accounts("[\"123456789012\"]"), "0"),
            "# age",
            "between 1 and 900",
        ),
    ] {
        assert_fails_at(&base_with_iam(&block), marker, &[expected]);
    }
    let ok = Policy::from_str(
        &base_with_iam(&iam(
            &accounts("[\"123456789012\", \"012345678901\"]"),
            "900",
        )),
        None,
    )
    .unwrap();
    let settings = ok.iam().unwrap();
    assert_eq!(settings.allowed_accounts, ["123456789012", "012345678901"]);
    assert_eq!(settings.max_age_seconds, 900);
    // Unquoted ids are read as written: the leading zero survives.
    let unquoted = Policy::from_str(
        &base_with_iam(&iam(&accounts("[012345678901]"), "900")),
        None,
    )
    .unwrap();
    assert_eq!(unquoted.iam().unwrap().allowed_accounts, ["012345678901"]);
}

#[test]
fn token_types_must_be_a_usable_allow_list() {
    let with_types = |types: &str| {
        base_with(
            "      algorithms: [RS256]\n",
            &format!("      algorithms: [RS256]\n      token_types: {types}  # types\n"),
        )
    };
    for (types, expected) in [
        ("[]", "token_types is empty"),
        ("[\"\"]", "token type is empty"),
        ("[\"at jwt\"]", "printable ASCII without spaces"),
        ("[\"at+jwt\\u0000\"]", "printable ASCII without spaces"),
        (&format!("[{}]", "x".repeat(65)), "at most 64 characters"),
    ] {
        assert_fails_at(&with_types(types), "# types", &[expected]);
    }
    let policy =
        Policy::from_str(&with_types("[AT+JWT, application/at+jwt, access]"), None).unwrap();
    assert_eq!(policy.oidc_issuers()[0].token_types, ["at+jwt", "access"]);
    let unset = Policy::from_str(BASE, None).unwrap();
    assert!(unset.oidc_issuers()[0].token_types.is_empty());
}
