//! The `KP-AWS-IAM` credential on the wire: its JSON shape, its encoding and
//! every check made before the network (endpoint, method, body, headers,
//! server id, signature age). Shared with [`super::client`], which must
//! produce exactly what these checks accept.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use url::Url;

use super::{IamError, IamVerifier, echo};

/// The signed header naming the service a credential is meant for.
pub const SERVER_ID_HEADER: &str = "x-kp-server-id";

/// Longest credential accepted (the encoded part after the scheme). A real one
/// is 1–3 KiB, most of it the session token; anything larger is refused before
/// it is decoded.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// How far in the future `X-Amz-Date` may be (clock skew between the caller
/// and this function).
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);

/// The only body a credential may carry.
pub const GET_CALLER_IDENTITY_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// Headers copied from the credential to the STS request. Nothing else from
/// the token reaches STS, whatever the token says (no `Cookie`, no
/// `X-Forwarded-*`, no `Transfer-Encoding`).
pub const FORWARDED_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "x-amz-date",
    "x-amz-security-token",
    SERVER_ID_HEADER,
];

/// Headers a credential may list in `SignedHeaders`: the forwarded ones plus
/// `host` and `content-length`, which are checked and then recomputed
/// identically by the HTTP client.
pub const SIGNABLE_HEADERS: [&str; 6] = [
    "content-length",
    "content-type",
    "host",
    "x-amz-date",
    "x-amz-security-token",
    SERVER_ID_HEADER,
];

pub(super) const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The credential's encoding: base64url, with or without padding (Vault's
/// clients pad, ours does not).
pub(super) const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The credential in an `Authorization` header value: what follows
/// `KP-AWS-IAM ` (the scheme compared case-insensitively, as RFC 9110 says).
/// Test-only: the authenticator splits every scheme off in one place.
#[cfg(test)]
pub(super) fn credential(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case(super::SCHEME)
        .then(|| rest.trim_start_matches(' '))
}

impl IamVerifier {
    /// Every check that needs no network, in the order the module docs give.
    pub(super) fn check(&self, credential: &str, now: SystemTime) -> Result<Checked, IamError> {
        let json = BASE64URL
            .decode(credential)
            .map_err(|e| IamError::malformed_by("not base64url", e))?;
        let request: SignedRequest = serde_json::from_slice(&json)
            .map_err(|e| IamError::malformed_by("not the expected JSON object", e))?;
        self.check_url(&request.url)?;
        if request.method != "POST" {
            return Err(IamError::WrongMethod);
        }
        check_body(&request.body)?;
        let headers = request.headers.into_map()?;
        let header = |name: &str| headers.get(name).map(String::as_str);
        let auth = SigV4Authorization::parse(
            header("authorization")
                .ok_or_else(|| IamError::malformed("no Authorization header"))?,
        )?;

        if !header("host").is_some_and(|h| h.eq_ignore_ascii_case(&self.authority)) {
            return Err(IamError::WrongEndpoint);
        }
        if !header("content-type").is_some_and(is_form_content_type) {
            return Err(IamError::WrongBody);
        }
        if header("content-length").is_some_and(|len| len != request.body.len().to_string()) {
            return Err(IamError::WrongBody);
        }

        let server_id = header(SERVER_ID_HEADER).ok_or(IamError::MissingServerId)?;
        if !auth.signs(SERVER_ID_HEADER) {
            return Err(IamError::ServerIdNotSigned);
        }
        if server_id != self.config.server_id {
            return Err(IamError::WrongServerId {
                found: echo(server_id),
            });
        }

        for name in &auth.signed_headers {
            if !SIGNABLE_HEADERS.contains(name) {
                return Err(IamError::HeaderNotAllowed(echo(name)));
            }
            if !headers.contains_key(*name) {
                return Err(IamError::malformed("a signed header is missing"));
            }
        }
        if !auth.signs("host") {
            return Err(IamError::malformed("host is not signed"));
        }

        let date = header("x-amz-date").ok_or_else(|| IamError::malformed("no X-Amz-Date"))?;
        if !auth.signs("x-amz-date") {
            return Err(IamError::malformed("X-Amz-Date is not signed"));
        }
        let signed_at = parse_amz_date(date)?;
        if !date.starts_with(auth.scope_date) {
            return Err(IamError::malformed(
                "the credential scope's date is not X-Amz-Date's",
            ));
        }
        if signed_at > now + MAX_FUTURE_SKEW {
            return Err(IamError::NotYetValid);
        }
        let expires_at = signed_at + self.config.max_age;
        if now >= expires_at {
            return Err(IamError::Stale);
        }

        let forward = FORWARDED_HEADERS
            .iter()
            .filter_map(|&name| Some((name, headers.get(name)?.clone())))
            .collect();
        Ok(Checked {
            forward,
            body: request.body,
            expires_at,
        })
    }

