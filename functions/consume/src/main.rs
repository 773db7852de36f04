//! The `consume` Lambda function: Kong invokes it with an HTTP read (a
//! cursor read, a subscription read, or acknowledgements) and it answers
//! with the topic's messages, each with its provenance verdict. Composition
//! root only: configuration and clients are built once per cold start; the
//! behaviour lives in `kong_pulsar::edge::consume`.
//!
//! One [`Reader`] serves every invocation of the instance; under
//! multi-concurrency (`AWS_LAMBDA_MAX_CONCURRENCY`) concurrent invocations
//! share it, as publish's do.

use std::sync::Arc;

use kong_pulsar::config::Config;
use kong_pulsar::edge::consume::Reader;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    kong_pulsar::telemetry::init();
    let config = Config::from_env()?;
    config.warn_if_plaintext();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let reader = Arc::new(Reader::build(&config, &aws)?);
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Value>| {
        let reader = reader.clone();
        // Boxed, as publish's: the nested future is too deep a type otherwise.
        Box::pin(async move { Ok::<_, Error>(reader.handle(event).await) })
    }))
    .await
}
