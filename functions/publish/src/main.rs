//! The `publish` Lambda function: Kong invokes it with an HTTP request and it
//! publishes the event into Pulsar. Composition root only: configuration and
//! clients are built once per cold start; the behaviour lives in
//! `kong_pulsar::edge::publish`.
//!
//! One [`Publisher`] serves every invocation of the instance. Where Lambda
//! sets `AWS_LAMBDA_MAX_CONCURRENCY` (multi-concurrency, as Lambda Managed
//! Instances run it), `run_concurrent` polls for that many invocations at once
//! and they share the publisher (its producer pool and caches); without it,
//! invocations run one at a time, as with `lambda_runtime::run`.

use std::sync::Arc;

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
    let publisher = Arc::new(Publisher::build(&config, &aws)?);
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Value>| {
        let publisher = publisher.clone();
        // Boxed: the handler's future nested in run_concurrent's worker
        // tasks is too deep a type for rustc's layout queries otherwise.
        Box::pin(async move { Ok::<_, Error>(publisher.handle(event).await) })
    }))
    .await
}
