use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use base64::Engine as _;
use serde_json::{Value, json};
use url::Url;

use super::client::{TokenRequest, build_token, default_sts_endpoint, resolve_sts_endpoint};
use super::credential::{BASE64URL, Checked, SigV4Authorization, credential};
use super::sts::{CallerIdentity, classify_error, parse_caller_identity};
use super::*;
use crate::identity::AuthMethod;

/// Never resolves (RFC 6761): a test that reaches the network fails.
const ENDPOINT: &str = "https://sts.kp-test.invalid/";
const SERVER_ID: &str = "kong-pulsar";
const MAX_AGE: Duration = Duration::from_secs(900);
const ACCOUNT: &str = "123456789012";

fn signed_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_677_300) // 2026-11-26T07:15:00Z
}

fn config(endpoint: &str) -> IamConfig {
    IamConfig {
        sts_endpoint: Url::parse(endpoint).unwrap(),
        server_id: SERVER_ID.to_owned(),
        max_age: MAX_AGE,
        allowed_accounts: vec![ACCOUNT.to_owned()],
    }
}

fn verifier(endpoint: &str) -> IamVerifier {
    IamVerifier::new(config(endpoint), IamVerifier::http_client().unwrap())
}

fn credentials(session: bool) -> Credentials {
    Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session.then(|| "FwoGZXIvYXdzEXAMPLESESSIONTOKEN".to_owned()),
        None,
        "unit-test",
    )
}

fn token_for(endpoint: &str, server_id: &str) -> String {
    let request = TokenRequest {
        server_id: server_id.to_owned(),
        region: "us-east-1".to_owned(),
        sts_endpoint: Url::parse(endpoint).unwrap(),
    };
    build_token(&credentials(true), &request, signed_at()).unwrap()
}

fn token() -> String {
    token_for(ENDPOINT, SERVER_ID)
}

fn decode(token: &str) -> Value {
    serde_json::from_slice(&BASE64URL.decode(token).unwrap()).unwrap()
}

fn encode(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The helper's token with `edit` applied to its JSON.
fn edited(edit: impl FnOnce(&mut Value)) -> String {
    let mut value = decode(&token());
    edit(&mut value);
    encode(&value)
}

fn set_header(value: &mut Value, name: &str, v: &str) {
    value["headers"][name] = json!(v);
}

/// Runs only the local checks, at `now`.
fn check_at(v: &IamVerifier, token: &str, now: SystemTime) -> Result<Checked, IamError> {
    v.check(token, now)
}

async fn refused(token: &str) -> IamError {
    refused_at(token, signed_at() + Duration::from_secs(10)).await
}

async fn refused_at(token: &str, now: SystemTime) -> IamError {
    let v = verifier(ENDPOINT);
    let err = v.verify_at(token, now).await.unwrap_err();
    assert_eq!(v.sts_call_count(), 0, "{err:?} was decided on the network");
    assert_eq!(err.status(), 401, "{err:?}");
    err
}

#[test]
fn the_helpers_token_passes_every_local_check() {
    let v = verifier(ENDPOINT);
    let checked = check_at(&v, &token(), signed_at() + Duration::from_secs(5)).unwrap();
    let names: Vec<_> = checked.forward.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, FORWARDED_HEADERS);
    assert_eq!(checked.body, GET_CALLER_IDENTITY_BODY);
    assert_eq!(checked.expires_at, signed_at() + MAX_AGE);
}

#[test]
fn the_helpers_token_has_the_documented_shape() {
    let value = decode(&token());
    assert_eq!(value["method"], "POST");
    assert_eq!(value["url"], ENDPOINT);
    assert_eq!(value["body"], GET_CALLER_IDENTITY_BODY);
    let headers = value["headers"].as_object().unwrap();
    assert_eq!(headers["host"], "sts.kp-test.invalid");
    assert_eq!(headers[SERVER_ID_HEADER], SERVER_ID);
    assert_eq!(headers["x-amz-date"], "20261126T071500Z");
    let auth = headers["authorization"].as_str().unwrap();
    assert!(
        auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/sts/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-kp-server-id, \
             Signature="
        ),
        "{auth}"
    );
    // Padded base64url is accepted too (Vault-style clients pad).
    let padded = base64::engine::general_purpose::URL_SAFE.encode(value.to_string());
    assert!(check_at(&verifier(ENDPOINT), &padded, signed_at()).is_ok());
}

