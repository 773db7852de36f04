//! Secrets Manager (moto) helpers shared by the rotation tests of token and
//! certificate secrets: reading a secret's versions and stages as a witness
//! independent of the library's own store, and putting a secret in the state
//! a native `RotateSecret` leaves it in.

use std::collections::HashMap;

use aws_sdk_secretsmanager::Client;
use kong_pulsar::rotation::{RotationStep, RotationStepEvent};

/// (version id, secret string) of the version of `secret` carrying `stage`,
/// or `None` when no version does (or the secret does not exist).
pub async fn staged(client: &Client, secret: &str, stage: &str) -> Option<(String, String)> {
    let out = client
        .get_secret_value()
        .secret_id(secret)
        .version_stage(stage)
        .send()
        .await
        .ok()?;
    Some((out.version_id.unwrap(), out.secret_string.unwrap()))
}

/// Every version of `secret` with its staging labels.
pub async fn stages(client: &Client, secret: &str) -> HashMap<String, Vec<String>> {
    client
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .unwrap()
        .version_ids_to_stages
        .unwrap_or_default()
}

/// What moto's `RotateSecret` leaves when the rotation Lambda cannot be
/// invoked: rotation enabled, a fresh request token staged `AWSPENDING` with
/// no value. Returns that token (the `ClientRequestToken` of the steps).
pub async fn begin_native_rotation(client: &Client, secret: &str) -> String {
    let token = uuid::Uuid::new_v4().to_string();
    let err = client
        .rotate_secret()
        .secret_id(secret)
        .client_request_token(&token)
        .rotation_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:kp-no-such-rotator")
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .send()
        .await
        .expect_err("moto cannot invoke the rotation Lambda");
    assert!(
        format!("{err:?}").contains("ResourceNotFoundException"),
        "{err:?}"
    );
    let described = client
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(described.rotation_enabled, Some(true));
    assert_eq!(
        described.version_ids_to_stages.unwrap()[&token],
        vec!["AWSPENDING".to_owned()]
    );
    token
}

/// The event Secrets Manager sends for `step` of rotating `secret` to the
/// version `token`.
pub fn step_event(step: RotationStep, secret: &str, token: &str) -> RotationStepEvent {
    RotationStepEvent {
        step,
        secret_id: secret.to_owned(),
        client_request_token: token.to_owned(),
    }
}
