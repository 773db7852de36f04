//! `KP-AWS-IAM` credentials end to end over HTTP: made by the client helper
//! (library and binary) from role credentials that moto's `sts:AssumeRole`
//! hands out, verified by `IamVerifier` against moto's STS, with the number of
//! STS calls asserted.
//!
//! moto does NOT check SigV4 signatures: it answers GetCallerIdentity for any
//! access key it knows, whatever the signature. So these tests prove the
//! plumbing (token shape, endpoint pinning, forwarding, XML, ARN mapping,
//! caching), not that a forged signature is refused. Signature rejection is
//! covered by the unit tests of the local pre-checks in
//! `shared/src/identity/iam.rs` (including one recomputing the signature from
//! the forwarded request, as STS would), and here by a tiny in-process fake
//! STS that answers 403 `SignatureDoesNotMatch`, proving the 401 mapping
//! through real HTTP.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kong_pulsar::identity::AuthMethod;
use kong_pulsar::identity::iam::client::{TokenRequest, build_token};
use kong_pulsar::identity::iam::{
    FORWARDED_HEADERS, GET_CALLER_IDENTITY_BODY, IamConfig, IamError, IamVerifier,
};
use kp_tests::lambda::function_binary;
use kp_tests::oidc::unreachable_url;
use kp_tests::{stack, unique};
use serde_json::{Value, json};
use url::Url;

const SERVER_ID: &str = "kong-pulsar";
const REGION: &str = "us-east-1";
/// moto's default account.
const ACCOUNT: &str = "123456789012";

fn moto() -> Url {
    Url::parse(&stack().aws_endpoint).expect("AWS_ENDPOINT_URL is a URL")
}

fn verifier(endpoint: &Url) -> IamVerifier {
    let config = IamConfig {
        sts_endpoint: endpoint.clone(),
        server_id: SERVER_ID.to_owned(),
        max_age: std::time::Duration::from_secs(900),
        allowed_accounts: vec![ACCOUNT.to_owned()],
    };
    config.validate().expect("a valid test configuration");
    IamVerifier::new(config, IamVerifier::http_client().expect("HTTP client"))
}

/// Temporary credentials of role `role`, from moto's `sts:AssumeRole`.
async fn assume_role(role: &str, session: &str) -> Credentials {
    assume_role_in(ACCOUNT, role, session).await
}

/// Temporary credentials of role `role` in AWS account `account`: moto lets
/// any caller assume a role in any account, and its GetCallerIdentity then
/// names that account, as real STS does for a cross-account role.
async fn assume_role_in(account: &str, role: &str, session: &str) -> Credentials {
    let sts = aws_sdk_sts::Client::new(&stack().aws_config().await);
    let out = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/{role}"))
        .role_session_name(session)
        .send()
        .await
        .expect("moto AssumeRole");
    let c = out.credentials().expect("AssumeRole returns credentials");
    Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "moto-assume-role",
    )
}

fn token(credentials: &Credentials, endpoint: &Url) -> String {
    let request = TokenRequest {
        server_id: SERVER_ID.to_owned(),
        region: REGION.to_owned(),
        sts_endpoint: endpoint.clone(),
    };
    build_token(credentials, &request, SystemTime::now()).expect("signing")
}

fn assert_is_role(identity: &kong_pulsar::identity::Identity, role: &str, session: &str) {
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role}");
    assert_eq!(identity.principal, role_arn);
    assert_eq!(identity.iam_arn.as_deref(), Some(role_arn.as_str()));
    assert_eq!(identity.service.as_deref(), Some(role));
    assert_eq!(identity.method, AuthMethod::Iam);
    assert_eq!(identity.issuer, "aws-iam");
    assert!(identity.groups.is_empty());
    assert_eq!(identity.claims["session_name"], session);
    assert_eq!(identity.claims["account"], ACCOUNT);
    assert_eq!(
        identity.claims["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}")
    );
}

#[tokio::test]
async fn an_assumed_role_verifies_as_its_role_with_one_sts_call_per_token() {
    let role = unique("publisher");
    let creds = assume_role(&role, "ci-session").await;
    let v = verifier(&moto());
    let t = token(&creds, &moto());

    let identity = v.verify(&t).await.expect("moto's GetCallerIdentity");
    assert_is_role(&identity, &role, "ci-session");
    assert_eq!(v.sts_call_count(), 1);

    // The bench figure: a warm function verifying one token N times.
    const N: u64 = 1_000;
    for _ in 1..N {
        assert_eq!(v.verify(&t).await.expect("cached"), identity);
    }
    println!(
        "STS calls for {N} verifications of one token: {}",
        v.sts_call_count()
    );
    assert_eq!(v.sts_call_count(), 1);

    // Another token (another signature) is another STS call.
    let other = token(&assume_role(&role, "second").await, &moto());
    assert_is_role(&v.verify(&other).await.expect("verifies"), &role, "second");
    assert_eq!(v.sts_call_count(), 2);
}