/// What STS does with the forwarded request, written from the SigV4
/// specification rather than with the signer: proves the forwarded
/// headers and body are everything the signature covers. (moto does not
/// check signatures, so nothing else would notice a missing header.)
#[test]
fn the_forwarded_request_reproduces_the_signature() {
    let v = verifier(ENDPOINT);
    let checked = check_at(&v, &token(), signed_at()).unwrap();
    let header = |name: &str| {
        checked
            .forward
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    let auth = header("authorization").unwrap();
    let parsed = SigV4Authorization::parse(&auth).unwrap();
    let canonical_headers: String = parsed
        .signed_headers
        .iter()
        .map(|name| {
            let value = match *name {
                // What the HTTP client derives from the configured endpoint.
                "host" => v.authority.clone(),
                other => header(other).unwrap(),
            };
            format!("{name}:{value}\n")
        })
        .collect();
    let signed_headers = parsed.signed_headers.join(";");
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(checked.body.as_bytes()))
    );
    let date = header("x-amz-date").unwrap();
    let scope = format!("{}/us-east-1/sts/aws4_request", &date[..8]);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = aws_sigv4::sign::v4::generate_signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        signed_at(),
        "us-east-1",
        "sts",
    );
    let signature = aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes());
    assert!(auth.ends_with(&format!("Signature={signature}")), "{auth}");
}

#[tokio::test]
async fn a_token_naming_another_endpoint_never_reaches_the_network() {
    for url in [
        "https://attacker.example/",
        "https://sts.kp-test.invalid.evil.test/",
        "https://evil.test/sts.kp-test.invalid/",
        "https://203.0.113.7/",
        "https://[2001:db8::1]/",
        "http://sts.kp-test.invalid/",
        "https://sts.kp-test.invalid@attacker.example/",
        "https://user:pass@sts.kp-test.invalid/",
        "https://sts.kp-test.invalid:8443/",
        "https://sts.kp-test.invalid/other",
        "https://sts.kp-test.invalid/?Action=AssumeRole",
        "https://sts.kp-test.invalid/#x",
        "https://sts.kp-test.invalid./",
        "ftp://sts.kp-test.invalid/",
        "not a url",
    ] {
        let t = edited(|v| v["url"] = json!(url));
        assert!(
            matches!(refused(&t).await, IamError::WrongEndpoint),
            "{url}"
        );
    }
    // Normalisation: case and an explicit default port are the same URL.
    let t = edited(|v| v["url"] = json!("HTTPS://STS.kp-test.INVALID:443/"));
    assert!(check_at(&verifier(ENDPOINT), &t, signed_at()).is_ok());
}

#[tokio::test]
async fn the_host_header_must_be_the_endpoints() {
    for host in [
        "attacker.example",
        "sts.kp-test.invalid:8443",
        "sts.kp-test.invalid.evil.test",
    ] {
        let t = edited(|v| set_header(v, "host", host));
        assert!(
            matches!(refused(&t).await, IamError::WrongEndpoint),
            "{host}"
        );
    }
    let t = edited(|v| {
        v["headers"].as_object_mut().unwrap().remove("host");
    });
    assert!(matches!(refused(&t).await, IamError::WrongEndpoint));
}

#[tokio::test]
async fn http_is_accepted_only_when_the_configured_endpoint_is_http() {
    const LOCAL: &str = "http://127.0.0.1:9/";
    let v = verifier(LOCAL);
    let t = token_for(LOCAL, SERVER_ID);
    assert!(check_at(&v, &t, signed_at()).is_ok());
    let https = edited(|v| {
        v["url"] = json!("https://127.0.0.1:9/");
        set_header(v, "host", "127.0.0.1:9");
    });
    assert!(matches!(
        check_at(&v, &https, signed_at()),
        Err(IamError::WrongEndpoint)
    ));
}

