use std::time::Duration;

use url::Url;

use super::*;

#[test]
fn the_policy_settings_convert() {
    let endpoint = Url::parse("https://sts.kp-test.invalid/").unwrap();
    let settings = IamSettings {
        sts_endpoint: endpoint.clone(),
        server_id: "kong-pulsar".to_owned(),
        max_age_seconds: 900,
        allowed_accounts: vec!["123456789012".to_owned()],
    };
    let expected = IamConfig {
        sts_endpoint: endpoint,
        server_id: "kong-pulsar".to_owned(),
        max_age: Duration::from_secs(900),
        allowed_accounts: vec!["123456789012".to_owned()],
    };
    assert_eq!(IamConfig::from(&settings), expected);
}
