//! Following a broker's redirect by hand, and only to a broker of the same
//! cluster.
//!
//! On a multi-broker cluster a broker that does not own a topic answers a
//! topic-level admin call (the schema registry's, for the reconciler) with
//! `307 Temporary Redirect` to the owner's admin URL. Following that is
//! needed for `rotate` to work against one broker of a cluster; following
//! *any* redirect is not acceptable, because the request carries the
//! super-user's bearer token and the `Location` is whatever the answering
//! server says. So `reqwest` still follows nothing
//! ([`crate::http::redirect_free_client`]) and [`AdminClient`] judges each
//! `Location` itself:
//!
//! * only `307` and `308`, which keep the method and body (a `301`/`302`/`303`
//!   may turn a POST into a GET, and Pulsar sends none of them);
//! * the same scheme as the configured base URL, so a TLS admin URL is never
//!   downgraded to plaintext;
//! * resolved against the URL that answered (a relative `Location` stays on
//!   that host), carrying no user-info;
//! * its `host:port` one of the cluster's brokers, as
//!   `GET /admin/v2/brokers/{cluster}` on the configured base URL lists them
//!   (their web-service `host:port`). The list is read on the first redirect
//!   and cached in the client; a `Location` naming a host the cached list
//!   lacks re-reads it once, since a broker may have joined since. The list
//!   itself is only ever read from the base URL, never through a redirect:
//!   what a redirect may point at cannot be learned from a redirect;
//! * at most [`MAX_HOPS`] redirects per call (Pulsar needs one; its
//!   `authoritative=true` stops a second).
//!
//! A redirect that fails any of these is an [`AdminError::Redirect`] (or
//! [`AdminError::BrokersUnknown`] when the list could not be read), sent
//! nowhere and not retried: repeating the call would meet the same answer.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use url::Url;

use super::{AdminClient, AdminError};

/// Redirects one call may follow. Pulsar needs one: the owner answers a
/// request marked `authoritative=true` itself.
pub const MAX_HOPS: usize = 3;

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A redirect status other than 307 and 308.
    Status,
    /// No `Location`, one that is not a URL, or one carrying user-info.
    BadLocation,
    /// The `Location` changes the base URL's scheme.
    SchemeChanged,
    /// The client knows no cluster whose brokers it could trust
    /// ([`AdminClient::within_cluster`] was not called).
    NoCluster,
    /// Its `host:port` is not one of the cluster's brokers, even after
    /// reading the list again.
    NotABroker,
    /// More than [`MAX_HOPS`] redirects in one call.
    TooManyHops,
    /// The cluster's broker list was itself redirected.
    ListRedirected,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Status => "only 307 and 308 are followed",
            Self::BadLocation => "the Location is missing, not a URL, or carries credentials",
            Self::SchemeChanged => "the Location changes the admin URL's scheme",
            Self::NoCluster => "the admin client was given no cluster whose brokers it may follow",
            Self::NotABroker => "the Location's host is not a broker of the cluster",
            Self::TooManyHops => "too many redirects",
            Self::ListRedirected => {
                "the cluster's broker list is only read from the configured admin URL"
            }
        })
    }
}

/// The cluster's brokers as the base URL last listed them (`host:port`),
/// shared by a client's clones so a run reads the list once.
#[derive(Debug, Clone, Default)]
pub(super) struct Brokers(Arc<Mutex<Option<Arc<BTreeSet<String>>>>>);

impl Brokers {
    fn cached(&self) -> Option<Arc<BTreeSet<String>>> {
        self.0.lock().map(|held| held.clone()).unwrap_or_default()
    }

    fn store(&self, listed: BTreeSet<String>) -> Arc<BTreeSet<String>> {
        let listed = Arc::new(listed);
        if let Ok(mut held) = self.0.lock() {
            *held = Some(listed.clone());
        }
        listed
    }
}

