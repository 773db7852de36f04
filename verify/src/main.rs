//! `kong-pulsar-verify read`: reads a topic as a given Pulsar role and says,
//! for each message, whether the gateway's provenance signature holds for
//! it and, when it does, who really sent it. What an engineer or auditor
//! runs to answer "who sent this?".
//!
//! One JSON line per message on stdout; diagnostics on stderr. The reader
//! is a non-durable exclusive subscription: it leaves nothing behind on the
//! broker and moves no one else's cursor. Exit status: 0 when every message
//! read verified, 1 when any did not, 2 on bad usage or when the broker or
//! the key set could not be reached. The token is never printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kong_pulsar_verify::{
    Jwks, JwksFetcher, PROPERTY, Received, Verified, Verifier, VerifyError, properties_from_pairs,
};
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::{Authentication, Pulsar, SubType, TokioExecutor};
use serde_json::{Value, json};

const USAGE: &str = "\
usage: kong-pulsar-verify read --service-url pulsar://host:6650
           (--token-file FILE | --token-env VAR) --topic persistent://tenant/ns/topic
           (--jwks-url URL | --jwks-file FILE)
           [--start earliest|latest] [--max N] [--wait-ms MS] [--issuer NAME]
           [--tls-ca-file PEM]

Prints one JSON line per message read: {\"verified\":true, \"sourceId\", …}
or {\"verified\":false, \"code\", \"reason\"}. Stops after --max messages, or
when nothing arrived for --wait-ms (default 5000).";

struct Args {
    service_url: String,
    token: String,
    topic: String,
    jwks: JwksSource,
    start: InitialPosition,
    max: Option<u64>,
    wait: Duration,
    issuer: Option<String>,
    tls_ca_file: Option<PathBuf>,
}

enum JwksSource {
    Url(String),
    File(PathBuf),
}

/// The key set, fixed (a file) or fetched and cached.
enum Keys {
    Fixed(Jwks),
    Fetched(JwksFetcher),
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("kong-pulsar-verify: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(read(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(why) => {
            eprintln!("kong-pulsar-verify: {why}");
            ExitCode::from(2)
        }
    }
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    match argv.next().as_deref() {
        Some("read") => {}
        Some("-h" | "--help") | None => return Err("a command is needed".into()),
        Some(other) => return Err(format!("unknown command {other:?}")),
    }
    let mut service_url = None;
    let mut token = None;
    let mut topic = None;
    let mut jwks = None;
    let mut start = InitialPosition::Earliest;
    let mut max = None;
    let mut wait = Duration::from_millis(5000);
    let mut issuer = None;
    let mut tls_ca_file = None;
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--service-url" => service_url = Some(value()?),
            "--token-file" => {
                let path = value()?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read --token-file {path}: {e}"))?;
                token = Some(text.trim().to_owned());
            }
            "--token-env" => {
                let var = value()?;
                let text = std::env::var(&var)
                    .map_err(|_| format!("--token-env: {var} is not set (or not UTF-8)"))?;
                token = Some(text.trim().to_owned());
            }
            "--topic" => topic = Some(value()?),
            "--jwks-url" => jwks = Some(JwksSource::Url(value()?)),
            "--jwks-file" => jwks = Some(JwksSource::File(value()?.into())),
            "--start" => {
                start = match value()?.as_str() {
                    "earliest" => InitialPosition::Earliest,
                    "latest" => InitialPosition::Latest,
                    other => return Err(format!("--start {other:?}: earliest or latest")),
                }
            }
            "--max" => {
                let v = value()?;
                max = Some(v.parse().map_err(|_| format!("--max {v:?}: a count"))?);
            }
            "--wait-ms" => {
                let v = value()?;
                wait = Duration::from_millis(
                    v.parse()
                        .map_err(|_| format!("--wait-ms {v:?}: milliseconds"))?,
                );
            }
            "--issuer" => issuer = Some(value()?),
            "--tls-ca-file" => tls_ca_file = Some(value()?.into()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let token = token.ok_or("--token-file or --token-env is required")?;
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(Args {
        service_url: service_url.ok_or("--service-url is required")?,
        token,
        topic: topic.ok_or("--topic is required")?,
        jwks: jwks.ok_or("--jwks-url or --jwks-file is required")?,
        start,
        max,
        wait,
        issuer,
        tls_ca_file,
    })
}

/// Reads and judges; `Ok(all verified)`.
async fn read(args: Args) -> Result<bool, String> {
    let keys = match &args.jwks {
        JwksSource::File(path) => {
            let text = std::fs::read(path)
                .map_err(|e| format!("cannot read --jwks-file {}: {e}", path.display()))?;
            Keys::Fixed(
                serde_json::from_slice(&text)
                    .map_err(|e| format!("--jwks-file {} is not a JWKS: {e}", path.display()))?,
            )
        }
        JwksSource::Url(url) => {
            let fetcher = JwksFetcher::new(url).map_err(|e| e.to_string())?;
            // Fail before reading anything when the key set is unreachable.
            fetcher.jwks().await.map_err(|e| e.to_string())?;
            Keys::Fetched(fetcher)
        }
    };
    let verifier = match &args.issuer {
        Some(issuer) => Verifier::default().with_issuer(issuer),
        None => Verifier::default(),
    };

    let mut builder =
        Pulsar::builder(args.service_url.as_str(), TokioExecutor).with_auth(Authentication {
            name: "token".into(),
            data: args.token.clone().into_bytes(),
        });
    if let Some(ca) = &args.tls_ca_file {
        builder = builder
            .with_certificate_chain_file(ca)
            .map_err(|e| format!("--tls-ca-file {}: {e}", ca.display()))?;
    }
    let client = builder
        .build()
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.service_url))?;
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(&args.topic)
        .with_subscription(subscription_name())
        .with_subscription_type(SubType::Exclusive)
        .with_options(
            ConsumerOptions::default()
                .durable(false)
                .with_initial_position(args.start),
        )
        .build()
        .await
        .map_err(|e| format!("cannot read {}: {e}", args.topic))?;

    let mut read = 0u64;
    let mut all_verified = true;
    while args.max.is_none_or(|max| read < max) {
        let msg = match tokio::time::timeout(args.wait, consumer.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("reading {}: {e}", args.topic)),
            Ok(Some(Ok(msg))) => msg,
        };
        read += 1;
        let line = judge(&msg, &keys, &verifier).await?;
        all_verified &= line["verified"] == true;
        println!("{line}");
        // Non-durable: the ack only keeps the broker's bookkeeping tidy.
        let _ = consumer.ack(&msg).await;
    }
    let _ = consumer.close().await;
    Ok(all_verified)
}