#[tokio::test]
async fn only_a_post_of_exactly_get_caller_identity_is_accepted() {
    for method in ["GET", "post", "PUT", ""] {
        let t = edited(|v| v["method"] = json!(method));
        assert!(
            matches!(refused(&t).await, IamError::WrongMethod),
            "{method}"
        );
    }
    for body in [
        "Action=AssumeRole&Version=2011-06-15",
        "Action=GetCallerIdentity&Version=2011-06-15&RoleArn=x",
        "Action=GetCallerIdentity&Version=2011-06-15&",
        "Action=GetCallerIdentity&Action=GetCallerIdentity&Version=2011-06-15",
        "Action=GetCallerIdentity&Version=2011-06-15&Version=2011-06-15",
        "Action=GetCallerIdentity",
        "Action=GetCaller%49dentity&Version=2011-06-15",
        "action=GetCallerIdentity&version=2011-06-15",
        "Action=GetCallerIdentity;Version=2011-06-15",
        "",
    ] {
        let t = edited(|v| v["body"] = json!(body));
        assert!(matches!(refused(&t).await, IamError::WrongBody), "{body}");
    }
    let reversed = edited(|v| v["body"] = json!("Version=2011-06-15&Action=GetCallerIdentity"));
    assert!(check_at(&verifier(ENDPOINT), &reversed, signed_at()).is_ok());

    for content_type in [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded; charset=latin1",
    ] {
        let t = edited(|v| set_header(v, "content-type", content_type));
        assert!(
            matches!(refused(&t).await, IamError::WrongBody),
            "{content_type}"
        );
    }
    let t = edited(|v| set_header(v, "content-length", "44"));
    assert!(matches!(refused(&t).await, IamError::WrongBody));
    let t = edited(|v| set_header(v, "content-length", "43"));
    assert!(check_at(&verifier(ENDPOINT), &t, signed_at()).is_ok());
}

#[tokio::test]
async fn the_server_id_must_be_present_signed_and_ours() {
    let t = token_for(ENDPOINT, "another-service");
    assert!(matches!(
        refused(&t).await,
        IamError::WrongServerId { found } if found == "another-service"
    ));
    let t = edited(|v| {
        v["headers"]
            .as_object_mut()
            .unwrap()
            .remove(SERVER_ID_HEADER);
    });
    assert!(matches!(refused(&t).await, IamError::MissingServerId));
    // Present, right value, but not covered by the signature.
    let t = edited(|v| {
        let auth = v["headers"]["authorization"].as_str().unwrap().to_owned();
        set_header(v, "authorization", &auth.replace(";x-kp-server-id", ""));
    });
    assert!(matches!(refused(&t).await, IamError::ServerIdNotSigned));
    // Header names are case-insensitive.
    let t = edited(|v| {
        let headers = v["headers"].as_object_mut().unwrap();
        let id = headers.remove(SERVER_ID_HEADER).unwrap();
        headers.insert("X-KP-Server-Id".to_owned(), id);
    });
    assert!(check_at(&verifier(ENDPOINT), &t, signed_at()).is_ok());
}

#[tokio::test]
async fn the_signature_must_be_recent_and_not_from_the_future() {
    let t = token();
    assert!(matches!(
        refused_at(&t, signed_at() + MAX_AGE).await,
        IamError::Stale
    ));
    assert!(matches!(
        refused_at(&t, signed_at() + Duration::from_secs(86_400)).await,
        IamError::Stale
    ));
    assert!(matches!(
        refused_at(&t, signed_at() - MAX_FUTURE_SKEW - Duration::from_secs(1)).await,
        IamError::NotYetValid
    ));
    let v = verifier(ENDPOINT);
    assert!(check_at(&v, &t, signed_at() - MAX_FUTURE_SKEW).is_ok());
    assert!(check_at(&v, &t, signed_at() + MAX_AGE - Duration::from_secs(1)).is_ok());

    for date in [
        "2026-11-26T07:15:00Z",
        "20261126T0715Z",
        "20261326T071500Z",
        "x",
    ] {
        let t = edited(|v| set_header(v, "x-amz-date", date));
        assert!(
            matches!(refused(&t).await, IamError::Malformed { .. }),
            "{date}"
        );
    }
    // A date outside the signature's credential scope.
    let t = edited(|v| set_header(v, "x-amz-date", "20261127T071500Z"));
    assert!(matches!(
        refused_at(&t, signed_at() + Duration::from_secs(86_400)).await,
        IamError::Malformed { .. }
    ));
    let t = edited(|v| {
        let auth = v["headers"]["authorization"].as_str().unwrap().to_owned();
        set_header(v, "authorization", &auth.replace(";x-amz-date", ""));
    });
    assert!(matches!(refused(&t).await, IamError::Malformed { .. }));
}

