//! The `rotate` Lambda function: EventBridge and Secrets Manager invoke it to
//! rotate tenant tokens and reconcile Pulsar with the policy. Composition root
//! only; the behaviour lives in `kong_pulsar::rotation::handler`.

use kong_pulsar::config::Config;
use kong_pulsar::rotation::handler::Rotator;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    kong_pulsar::telemetry::init();
    let config = Config::from_env()?;
    config.warn_if_plaintext();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let rotator = Rotator::build(&config, &aws)?;
    let rotator = &rotator;
    // Sequential on purpose, even where Lambda offers multi-concurrency: two
    // cycles at once would race on the same AWSPENDING versions and broker
    // grants (the template also reserves a concurrency of 1). `run` warns if
    // AWS_LAMBDA_MAX_CONCURRENCY is set and still takes one event at a time.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        rotator.handle(event).await.map_err(Error::from)
    }))
    .await
}
