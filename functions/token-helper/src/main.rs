//! `kong-pulsar-token`: prints `KP-AWS-IAM <credential>` made from the caller's
//! own AWS credentials, for use as an `Authorization` header:
//!
//! ```text
//! curl -H "Authorization: $(kong-pulsar-token iam --server-id kong-pulsar)" …
//! ```
//!
//! Credentials and region come from the AWS default chain (environment,
//! profile, SSO, container or instance role). The credential itself is built
//! by `kong_pulsar::identity::iam::client`; this file only reads arguments.

use std::error::Error;
use std::process::ExitCode;
use std::time::SystemTime;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::ProvideCredentials as _;
use kong_pulsar::identity::iam::client::{
    TokenRequest, authorization_header, resolve_sts_endpoint,
};

const USAGE: &str = "\
usage: kong-pulsar-token iam --server-id ID [--region REGION] [--sts-endpoint URL]

Prints `KP-AWS-IAM <credential>`: an Authorization header value proving your
AWS identity to Kong Pulsar (a signed sts:GetCallerIdentity request that Kong
Pulsar, not you, sends to STS). Valid for identity.iam.max_age_seconds.

  --server-id ID       the server id Kong Pulsar expects (identity.iam.server_id)
  --region REGION      signing region (default: the AWS SDK's, else us-east-1)
  --sts-endpoint URL   the STS endpoint Kong Pulsar is configured with (default:
                       AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else
                       https://sts.REGION.amazonaws.com/)";

/// The region signed for when neither `--region` nor the SDK names one.
const DEFAULT_REGION: &str = "us-east-1";

struct Options {
    server_id: String,
    region: Option<String>,
    sts_endpoint: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("kong-pulsar-token: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(header) => {
            println!("{header}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "kong-pulsar-token: {}",
                kong_pulsar::telemetry::error_chain(error.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` asks for the usage text.
fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("iam") => {}
        Some("-h" | "--help") => return Ok(None),
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("no command given".to_owned()),
    }
    let (mut server_id, mut region, mut sts_endpoint) = (None, None, None);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let slot = match flag {
            "--server-id" => &mut server_id,
            "--region" => &mut region,
            "--sts-endpoint" => &mut sts_endpoint,
            _ => return Err(format!("unknown argument {arg:?}")),
        };
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        if slot.replace(value).is_some() {
            return Err(format!("{flag} given twice"));
        }
    }
    Ok(Some(Options {
        server_id: server_id.ok_or("--server-id is required")?,
        region,
        sts_endpoint,
    }))
}

async fn run(options: Options) -> Result<String, Box<dyn Error>> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = options.region {
        loader = loader.region(Region::new(region));
    }
    let config = loader.load().await;
    let region = config
        .region()
        .map_or_else(|| DEFAULT_REGION.to_owned(), ToString::to_string);
    let credentials = config
        .credentials_provider()
        .ok_or("no AWS credentials found (environment, profile, SSO or instance role)")?
        .provide_credentials()
        .await?;
    let sts_endpoint = resolve_sts_endpoint(options.sts_endpoint.as_deref(), &region, |name| {
        std::env::var(name).ok()
    })?;
    let request = TokenRequest {
        server_id: options.server_id,
        region,
        sts_endpoint,
    };
    Ok(authorization_header(
        &credentials,
        &request,
        SystemTime::now(),
    )?)
}
