//! Plumbing every HTTP-speaking module shares: the request [`Headers`] type
//! the edge parses into and identity reads, the rule that plain `http://`
//! is only ever allowed to a loopback host, and the two rules for talking to
//! a server whose answers we trust: never follow a redirect
//! ([`redirect_free_client`]) and never read more than we expect
//! ([`read_body`]).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Header names lower-cased; repeated headers kept in order.
///
/// `Debug` redacts credential-bearing headers so a request can be logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

/// Headers whose values are credentials: never printed by `Debug`.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "apikey",
    "x-amz-security-token",
];

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds headers from `(name, value)` pairs, lower-casing the names.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut headers = Self::new();
        for (name, value) in pairs {
            headers.push(name.as_ref(), value);
        }
        headers
    }

    /// Appends one value, after any existing values of the same name.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_ascii_lowercase(), value.into()));
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + use<'a> {
        let name = name.to_ascii_lowercase();
        self.0
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of `(name, value)` pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, v)| {
                let shown = if SENSITIVE_HEADERS.contains(&n.as_str()) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (n.as_str(), shown)
            }))
            .finish()
    }
}

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, `::1`):
/// the only place an identity provider or STS may be reached over plain http
/// (local providers in tests and development), since nobody can sit on that
/// path and swap the answers.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost")
                || domain.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
                || domain.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// A client builder that never follows redirects; callers add their
/// timeouts. Every server this crate calls (an identity provider, STS, the
/// broker's admin API) is one the configuration names, and a redirect would
/// hand our bearer token or a replayed signature to another host, or let
/// another host answer in its name.
pub fn redirect_free_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// Why [`read_body`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body (or its declared `Content-Length`) exceeds the limit.
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// The limit it exceeds.
        limit: usize,
    },
    /// The connection failed or timed out while reading.
    #[error("reading the body failed")]
    Read(#[source] reqwest::Error),
}

/// The body of `response`, at most `limit` bytes. Read chunk by chunk so a
/// hostile or broken server cannot make us buffer more than the limit; a
/// declared `Content-Length` above it is refused before reading anything.
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
