use super::*;

#[test]
fn traceparents_are_validated() {
    assert!(valid_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ));
    assert!(valid_traceparent(&new_traceparent()));
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ] {
        assert!(!valid_traceparent(bad), "{bad}");
    }
}

#[test]
fn event_ids_are_stable_per_principal_and_key_and_unique_otherwise() {
    let a = event_id("alice", Some("k1"), None);
    assert_eq!(a, event_id("alice", Some("k1"), None));
    assert_ne!(a, event_id("bob", Some("k1"), None));
    assert_ne!(a, event_id("alice", Some("k2"), None));
    assert_ne!(
        event_id("alice", Some("k1"), Some(0)),
        event_id("alice", Some("k1"), Some(1))
    );
    assert_ne!(event_id("alice", None, None), event_id("alice", None, None));
    assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 8);
}

#[test]
fn budget_without_a_deadline_is_the_default() {
    assert_eq!(budget(0), DEFAULT_BUDGET);
    assert_eq!(budget(600_000), DEFAULT_BUDGET);
    assert_eq!(budget(1_000_000_000_000), Duration::ZERO);
    let in_5s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 5_000;
    assert!(budget(in_5s) > Duration::from_secs(4) && budget(in_5s) <= Duration::from_secs(5));
}