#[tokio::test]
async fn malformed_and_oversized_credentials_are_refused_before_decoding_json() {
    for bad in ["", "!!!", "a b", "eyJ9", "e30.e30"] {
        assert!(
            matches!(refused(bad).await, IamError::Malformed { .. }),
            "{bad}"
        );
    }
    for json in [
        json!([]),
        json!("x"),
        json!({}),
        json!({"method": "POST", "url": ENDPOINT, "headers": {}}),
        json!({"method": "POST", "url": ENDPOINT, "headers": {}, "body": GET_CALLER_IDENTITY_BODY, "extra": 1}),
        json!({"method": "POST", "url": ENDPOINT, "headers": [], "body": GET_CALLER_IDENTITY_BODY}),
        json!({"method": 1, "url": ENDPOINT, "headers": {}, "body": GET_CALLER_IDENTITY_BODY}),
    ] {
        assert!(
            matches!(refused(&encode(&json)).await, IamError::Malformed { .. }),
            "{json}"
        );
    }
    // A duplicated field, which a map-based parser would silently resolve.
    let mut text = decode(&token()).to_string();
    text.insert_str(1, "\"url\":\"https://attacker.example/\",");
    let dup = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    assert!(matches!(refused(&dup).await, IamError::Malformed { .. }));

    let huge = "A".repeat(MAX_CREDENTIAL_BYTES + 1);
    assert!(matches!(refused(&huge).await, IamError::Oversized));
    let big_header = edited(|v| set_header(v, "x-filler", &"x".repeat(MAX_CREDENTIAL_BYTES)));
    assert!(matches!(refused(&big_header).await, IamError::Oversized));
}

#[tokio::test]
async fn headers_must_be_unambiguous_and_well_formed() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "the same header twice, in another case",
            Box::new(|v| set_header(v, "X-Amz-Date", "20261126T071500Z")),
        ),
        (
            "two values",
            Box::new(|v| {
                v["headers"]["x-amz-date"] = json!(["20261126T071500Z", "20261126T071501Z"])
            }),
        ),
        (
            "a line break",
            Box::new(|v| set_header(v, "x-kp-server-id", "kong-pulsar\r\nx: y")),
        ),
        ("a bad name", Box::new(|v| set_header(v, "bad name", "x"))),
        (
            "a non-string value",
            Box::new(|v| v["headers"]["x-amz-date"] = json!(1)),
        ),
        (
            "no Authorization",
            Box::new(|v| {
                v["headers"]
                    .as_object_mut()
                    .unwrap()
                    .remove("authorization");
            }),
        ),
        (
            "SigV4A",
            Box::new(|v| {
                let auth = v["headers"]["authorization"].as_str().unwrap().to_owned();
                set_header(
                    v,
                    "authorization",
                    &auth.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
                );
            }),
        ),
        (
            "a short signature",
            Box::new(|v| {
                let auth = v["headers"]["authorization"].as_str().unwrap().to_owned();
                let cut = &auth[..auth.len() - 2];
                set_header(v, "authorization", cut);
            }),
        ),
        (
            "a repeated SignedHeaders",
            Box::new(|v| {
                let auth = v["headers"]["authorization"].as_str().unwrap().to_owned();
                set_header(v, "authorization", &format!("{auth}, SignedHeaders=host"));
            }),
        ),
        (
            "a signed header that is absent",
            Box::new(|v| {
                v["headers"]
                    .as_object_mut()
                    .unwrap()
                    .remove("x-amz-security-token");
            }),
        ),
    ];
    for (what, edit) in cases {
        let t = edited(|v| edit(v));
        assert!(
            matches!(refused(&t).await, IamError::Malformed { .. }),
            "{what}"
        );
    }
    // A one-element list is a value (Go's http.Header shape).
    let t = edited(|v| v["headers"]["x-amz-date"] = json!(["20261126T071500Z"]));
    assert!(check_at(&verifier(ENDPOINT), &t, signed_at()).is_ok());
    // Signed for another service.
    let t = edited(|v| {
        let auth = v["headers"]["authorization"].as_str().unwrap().to_owned();
        set_header(v, "authorization", &auth.replace("/sts/", "/iam/"));
    });
    assert!(matches!(refused(&t).await, IamError::WrongEndpoint));
}

#[tokio::test]
async fn only_allow_listed_headers_are_signed_or_forwarded() {
    let t = edited(|v| {
        set_header(v, "cookie", "session=secret");
        let auth = v["headers"]["authorization"].as_str().unwrap().to_owned();
        set_header(
            v,
            "authorization",
            &auth.replace("SignedHeaders=", "SignedHeaders=cookie;"),
        );
    });
    assert!(matches!(refused(&t).await, IamError::HeaderNotAllowed(h) if h == "cookie"));

    let t = edited(|v| {
        set_header(v, "cookie", "session=secret");
        set_header(v, "x-forwarded-for", "10.0.0.1");
        set_header(v, "transfer-encoding", "chunked");
    });
    let checked = check_at(&verifier(ENDPOINT), &t, signed_at()).unwrap();
    assert!(
        checked
            .forward
            .iter()
            .all(|(name, _)| FORWARDED_HEADERS.contains(name))
    );
    assert_eq!(checked.forward.len(), FORWARDED_HEADERS.len());
}