    /// The token's URL must be the configured endpoint. It is only compared,
    /// never requested.
    fn check_url(&self, raw: &str) -> Result<(), IamError> {
        let url = Url::parse(raw).map_err(|_| IamError::WrongEndpoint)?;
        let expected = &self.config.sts_endpoint;
        let same = url.scheme() == expected.scheme()
            && url.host() == expected.host()
            && url.port_or_known_default() == expected.port_or_known_default()
            && bare_root_problem(&url).is_none();
        if same {
            Ok(())
        } else {
            Err(IamError::WrongEndpoint)
        }
    }
}

/// A credential that passed every local check: what to send to STS and how
/// long the answer may be cached. No `Debug`: it holds the signature and the
/// session token.
pub(super) struct Checked {
    pub(super) forward: Vec<(&'static str, String)>,
    pub(super) body: String,
    pub(super) expires_at: SystemTime,
}

/// The credential's JSON. Unknown and duplicate fields are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedRequest {
    method: String,
    url: String,
    headers: RawHeaders,
    body: String,
}

/// The `headers` object in the order given, duplicates kept so they can be
/// refused (a map would silently keep one of them).
struct RawHeaders(Vec<(String, HeaderValue)>);

/// A header value: a string, or (as Go's `http.Header` serialises, which
/// Vault-style clients send) a list holding exactly one string.
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderValue {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawHeaders;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawHeaders, A::Error> {
                let mut headers = Vec::new();
                while let Some(entry) = map.next_entry::<String, HeaderValue>()? {
                    headers.push(entry);
                }
                Ok(RawHeaders(headers))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl RawHeaders {
    /// Lower-case names to trimmed values. A name given twice (in any case)
    /// or with several values is refused: which one STS would see is not
    /// something to leave to chance.
    fn into_map(self) -> Result<BTreeMap<String, String>, IamError> {
        let mut map = BTreeMap::new();
        for (name, value) in self.0 {
            if !is_token(&name) {
                return Err(IamError::malformed("invalid header name"));
            }
            let value = match value {
                HeaderValue::One(v) => v,
                HeaderValue::Many(mut v) if v.len() == 1 => v.remove(0),
                HeaderValue::Many(_) => {
                    return Err(IamError::malformed("a header has several values"));
                }
            };
            if !is_header_value(&value) {
                return Err(IamError::malformed("invalid header value"));
            }
            // SigV4 signs trimmed values, so trimming changes nothing STS sees.
            let value = value.trim_matches([' ', '\t']).to_owned();
            if map.insert(name.to_ascii_lowercase(), value).is_some() {
                return Err(IamError::malformed("a header is given twice"));
            }
        }
        Ok(map)
    }
}

/// `AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/sts/aws4_request,
/// SignedHeaders=a;b;c, Signature=<64 hex>`, parsed only as far as our checks
/// need (STS verifies the signature).
pub(super) struct SigV4Authorization<'a> {
    pub(super) scope_date: &'a str,
    pub(super) signed_headers: Vec<&'a str>,
}

impl<'a> SigV4Authorization<'a> {
    pub(super) fn parse(value: &'a str) -> Result<Self, IamError> {
        let bad = || IamError::malformed("Authorization is not an AWS4-HMAC-SHA256 signature");
        let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(bad)?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, value) = part.trim().split_once('=').ok_or_else(bad)?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(bad()),
            };
            if slot.replace(value).is_some() {
                return Err(bad());
            }
        }
        let (credential, signed, signature) = (
            credential.ok_or_else(bad)?,
            signed.ok_or_else(bad)?,
            signature.ok_or_else(bad)?,
        );
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key, date, region, service, terminator] = scope[..] else {
            return Err(bad());
        };
        if access_key.is_empty()
            || region.is_empty()
            || date.len() != 8
            || !date.bytes().all(|b| b.is_ascii_digit())
            || terminator != "aws4_request"
        {
            return Err(bad());
        }
        if service != "sts" {
            return Err(IamError::WrongEndpoint);
        }
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let signed_headers: Vec<&str> = signed.split(';').collect();
        let well_formed = signed_headers
            .iter()
            .all(|h| is_token(h) && !h.bytes().any(|b| b.is_ascii_uppercase()));
        let mut unique = signed_headers.clone();
        unique.sort_unstable();
        unique.dedup();
        if !well_formed || unique.len() != signed_headers.len() {
            return Err(bad());
        }
        Ok(Self {
            scope_date: date,
            signed_headers,
        })
    }

    fn signs(&self, header: &str) -> bool {
        self.signed_headers.contains(&header)
    }
}