/// One message's JSON line.
async fn judge(
    msg: &pulsar::consumer::Message<Vec<u8>>,
    keys: &Keys,
    verifier: &Verifier,
) -> Result<Value, String> {
    let meta = &msg.payload.metadata;
    let id = &msg.message_id.id;
    let mut line = json!({
        "messageId": format!(
            "{}:{}:{}:{}",
            id.ledger_id,
            id.entry_id,
            id.partition.unwrap_or(-1),
            id.batch_index.unwrap_or(-1)
        ),
        "topic": msg.topic,
        "publishTime": meta.publish_time,
    });
    let verdict = match properties_from_pairs(
        meta.properties
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str())),
    ) {
        Err(e) => Err(e),
        Ok(properties) => {
            // What the message claims, verified or not: the id a reader
            // would look up, shown next to the verdict that qualifies it.
            line["eventId"] = json!(properties.get("kp-event-id"));
            let received = Received {
                topic: &msg.topic,
                payload: &msg.payload.data,
                key: meta.partition_key.as_deref(),
                event_time_ms: meta.event_time,
                properties: &properties,
            };
            match keys {
                Keys::Fixed(jwks) => verifier.verify(&received, jwks),
                Keys::Fetched(fetcher) => fetcher
                    .verify(verifier, &received)
                    .await
                    .map_err(|e| format!("the key set: {e}"))?,
            }
        }
    };
    match verdict {
        Ok(Verified { kid, claims }) => {
            line["verified"] = json!(true);
            line["eventId"] = json!(claims.event_id);
            line["sourceId"] = json!(claims.source_id);
            line["serviceTag"] = json!(claims.service_tag);
            line["authMethod"] = json!(claims.auth_method);
            line["authIssuer"] = json!(claims.auth_issuer);
            line["signer"] = json!(claims.iss);
            line["kid"] = json!(kid);
        }
        Err(e) => {
            line["verified"] = json!(false);
            line["code"] = json!(e.code());
            line["reason"] = json!(reason(&e));
        }
    }
    Ok(line)
}

fn reason(e: &VerifyError) -> String {
    match e {
        // The property is the evidence; say what is missing plainly.
        VerifyError::NoSignature => format!("no {PROPERTY} property: not published by the gateway"),
        other => other.to_string(),
    }
}

/// A subscription name no other reader uses (non-durable, so it vanishes
/// with this process).
fn subscription_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("kp-verify-{}-{nanos:x}", std::process::id())
}