#[test]
fn the_configured_endpoint_is_validated() {
    assert!(config(ENDPOINT).validate().is_ok());
    assert!(config("http://127.0.0.1:5000").validate().is_ok());
    assert!(config("http://localhost:5000/").validate().is_ok());
    for bad in [
        "http://sts.amazonaws.com/",
        "https://sts.amazonaws.com/sts",
        "https://sts.amazonaws.com/?x=1",
        "https://u:p@sts.amazonaws.com/",
    ] {
        assert!(
            matches!(config(bad).validate(), Err(IamError::InvalidConfig(_))),
            "{bad}"
        );
    }
    let mut c = config(ENDPOINT);
    c.server_id = " x".to_owned();
    assert!(c.validate().is_err());
    c.server_id = String::new();
    assert!(c.validate().is_err());
}

#[tokio::test]
async fn an_insecure_configured_endpoint_is_never_called() {
    let v = verifier("http://sts.kp-test.invalid/");
    let t = token_for("http://sts.kp-test.invalid/", SERVER_ID);
    let err = v.verify_at(&t, signed_at()).await.unwrap_err();
    assert!(matches!(err, IamError::InvalidConfig(_)), "{err:?}");
    assert_eq!(err.status(), 500);
    assert_eq!(v.sts_call_count(), 0);
}

#[test]
fn the_scheme_is_stripped_case_insensitively() {
    assert_eq!(credential("KP-AWS-IAM abc"), Some("abc"));
    assert_eq!(credential("kp-aws-iam  abc"), Some("abc"));
    assert_eq!(credential("Bearer abc"), None);
    assert_eq!(credential("KP-AWS-IAMabc"), None);
}

fn caller(arn: &str) -> CallerIdentity {
    CallerIdentity {
        arn: arn.to_owned(),
        user_id: "AROAEXAMPLE:session".to_owned(),
        account: "123456789012".to_owned(),
    }
}

#[test]
fn assumed_roles_become_their_role() {
    let id = caller("arn:aws:sts::123456789012:assumed-role/publisher/i-0abc")
        .into_identity()
        .unwrap();
    assert_eq!(id.principal, "arn:aws:iam::123456789012:role/publisher");
    assert_eq!(id.iam_arn.as_deref(), Some(id.principal.as_str()));
    assert_eq!(id.service.as_deref(), Some("publisher"));
    assert_eq!(id.method, AuthMethod::Iam);
    assert_eq!(id.issuer, ISSUER);
    assert!(id.groups.is_empty() && id.kong_consumer.is_none());
    assert_eq!(id.claims["session_name"], "i-0abc");
    assert_eq!(id.claims["account"], "123456789012");
    assert_eq!(id.claims["user_id"], "AROAEXAMPLE:session");
    assert_eq!(
        id.claims["arn"],
        "arn:aws:sts::123456789012:assumed-role/publisher/i-0abc"
    );
    let cn = caller("arn:aws-cn:sts::123456789012:assumed-role/r/s")
        .into_identity()
        .unwrap();
    assert_eq!(cn.principal, "arn:aws-cn:iam::123456789012:role/r");
}

#[test]
fn users_root_and_federated_users_keep_their_arn() {
    for (arn, service) in [
        ("arn:aws:iam::123456789012:user/alice", Some("alice")),
        (
            "arn:aws:iam::123456789012:user/team/ci/deployer",
            Some("deployer"),
        ),
        ("arn:aws:iam::123456789012:root", None),
        ("arn:aws:sts::123456789012:federated-user/bob", Some("bob")),
    ] {
        let id = caller(arn).into_identity().unwrap();
        assert_eq!(id.principal, arn);
        assert_eq!(id.iam_arn.as_deref(), Some(arn));
        assert_eq!(id.service.as_deref(), service, "{arn}");
        assert!(!id.claims.contains_key("session_name"));
    }
}