impl AdminClient {
    /// Where to send the call next, after `from` answered `status` with
    /// `location`, `hops` redirects into the call; or why not.
    pub(super) async fn next_hop(
        &self,
        request: &str,
        from: &Url,
        status: StatusCode,
        location: Option<&str>,
        hops: usize,
    ) -> Result<Url, AdminError> {
        let shown = shown(from, location);
        let refuse = |refused| AdminError::Redirect {
            request: request.to_owned(),
            status: status.as_u16(),
            location: shown.clone(),
            refused,
        };
        if status != StatusCode::TEMPORARY_REDIRECT && status != StatusCode::PERMANENT_REDIRECT {
            return Err(refuse(Refusal::Status));
        }
        if hops >= MAX_HOPS {
            return Err(refuse(Refusal::TooManyHops));
        }
        let (target, authority) = resolve(&self.base, from, location).map_err(refuse)?;
        let Some(cluster) = self.cluster.as_deref() else {
            return Err(refuse(Refusal::NoCluster));
        };
        let known = match self.brokers.cached() {
            Some(listed) if listed.contains(&authority) => listed,
            // Not read yet, or the host is new to us: a broker may have
            // joined since the list was read.
            _ => self
                .list_brokers(cluster)
                .await
                .map_err(|source| AdminError::BrokersUnknown {
                    request: request.to_owned(),
                    status: status.as_u16(),
                    location: shown.clone(),
                    source: Box::new(source),
                })?,
        };
        if !known.contains(&authority) {
            return Err(refuse(Refusal::NotABroker));
        }
        tracing::debug!(
            target: "reconcile",
            request,
            to = %authority,
            hops = hops + 1,
            "following the broker's redirect"
        );
        Ok(target)
    }

    /// Reads the cluster's brokers from the base URL (never through a
    /// redirect) and caches them.
    async fn list_brokers(&self, cluster: &str) -> Result<Arc<BTreeSet<String>>, AdminError> {
        // Boxed: this call is itself a `send`, which can reach `next_hop`.
        let listed: Vec<String> =
            Box::pin(self.get_json_unredirected(&["brokers", cluster])).await?;
        let scheme = self.base.scheme();
        let listed = listed
            .iter()
            .filter_map(|entry| {
                let url = Url::parse(&format!("{scheme}://{entry}/")).ok()?;
                authority(&url)
            })
            .collect();
        Ok(self.brokers.store(listed))
    }
}

/// The URL a `location` answered by `from` points at, and its `host:port`,
/// when it keeps `base`'s scheme and carries no credentials.
pub(super) fn resolve(
    base: &Url,
    from: &Url,
    location: Option<&str>,
) -> Result<(Url, String), Refusal> {
    let target = location
        .and_then(|l| from.join(l).ok())
        .ok_or(Refusal::BadLocation)?;
    if target.scheme() != base.scheme() {
        return Err(Refusal::SchemeChanged);
    }
    if !target.username().is_empty() || target.password().is_some() {
        return Err(Refusal::BadLocation);
    }
    let authority = authority(&target).ok_or(Refusal::BadLocation)?;
    Ok((target, authority))
}

/// `host:port` as brokers list themselves, the port made explicit so
/// `https://b` and `b:443` compare equal (the host is already lower-cased
/// and IPv6 hosts bracketed by `Url`).
fn authority(url: &Url) -> Option<String> {
    Some(format!(
        "{}:{}",
        url.host_str()?,
        url.port_or_known_default()?
    ))
}

/// A `Location` as errors may show it: no query (Pulsar's carries nothing
/// secret, but other servers' may), no fragment, no user-info.
pub(super) fn shown(from: &Url, location: Option<&str>) -> String {
    let Some(location) = location else {
        return "(no Location)".to_owned();
    };
    match from.join(location) {
        Ok(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
            (Some(host), None) => format!("{}://{host}{}", url.scheme(), url.path()),
            // `data:`, `mailto:`…: nothing worth showing but what it is.
            _ => format!("{}:…", url.scheme()),
        },
        Err(_) => "(not a URL)".to_owned(),
    }
}
