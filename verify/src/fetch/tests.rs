//! Against an in-process HTTP server that counts its requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::*;
use crate::jwks::Jwk;

#[derive(Clone, Default)]
struct Server {
    hits: Arc<AtomicUsize>,
    keys: Arc<Mutex<Vec<Jwk>>>,
}

impl Server {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn add_key(&self, kid: &str) {
        self.keys.lock().unwrap().push(Jwk::p256(kid, "x", "y"));
    }
}

async fn jwks(AxState(s): AxState<Server>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::to_vec(&Jwks {
        keys: s.keys.lock().unwrap().clone(),
    })
    .unwrap();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=600"),
    );
    response
}

/// Serves the routes on a loopback port; returns the base URL.
async fn serve(server: Server) -> (String, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/big",
            get(|| async { "x".repeat(MAX_BODY_BYTES + 1).into_response() }),
        )
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR.into_response() }),
        )
        .route(
            "/elsewhere",
            get(move || async move {
                let to = format!("http://localhost:{port}/.well-known/jwks.json");
                (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
            }),
        )
        .route(
            "/here",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "/.well-known/jwks.json")],
                )
                    .into_response()
            }),
        )
        .with_state(server.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}"), server)
}

#[tokio::test]
async fn the_key_set_is_cached_and_refetched_for_a_new_kid_at_most_every_interval() {
    let server = Server::default();
    server.add_key("k1");
    let (base, server) = serve(server).await;
    let url = format!("{base}/.well-known/jwks.json");

    let fetcher = JwksFetcher::new(&url).unwrap();
    assert_eq!(fetcher.jwks().await.unwrap().keys.len(), 1);
    assert_eq!(fetcher.jwks_for(Some("k1")).await.unwrap().keys.len(), 1);
    assert_eq!(server.hits(), 1, "served from the cache");

    // A kid the set lacks, right after a fetch: no new request.
    server.add_key("k2");
    let jwks = fetcher.jwks_for(Some("k2")).await.unwrap();
    assert!(jwks.find("k2").is_none());
    assert_eq!(server.hits(), 1, "unknown kid within the interval");

    // Past the interval, the unknown kid refetches once, and finds the key.
    let fetcher = fetcher.with_unknown_kid_interval(Duration::ZERO);
    assert!(
        fetcher
            .jwks_for(Some("k2"))
            .await
            .unwrap()
            .find("k2")
            .is_some()
    );
    assert_eq!(server.hits(), 2);
    assert!(
        fetcher
            .jwks_for(Some("k2"))
            .await
            .unwrap()
            .find("k2")
            .is_some()
    );
    assert_eq!(server.hits(), 2, "known now: from the cache");
}

#[tokio::test]
async fn bad_answers_are_errors() {
    let (base, _) = serve(Server::default()).await;
    let fetch = |path: &str| {
        let url = format!("{base}{path}");
        async move { JwksFetcher::new(&url).unwrap().jwks().await }
    };
    assert!(matches!(fetch("/big").await, Err(FetchError::TooLarge)));
    assert!(matches!(
        fetch("/broken").await,
        Err(FetchError::Status(500))
    ));
    assert!(matches!(
        fetch("/elsewhere").await,
        Err(FetchError::Http(_))
    ));
    assert!(
        fetch("/here").await.is_ok(),
        "a same-origin redirect is followed"
    );
}

#[test]
fn only_https_or_loopback_http() {
    for (url, ok) in [
        ("https://gateway.example.com/.well-known/jwks.json", true),
        ("http://127.0.0.1:8080/jwks.json", true),
        ("http://[::1]/jwks.json", true),
        ("http://localhost/jwks.json", true),
        ("http://gateway.example.com/.well-known/jwks.json", false),
        ("http://169.254.169.254/jwks.json", false),
        ("file:///etc/passwd", false),
        ("not a url", false),
    ] {
        assert_eq!(JwksFetcher::new(url).is_ok(), ok, "{url}");
    }
}

#[test]
fn max_age_is_honoured_within_bounds() {
    for (cache_control, secs) in [
        (None, 300),
        (Some("max-age=600"), 600),
        (Some("public, MAX-AGE=120, must-revalidate"), 120),
        (Some("max-age=5"), 60),
        (Some("max-age=86400"), 3600),
        (Some("max-age=oops"), 300),
        (Some("no-store"), 60),
        (Some("max-age=900, no-cache"), 60),
    ] {
        let mut headers = HeaderMap::new();
        if let Some(value) = cache_control {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
        }
        assert_eq!(
            ttl(&headers),
            Duration::from_secs(secs),
            "{cache_control:?}"
        );
    }
}