#[test]
fn other_arn_shapes_are_refused() {
    for arn in [
        // What moto answers for plain (non-role) credentials: no such ARN
        // exists in AWS.
        "arn:aws:sts::123456789012:user/moto",
        "arn:aws:iam::123456789012:role/r",
        "arn:aws:sts::123456789012:assumed-role/r",
        "arn:aws:sts::123456789012:assumed-role/r/s/extra",
        "arn:aws:sts::123456789012:assumed-role/r*/s",
        "arn:aws:iam::123456789012:user/",
        "arn:aws:iam::123456789012:user//alice",
        "arn:aws:iam::12345:user/alice",
        "arn:aws:iam::210987654321:user/alice",
        "arn:aws:iam:us-east-1:123456789012:user/alice",
        "arn:aws:s3:::bucket",
        "not-an-arn",
    ] {
        assert!(
            matches!(
                caller(arn).into_identity(),
                Err(IamError::UnexpectedResponse { .. })
            ),
            "{arn}"
        );
    }
}

#[test]
fn get_caller_identity_responses_are_parsed() {
    let xml = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
<Arn>arn:aws:sts::123456789012:assumed-role/R/my&amp;session</Arn>
<UserId>AROA123:my&amp;session</UserId>
<Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>01234567-89ab</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"#;
    let c = parse_caller_identity(xml).unwrap();
    assert_eq!(c.arn, "arn:aws:sts::123456789012:assumed-role/R/my&session");
    assert_eq!(c.user_id, "AROA123:my&session");
    assert_eq!(c.account, "123456789012");

    for bad in [
        "",
        "<html>hello</html>",
        "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>a</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>",
        "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>a</Arn><Arn>b</Arn><UserId>u</UserId><Account>1</Account></GetCallerIdentityResult></GetCallerIdentityResponse>",
        "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn><x/></Arn><UserId>u</UserId><Account>1</Account></GetCallerIdentityResult></GetCallerIdentityResponse>",
        "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>a&bogus;</Arn><UserId>u</UserId><Account>1</Account></GetCallerIdentityResult></GetCallerIdentityResponse>",
    ] {
        assert!(
            matches!(
                parse_caller_identity(bad),
                Err(IamError::UnexpectedResponse { .. })
            ),
            "{bad}"
        );
    }
}

fn error_xml(code: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>…</Message></Error><RequestId>r</RequestId></ErrorResponse>"#
    )
}

#[test]
fn sts_errors_map_onto_401_503_and_502() {
    for code in [
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "ExpiredToken",
        "IncompleteSignature",
        "AccessDenied",
    ] {
        let err = classify_error(403, &error_xml(code));
        assert!(
            matches!(&err, IamError::BadSignature { code: c } if c == code),
            "{err:?}"
        );
        assert_eq!(err.status(), 401);
    }
    let err = classify_error(400, &error_xml("IncompleteSignature"));
    assert_eq!(err.status(), 401);
    assert!(
        matches!(classify_error(403, "nope"), IamError::BadSignature { code } if code == "HTTP 403")
    );
    for (status, body) in [
        (500, error_xml("InternalFailure")),
        (503, String::new()),
        (400, error_xml("Throttling")),
        (429, String::new()),
    ] {
        let err = classify_error(status, &body);
        assert!(
            matches!(err, IamError::StsUnavailable { .. }),
            "{status} {err:?}"
        );
        assert_eq!(err.status(), 503);
    }
    for status in [301, 400, 404] {
        let err = classify_error(status, &error_xml("InvalidAction"));
        assert!(
            matches!(err, IamError::UnexpectedResponse { .. }),
            "{status}"
        );
        assert_eq!(err.status(), 502);
    }
    // An STS-supplied code is sanitised before it is echoed.
    let err = classify_error(403, &error_xml("Bad\u{1b}[31m"));
    assert!(matches!(err, IamError::BadSignature { code } if code == "Bad?[31m"));
}

#[tokio::test]
async fn the_cache_serves_until_the_signature_expires() {
    let v = verifier(ENDPOINT);
    let key: [u8; 32] = Sha256::digest(b"cred").into();
    let id = caller("arn:aws:iam::123456789012:user/alice")
        .into_identity()
        .unwrap();
    let now = signed_at();
    let slot = v.cache.slot(key, now + MAX_AGE, now);
    slot.identity.set(id.clone()).unwrap();
    assert_eq!(
        v.cache.fresh(&key, now + MAX_AGE - Duration::from_secs(1)),
        Some(id)
    );
    assert_eq!(v.cache.fresh(&key, now + MAX_AGE), None);
    // An expired entry is not served by verify either: the date check
    // refuses it (there is no credential "cred" to re-check, so it is
    // malformed, which proves the cache was bypassed).
    assert!(matches!(
        v.verify_at("cred", now + MAX_AGE).await,
        Err(IamError::Malformed { .. })
    ));
    assert_eq!(v.sts_call_count(), 0);
}

