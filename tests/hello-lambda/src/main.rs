//! The baseline of `tests/benches/coldstart.rs`: the smallest `lambda_runtime`
//! function (it answers every event with the event itself), on the same
//! runtime as `publish` and `rotate` (`#[tokio::main]`, multi-thread), so the
//! bench's ratios say what the functions add to start-up and memory.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
