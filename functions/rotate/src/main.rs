//! The `rotate` Lambda function: EventBridge and Secrets Manager invoke it to
//! rotate tokens and certificates and reconcile Pulsar with the policy.
//! Composition root only; the behaviour lives in `kong_pulsar`.

use kong_pulsar::config::Config;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    kong_pulsar::telemetry::init();
    let config = Config::from_env()?;
    tracing::info!(pulsar = %config.pulsar_service_url, "rotate function starting");
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let _ = event;
        Err::<Value, Error>("the rotate handler is not implemented yet".into())
    }))
    .await
}
