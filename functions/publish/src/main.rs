//! The `publish` Lambda function: Kong invokes it with an HTTP request and it
//! publishes the event into Pulsar. Composition root only: configuration and
//! clients are built once per cold start; the behaviour lives in
//! `kong_pulsar::edge::publish`.

use kong_pulsar::config::Config;
use kong_pulsar::edge::publish::Publisher;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    kong_pulsar::telemetry::init();
    let config = Config::from_env()?;
    config.warn_if_plaintext();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let publisher = Publisher::build(&config, &aws)?;
    let publisher = &publisher;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(publisher.handle(event).await)
    }))
    .await
}