/// The body must be the two GetCallerIdentity parameters, in either order,
/// byte for byte: no other action, no extra or repeated parameter, no
/// alternative encoding.
fn check_body(body: &str) -> Result<(), IamError> {
    let mut params: Vec<&str> = body.split('&').collect();
    params.sort_unstable();
    if params == ["Action=GetCallerIdentity", "Version=2011-06-15"] {
        Ok(())
    } else {
        Err(IamError::WrongBody)
    }
}

/// `application/x-www-form-urlencoded`, optionally with `charset=utf-8`.
fn is_form_content_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    parts
        .next()
        .is_some_and(|media| media.eq_ignore_ascii_case(CONTENT_TYPE))
        && parts.all(|p| p.eq_ignore_ascii_case("charset=utf-8"))
}

/// `X-Amz-Date` (`20261126T071500Z`) as a time.
fn parse_amz_date(value: &str) -> Result<SystemTime, IamError> {
    let bad = |e| IamError::malformed_by("X-Amz-Date is not yyyymmddThhmmssZ", e);
    let shape_ok = value.len() == 16
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(IamError::malformed("X-Amz-Date is not yyyymmddThhmmssZ"));
    }
    let parsed = chrono::NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ").map_err(bad)?;
    let seconds = u64::try_from(parsed.and_utc().timestamp())
        .map_err(|_| IamError::malformed("X-Amz-Date is before 1970"))?;
    Ok(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// RFC 9110 `token`: what a header name may be made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Printable ASCII, spaces and tabs: no line breaks to smuggle a header, no
/// bytes the HTTP client would refuse at send time (which would otherwise
/// look like an STS outage).
pub(super) fn is_header_value(s: &str) -> bool {
    !s.trim().is_empty() && s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Why `url` is not the bare root an STS endpoint is (no userinfo, path `/`,
/// no query or fragment), if it is not. The configured endpoint, the URL a
/// credential names and the endpoint the client signs for are all held to
/// this one rule, so the client cannot make a credential whose URL the
/// verifier would refuse.
pub(super) fn bare_root_problem(url: &Url) -> Option<&'static str> {
    if !url.username().is_empty() || url.password().is_some() {
        return Some("sts_endpoint must not carry credentials");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Some("sts_endpoint must have path / and no query or fragment");
    }
    None
}

/// `host[:port]` as a `host` header carries it (default ports omitted).
pub(super) fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    }
}
