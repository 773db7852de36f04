//! The `publish` Lambda function: Kong invokes it with an HTTP request and it
//! publishes the event into Pulsar. Composition root only: configuration and
//! clients are built once per cold start; the behaviour lives in `kong_pulsar`.

use kong_pulsar::config::Config;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    kong_pulsar::telemetry::init();
    let config = Config::from_env()?;
    tracing::info!(pulsar = %config.pulsar_service_url, "publish function starting");
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let _ = event;
        Err::<Value, Error>("the publish handler is not implemented yet".into())
    }))
    .await
}