#[tokio::test]
async fn a_network_failure_is_unavailable_and_not_cached() {
    // Port 9 (discard) on loopback: connection refused, quickly.
    const LOCAL: &str = "http://127.0.0.1:9/";
    let v = verifier(LOCAL);
    let now = SystemTime::now();
    let fresh = {
        let request = TokenRequest {
            server_id: SERVER_ID.to_owned(),
            region: "us-east-1".to_owned(),
            sts_endpoint: Url::parse(LOCAL).unwrap(),
        };
        build_token(&credentials(false), &request, now).unwrap()
    };
    for expected_calls in 1..=2 {
        let err = v.verify_at(&fresh, now).await.unwrap_err();
        assert!(
            matches!(
                err,
                IamError::StsUnavailable {
                    source: Some(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.status(), 503);
        assert!(err.source().is_some(), "the transport error is kept");
        assert_eq!(v.sts_call_count(), expected_calls);
    }
    assert_eq!(v.cache.len(), 0);
}

#[test]
fn the_client_resolves_its_endpoint_like_the_sdks() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let resolve = |explicit, vars| resolve_sts_endpoint(explicit, "eu-west-1", env(vars)).unwrap();
    assert_eq!(
        resolve(None, &[]).as_str(),
        "https://sts.eu-west-1.amazonaws.com/"
    );
    assert_eq!(
        resolve(None, &[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]).as_str(),
        "http://127.0.0.1:5000/"
    );
    assert_eq!(
        resolve(
            None,
            &[
                ("AWS_ENDPOINT_URL", "http://a:1"),
                ("AWS_ENDPOINT_URL_STS", "http://b:2")
            ]
        )
        .as_str(),
        "http://b:2/"
    );
    assert_eq!(
        resolve(
            None,
            &[
                ("AWS_ENDPOINT_URL", "http://a:1"),
                ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
            ]
        )
        .as_str(),
        "https://sts.eu-west-1.amazonaws.com/"
    );
    assert_eq!(
        resolve(
            Some("https://sts.amazonaws.com"),
            &[("AWS_ENDPOINT_URL", "http://a:1")]
        )
        .as_str(),
        "https://sts.amazonaws.com/"
    );
    assert_eq!(
        default_sts_endpoint("cn-north-1").unwrap().as_str(),
        "https://sts.cn-north-1.amazonaws.com.cn/"
    );
    assert!(
        resolve_sts_endpoint(Some("https://sts.amazonaws.com/x"), "us-east-1", env(&[])).is_err()
    );
    assert!(default_sts_endpoint("us-east-1/../x").is_err());
}

#[test]
fn the_client_refuses_bad_inputs() {
    let request = |server_id: &str, region: &str| TokenRequest {
        server_id: server_id.to_owned(),
        region: region.to_owned(),
        sts_endpoint: Url::parse(ENDPOINT).unwrap(),
    };
    let build = |r: TokenRequest| build_token(&credentials(false), &r, signed_at());
    assert!(matches!(
        build(request("", "us-east-1")),
        Err(client::TokenError::ServerId)
    ));
    assert!(matches!(
        build(request("a\nb", "us-east-1")),
        Err(client::TokenError::ServerId)
    ));
    assert!(matches!(
        build(request("x", "US EAST")),
        Err(client::TokenError::Region(_))
    ));
    // Without a session token, nothing about one is sent.
    let t = build(request(SERVER_ID, "us-east-1")).unwrap();
    let headers = decode(&t)["headers"].clone();
    assert!(headers.get("x-amz-security-token").is_none());
    assert!(check_at(&verifier(ENDPOINT), &t, signed_at()).is_ok());
}

#[test]
fn errors_never_carry_the_credential() {
    let t = token();
    let value = decode(&t);
    let auth = value["headers"]["authorization"].as_str().unwrap();
    let signature = auth.rsplit('=').next().unwrap();
    let v = verifier(ENDPOINT);
    let mut errors = Vec::new();
    for now in [
        signed_at() + MAX_AGE,
        signed_at() - Duration::from_secs(3600),
    ] {
        errors.push(check_at(&v, &t, now).err().unwrap());
    }
    errors.push(check_at(&v, &t[1..], signed_at()).err().unwrap());
    for err in errors {
        let text = format!("{} {:?}", crate::telemetry::error_chain(&err), err);
        assert!(!text.contains(signature), "{text}");
        assert!(!text.contains("FwoGZXIvYXdzEXAMPLESESSIONTOKEN"), "{text}");
    }
}

/// A credential signed now for [`ENDPOINT`], and the cache key it has.
fn fresh_token() -> (String, [u8; 32]) {
    let request = TokenRequest {
        server_id: SERVER_ID.to_owned(),
        region: "us-east-1".to_owned(),
        sts_endpoint: Url::parse(ENDPOINT).unwrap(),
    };
    let token = build_token(&credentials(true), &request, SystemTime::now()).unwrap();
    let key = Sha256::digest(token.as_bytes()).into();
    (token, key)
}

fn caller_in(account: &str, arn: &str) -> Identity {
    CallerIdentity {
        arn: arn.to_owned(),
        user_id: "AROAEXAMPLE:session".to_owned(),
        account: account.to_owned(),
    }
    .into_identity()
    .unwrap()
}

#[tokio::test]
async fn a_role_in_another_aws_account_is_refused_even_from_the_cache() {
    // The verified identity is planted in the cache (as a first, successful
    // STS call would leave it): the account check runs on every use, so
    // neither the cache nor a role name shared across accounts widens it.
    for (account, allowed) in [("123456789012", true), ("444455556666", false)] {
        let v = verifier(ENDPOINT);
        let (token, key) = fresh_token();
        let now = SystemTime::now();
        let id = caller_in(
            account,
            &format!("arn:aws:sts::{account}:assumed-role/checkout-api/s1"),
        );
        v.cache
            .slot(key, now + MAX_AGE, now)
            .identity
            .set(id)
            .unwrap();
        let result = v.verify(&token).await;
        assert_eq!(v.sts_call_count(), 0, "served from the cache");
        if allowed {
            assert_eq!(
                result.unwrap().principal,
                "arn:aws:iam::123456789012:role/checkout-api"
            );
            continue;
        }
        let err = result.unwrap_err();
        assert_eq!(err.status(), 403);
        assert!(!err.is_unavailable());
        let IamError::AccountNotAllowed { account, identity } = &err else {
            panic!("expected AccountNotAllowed, got {err:?}");
        };
        assert_eq!(account, "444455556666");
        assert_eq!(
            identity.principal,
            "arn:aws:iam::444455556666:role/checkout-api"
        );
        assert!(err.to_string().contains("444455556666"), "{err}");
    }
}

#[tokio::test]
async fn a_cached_identity_never_outlives_x_amz_date_plus_max_age() {
    // Signed at signed_at(); cached as a successful STS call would cache it.
    let v = verifier(ENDPOINT);
    let t = token();
    let key: [u8; 32] = Sha256::digest(t.as_bytes()).into();
    let checked = v.check(&t, signed_at()).unwrap();
    assert_eq!(checked.expires_at, signed_at() + MAX_AGE);
    let id = caller("arn:aws:iam::123456789012:user/alice")
        .into_identity()
        .unwrap();
    v.cache
        .slot(key, checked.expires_at, signed_at())
        .identity
        .set(id.clone())
        .unwrap();
    let last_second = signed_at() + MAX_AGE - Duration::from_secs(1);
    assert_eq!(v.verify_at(&t, last_second).await.unwrap(), id);
    // At X-Amz-Date + max_age the cache has nothing, and the credential is
    // stale: no STS call, no identity.
    assert!(matches!(
        v.verify_at(&t, signed_at() + MAX_AGE).await,
        Err(IamError::Stale)
    ));
    assert_eq!(v.sts_call_count(), 0);
}

#[test]
fn a_configuration_wider_than_sts_or_every_account_is_refused() {
    let with = |change: &dyn Fn(&mut IamConfig)| {
        let mut c = config(ENDPOINT);
        change(&mut c);
        c.validate()
    };
    assert!(with(&|_| {}).is_ok());
    assert!(with(&|c| c.max_age = MAX_AGE).is_ok());
    type Change<'a> = &'a dyn Fn(&mut IamConfig);
    let refused: [(&str, Change); 6] = [
        ("max_age past STS's 15 minutes", &|c| {
            c.max_age = MAX_AGE + Duration::from_secs(1)
        }),
        ("an hour", &|c| c.max_age = Duration::from_secs(3600)),
        ("zero", &|c| c.max_age = Duration::ZERO),
        ("no account", &|c| c.allowed_accounts.clear()),
        ("11 digits", &|c| {
            c.allowed_accounts = vec!["12345678901".into()]
        }),
        ("a wildcard account", &|c| {
            c.allowed_accounts = vec!["*".into()]
        }),
    ];
    for (what, change) in refused {
        assert!(
            matches!(with(change), Err(IamError::InvalidConfig(_))),
            "{what}"
        );
    }
}
