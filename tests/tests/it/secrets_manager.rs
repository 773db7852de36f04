//! Secrets Manager through the SDK, pointed at moto only by AWS_ENDPOINT_URL.

use kong_pulsar::secrets::{SecretSource, SecretsError, SecretsManager};
use kp_tests::{stack, unique};

#[tokio::test]
async fn a_secret_written_to_moto_is_read_back_through_the_sdk() {
    let sdk = stack().aws_config().await;
    let name = unique("kong-pulsar/tokens/t");
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&name)
        .secret_string(r#"{"token":"abc","role":"r"}"#)
        .send()
        .await
        .unwrap();

    let value = SecretsManager::from_conf(&sdk).get(&name).await.unwrap();
    assert_eq!(value.expose(), r#"{"token":"abc","role":"r"}"#);
}

#[tokio::test]
async fn a_missing_secret_is_a_typed_not_found() {
    let sdk = stack().aws_config().await;
    let err = SecretsManager::from_conf(&sdk)
        .get(&unique("kong-pulsar/missing"))
        .await
        .unwrap_err();
    assert!(matches!(err, SecretsError::NotFound { .. }), "{err:?}");
}