#[tokio::test]
async fn concurrent_first_uses_of_a_token_share_one_sts_call() {
    let role = unique("burst");
    let creds = assume_role(&role, "burst").await;
    let v = verifier(&moto());
    let t = token(&creds, &moto());
    let results = futures::future::join_all((0..32).map(|_| v.verify(&t))).await;
    for result in results {
        assert_is_role(&result.expect("verifies"), &role, "burst");
    }
    assert_eq!(v.sts_call_count(), 1);
}

#[tokio::test]
async fn the_made_up_arn_moto_gives_plain_credentials_is_refused() {
    // moto answers `arn:aws:sts::123456789012:user/moto` for credentials it
    // did not issue: no such ARN exists in AWS, so it is not guessed at.
    let creds = Credentials::new("testing", "testing", None, None, "static");
    let v = verifier(&moto());
    let err = v.verify(&token(&creds, &moto())).await.unwrap_err();
    assert!(
        matches!(err, IamError::UnexpectedResponse { status: 200, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), 502);
    assert_eq!(v.sts_call_count(), 1);
}

#[tokio::test]
async fn an_unreachable_sts_is_503_and_nothing_is_cached() {
    let creds = assume_role(&unique("down"), "s").await;
    let down = unreachable_url("/").await;
    let v = verifier(&down);
    let t = token(&creds, &down);
    for calls in 1..=2 {
        let err = v.verify(&t).await.unwrap_err();
        assert!(matches!(err, IamError::StsUnavailable { .. }), "{err:?}");
        assert_eq!(err.status(), 503);
        assert!(err.is_unavailable());
        assert_eq!(
            v.sts_call_count(),
            calls,
            "a failure is retried, not cached"
        );
    }
}

#[tokio::test]
async fn a_token_for_another_endpoint_is_refused_without_calling_sts() {
    let creds = assume_role(&unique("elsewhere"), "s").await;
    let v = verifier(&moto());
    let attacker = unreachable_url("/").await;
    let err = v.verify(&token(&creds, &attacker)).await.unwrap_err();
    assert!(matches!(err, IamError::WrongEndpoint), "{err:?}");
    assert_eq!(v.sts_call_count(), 0);
}

/// What the fake STS saw: one entry per request.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(HeaderMap, String)>>,
    redirected_hits: Mutex<u32>,
}

