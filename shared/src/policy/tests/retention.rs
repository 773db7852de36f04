//! `retention:` on a namespace: what each accepted spelling means in
//! Pulsar's units, and every refused one at the line the operator must fix.

use super::*;

/// `BASE` with `retention: <value>` on `payments/refunds`.
fn with_retention(value: &str) -> String {
    base_with(
        "      refunds: {}\n",
        &format!("      refunds:\n        retention: {value}\n"),
    )
}

fn refunds_retention(text: &str) -> Option<Retention> {
    let policy = Policy::from_str(text, None).expect("the policy loads");
    let tenant = policy
        .tenant(&PulsarName::parse("payments", "tenant").unwrap())
        .unwrap();
    tenant.namespaces[&PulsarName::parse("refunds", "namespace").unwrap()].retention
}

#[test]
fn retention_is_read_in_pulsars_units() {
    use Limit::{AtMost, Unlimited};
    let cases = [
        (
            "{ time: 7d, size: 10GiB }",
            AtMost(7 * 24 * 60),
            AtMost(10 * 1024),
        ),
        ("{ time: 90m, size: 512MiB }", AtMost(90), AtMost(512)),
        ("{ time: 60, size: 64 }", AtMost(1), AtMost(64)),
        (
            "{ time: 1h, size: 2TiB }",
            AtMost(60),
            AtMost(2 * 1024 * 1024),
        ),
        ("{ time: unlimited, size: 1GiB }", Unlimited, AtMost(1024)),
        (
            "{ time: 30d, size: unlimited }",
            AtMost(30 * 24 * 60),
            Unlimited,
        ),
        ("{ time: unlimited, size: unlimited }", Unlimited, Unlimited),
    ];
    for (text, minutes, mebibytes) in cases {
        assert_eq!(
            refunds_retention(&with_retention(text)),
            Some(Retention { minutes, mebibytes }),
            "{text}"
        );
    }
    // Undeclared: the reconciler leaves the broker's setting alone.
    assert_eq!(refunds_retention(BASE), None);
    assert_eq!(Limit::Unlimited.pulsar_value(), -1);
    assert_eq!(Limit::AtMost(90).pulsar_value(), 90);
}

#[test]
fn a_retention_pulsar_would_refuse_or_misread_is_refused_where_written() {
    let at = "tenants.payments.namespaces.refunds.retention";
    fails_at! {
        // Decimal units are not guessed at: 10 GB is not 10 GiB.
        with_retention("{ time: 7d, size: 10GB }") => "10GB": [&format!("{at}.size"), "use MiB, GiB or TiB"];
        with_retention("{ time: 7d, size: 10gib }") => "10gib": ["unknown size unit"];
        with_retention("{ time: 7d, size: 0MiB }") => "0MiB": ["at least 1MiB"];
        with_retention("{ time: 7d, size: -1 }") => "size: -1": ["a size like 512MiB"];
        with_retention("{ time: 7d, size: \"\" }") => "size: \"\"": ["expected a size like"];
        with_retention("{ time: 7d, size: 4294967296MiB }") => "4294967296MiB": ["too large", "unlimited"];
        with_retention("{ time: 7d, size: 99999999999999999999TiB }") => "99999999999999999999TiB": ["expected a size like"];
        with_retention("{ time: 7d, size: 1.5GiB }") => "1.5GiB": ["unknown size unit"];
        // Pulsar keeps whole minutes, in a Java int.
        with_retention("{ time: 90s, size: 1GiB }") => "90s": [&format!("{at}.time"), "whole minutes"];
        with_retention("{ time: 0m, size: 1GiB }") => "0m": ["at least 1m"];
        with_retention("{ time: 5000000d, size: 1GiB }") => "5000000d": ["too long"];
        with_retention("{ time: forever, size: 1GiB }") => "forever": ["expected a duration like"];
        with_retention("{ time: -1, size: 1GiB }") => "time: -1": ["a duration like"];
        // Both limits, and nothing else.
        with_retention("{ time: 7d }") => "time: 7d": ["missing field `size`"];
        with_retention("{ size: 1GiB }") => "size: 1GiB": ["missing field `time`"];
        with_retention("{ time: 7d, size: 1GiB, backlog: 1GiB }") => "backlog": ["unknown field `backlog`"];
        with_retention("7d") => "retention: 7d": [at, "a mapping like { time: 7d, size: 10GiB }"];
    }
}