/// A fake STS on loopback answering every POST `/` with `status` and `body`
/// (plus `location` for redirects).
async fn fake_sts(
    status: u16,
    body: &'static str,
    location: Option<&'static str>,
) -> (Url, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    let router = axum::Router::new()
        .route(
            "/",
            axum::routing::post(move |headers: HeaderMap, body_in: String| {
                let state = state.clone();
                async move {
                    state
                        .requests
                        .lock()
                        .expect("lock")
                        .push((headers, body_in));
                    let mut response: Response = (
                        StatusCode::from_u16(status).expect("status"),
                        [("content-type", "text/xml")],
                        body,
                    )
                        .into_response();
                    if let Some(location) = location {
                        response
                            .headers_mut()
                            .insert("location", location.parse().expect("header value"));
                    }
                    response
                }
            }),
        )
        .route(
            "/elsewhere",
            axum::routing::any({
                let seen = seen.clone();
                move || {
                    let seen = seen.clone();
                    async move {
                        *seen.redirected_hits.lock().expect("lock") += 1;
                        "<GetCallerIdentityResponse/>"
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let url = Url::parse(&format!("http://127.0.0.1:{port}/")).expect("URL");
    (url, seen)
}

const SIGNATURE_DOES_NOT_MATCH: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>SignatureDoesNotMatch</Code>
    <Message>The request signature we calculated does not match the signature you provided.</Message>
  </Error>
  <RequestId>4f1b6c1e-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>"#;

#[tokio::test]
async fn a_signature_sts_rejects_is_401_and_only_allow_listed_headers_reach_sts() {
    let (endpoint, seen) = fake_sts(403, SIGNATURE_DOES_NOT_MATCH, None).await;
    let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), None, "t");
    // The helper's token plus headers a hostile token might smuggle (unsigned,
    // so they pass the checks and must simply be dropped), and the body in
    // the other legal order.
    let mut value: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token(&creds, &endpoint))
            .expect("base64"),
    )
    .expect("JSON");
    for (name, v) in [
        ("cookie", "session=stolen"),
        ("x-forwarded-for", "10.0.0.1"),
        (
            "x-amz-target",
            "AWSSecurityTokenServiceV20110615.AssumeRole",
        ),
    ] {
        value["headers"][name] = json!(v);
    }
    let t = URL_SAFE_NO_PAD.encode(value.to_string());

    let v = verifier(&endpoint);
    let err = v.verify(&t).await.unwrap_err();
    assert!(
        matches!(&err, IamError::BadSignature { code } if code == "SignatureDoesNotMatch"),
        "{err:?}"
    );
    assert_eq!(err.status(), 401);
    assert_eq!(v.sts_call_count(), 1);

    let (headers, body) = seen.requests.lock().expect("lock")[0].clone();
    assert_eq!(body, GET_CALLER_IDENTITY_BODY);
    let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = FORWARDED_HEADERS.to_vec();
    // host and content-length are recomputed by the HTTP client; accept is
    // its own unsigned default, not something from the token.
    expected.extend(["host", "content-length", "accept"]);
    expected.sort_unstable();
    assert_eq!(
        names, expected,
        "exactly the allow-list, plus the client's own headers"
    );
    assert_eq!(
        headers["host"].to_str().expect("ASCII"),
        format!("127.0.0.1:{}", endpoint.port().expect("a port"))
    );
    assert_eq!(headers["x-kp-server-id"], SERVER_ID);

    // A refusal is remembered for a short window: the same token again, even
    // by many callers at once, is refused with STS's code and no new call.
    let again = futures::future::join_all((0..8).map(|_| v.verify(&t))).await;
    for err in again {
        assert!(
            matches!(&err, Err(IamError::BadSignature { code }) if code == "SignatureDoesNotMatch"),
            "{err:?}"
        );
    }
    assert_eq!(v.sts_call_count(), 1);
    assert_eq!(seen.requests.lock().expect("lock").len(), 1);

    // Concurrent first uses of another refused token share one STS call too.
    let other = token(
        &Credentials::new("AKIDOTHER", "secret", None, None, "t"),
        &endpoint,
    );
    let first = futures::future::join_all((0..8).map(|_| v.verify(&other))).await;
    assert!(first.iter().all(Result::is_err));
    assert_eq!(v.sts_call_count(), 2);
}

#[tokio::test]
async fn sts_failures_and_redirects_are_not_identities() {
    let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "t");

    let (endpoint, _) = fake_sts(500, "<ErrorResponse/>", None).await;
    let v = verifier(&endpoint);
    let err = v.verify(&token(&creds, &endpoint)).await.unwrap_err();
    assert!(matches!(err, IamError::StsUnavailable { .. }), "{err:?}");
    assert_eq!(err.status(), 503);

    // A redirect is never followed, even to a place that would answer.
    let (endpoint, seen) = fake_sts(307, "", Some("/elsewhere")).await;
    let v = verifier(&endpoint);
    let err = v.verify(&token(&creds, &endpoint)).await.unwrap_err();
    assert!(
        matches!(err, IamError::UnexpectedResponse { status: 307, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), 502);
    assert_eq!(*seen.redirected_hits.lock().expect("lock"), 0);
}

#[tokio::test]
async fn the_helper_binary_prints_a_header_that_verifies() {
    let role = unique("cli");
    let creds = assume_role(&role, "cli-session").await;
    let binary = function_binary("kong-pulsar-token");
    let nowhere = std::env::temp_dir().join(unique("no-aws-config"));
    let output = Command::new(&binary)
        .args(["iam", "--server-id", SERVER_ID])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env(
            "AWS_SESSION_TOKEN",
            creds.session_token().expect("session token"),
        )
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL", &stack().aws_endpoint)
        // Nothing from the machine's own AWS set-up, and no metadata probe.
        .env("AWS_CONFIG_FILE", nowhere.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", nowhere.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .expect("run kong-pulsar-token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let header = stdout.trim_end();
    assert!(header.starts_with("KP-AWS-IAM "), "{header}");
    assert_eq!(stdout.lines().count(), 1);
    let v = verifier(&moto());
    let identity = v
        .verify(
            header
                .strip_prefix("KP-AWS-IAM ")
                .expect("KP-AWS-IAM scheme"),
        )
        .await
        .expect("the binary's header verifies");
    assert_is_role(&identity, &role, "cli-session");

    // Usage errors exit 2 and print nothing on stdout.
    let output = Command::new(&binary)
        .args(["iam"])
        .env_clear()
        .output()
        .expect("run kong-pulsar-token");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--server-id is required"));
}

#[tokio::test]
async fn a_same_named_role_in_another_aws_account_is_refused_after_sts_names_the_account() {
    // Anyone can create a role called checkout-api in their own account. STS
    // (moto here) verifies it and says which account it is in; only the
    // allowed account gets an identity.
    const FOREIGN: &str = "444455556666";
    let role = unique("checkout-api");
    let v = verifier(&moto());

    let foreign = token(&assume_role_in(FOREIGN, &role, "attacker").await, &moto());
    for expected_calls in [1, 1] {
        let err = v.verify(&foreign).await.unwrap_err();
        let IamError::AccountNotAllowed { account, identity } = &err else {
            panic!("expected AccountNotAllowed, got {err:?}");
        };
        assert_eq!(
            account, FOREIGN,
            "moto's GetCallerIdentity names the account"
        );
        assert_eq!(
            identity.principal,
            format!("arn:aws:iam::{FOREIGN}:role/{role}")
        );
        assert_eq!(err.status(), 403);
        // The second time the verified identity comes from the cache, and
        // is refused again: the cache never widens the account list.
        assert_eq!(v.sts_call_count(), expected_calls);
    }

    let ours = token(&assume_role(&role, "ci").await, &moto());
    let identity = v.verify(&ours).await.expect("the allowed account");
    assert_is_role(&identity, &role, "ci");
    assert_eq!(v.sts_call_count(), 2);
}
