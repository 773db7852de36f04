use super::*;

fn client(base: &str) -> AdminClient {
    AdminClient::new(Url::parse(base).unwrap(), SecretValue::new("t0ken")).unwrap()
}

#[test]
fn names_are_encoded_as_single_segments() {
    let c = client("http://broker:8080");
    assert_eq!(
        c.url(&["namespaces", "t", "ns", "permissions", "a/b%c d"])
            .as_str(),
        "http://broker:8080/admin/v2/namespaces/t/ns/permissions/a%2Fb%25c%20d"
    );
    let behind_proxy = client("https://gw.example/pulsar/");
    assert_eq!(
        behind_proxy.url(&["tenants"]).as_str(),
        "https://gw.example/pulsar/admin/v2/tenants"
    );
}

#[test]
fn reasons_come_from_json_or_jetty_pages() {
    assert_eq!(
        reason(br#"{"reason":"Clusters do not exist"}"#),
        "Clusters do not exist"
    );
    assert_eq!(
        reason(b"<html><head><title>Error 422 Invalid schema definition data for JSON schema</title></head></html>"),
        "Invalid schema definition data for JSON schema"
    );
    assert_eq!(
        reason(br#"{"reason":"\n --- An unexpected error occurred in the server ---\n\nMessage: Type not supported: object\n\nStacktrace:\n\norg.apache..."}"#),
        "Type not supported: object"
    );
    assert_eq!(
        reason(br#"{"servlet":"x","message":"Incompatible schema: exists schema type AVRO, new schema type NONE","status":"409"}"#),
        "Incompatible schema: exists schema type AVRO, new schema type NONE"
    );
    assert_eq!(reason(b""), "");
    assert_eq!(reason("x".repeat(1000).as_bytes()), "");
    let long = format!(r#"{{"reason":"{}"}}"#, "y".repeat(1000));
    assert_eq!(reason(long.as_bytes()).chars().count(), MAX_REASON + 1);
}

#[test]
fn statuses_map_to_variants() {
    let e = |s: u16| {
        AdminError::from_status(
            "GET /x".into(),
            StatusCode::from_u16(s).unwrap(),
            String::new(),
        )
    };
    assert!(matches!(e(401), AdminError::Unauthorized { .. }));
    assert!(matches!(e(403), AdminError::Forbidden { .. }));
    assert!(matches!(e(404), AdminError::NotFound { .. }));
    assert!(matches!(e(409), AdminError::Conflict { .. }));
    assert!(matches!(e(412), AdminError::PreconditionFailed { .. }));
    assert!(matches!(e(422), AdminError::Rejected { status: 422, .. }));
    assert!(matches!(e(503), AdminError::Server { status: 503, .. }));
    assert!(e(503).is_transient() && !e(404).is_transient());
    assert_eq!(e(412).status(), Some(412));
}

#[test]
fn debug_hides_the_token() {
    let shown = format!("{:?}", client("http://broker:8080"));
    assert!(!shown.contains("t0ken"), "{shown}");
}

/// The redirect rules on their own, one row per `Location` shape.
#[test]
fn locations_are_resolved_against_the_answering_url_and_keep_the_scheme() {
    /// Base URL, the URL that answered, its `Location`, and where the
    /// redirect goes (URL, `host:port`) or why not.
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Result<(&'static str, &'static str), Refusal>,
    );
    let cases: &[Case] = &[
        (
            "http://b1:8080",
            "http://b1:8080/admin/v2/schemas/t/ns/x/schema",
            Some("http://b2:8080/admin/v2/schemas/t/ns/x/schema?authoritative=true"),
            Ok((
                "http://b2:8080/admin/v2/schemas/t/ns/x/schema?authoritative=true",
                "b2:8080",
            )),
        ),
        // Relative: the answering host, not the base's.
        (
            "http://b1:8080",
            "http://b2:8080/admin/v2/schemas/t/ns/x/schema",
            Some("/admin/v2/elsewhere?authoritative=true"),
            Ok((
                "http://b2:8080/admin/v2/elsewhere?authoritative=true",
                "b2:8080",
            )),
        ),
        (
            "http://b1:8080",
            "http://b1:8080/admin/v2/schemas/t/ns/x/schema",
            Some("other"),
            Ok(("http://b1:8080/admin/v2/schemas/t/ns/x/other", "b1:8080")),
        ),
        // Scheme-relative: another host, judged like any other.
        (
            "http://b1:8080",
            "http://b1:8080/admin/v2/x",
            Some("//evil.example:9/admin/v2/x"),
            Ok(("http://evil.example:9/admin/v2/x", "evil.example:9")),
        ),
        // The default port made explicit, and the host lower-cased, as
        // brokers list themselves.
        (
            "https://gw.example/pulsar/",
            "https://gw.example/pulsar/admin/v2/x",
            Some("https://B2.Example/admin/v2/x"),
            Ok(("https://b2.example/admin/v2/x", "b2.example:443")),
        ),
        (
            "https://b1:8443",
            "https://b1:8443/admin/v2/x",
            Some("http://b2:8080/admin/v2/x"),
            Err(Refusal::SchemeChanged),
        ),
        (
            "http://b1:8080",
            "http://b1:8080/admin/v2/x",
            Some("https://b2:8443/admin/v2/x"),
            Err(Refusal::SchemeChanged),
        ),
        (
            "http://b1:8080",
            "http://b1:8080/admin/v2/x",
            Some("http://kp:secret@b2:8080/admin/v2/x"),
            Err(Refusal::BadLocation),
        ),
        (
            "http://b1:8080",
            "http://b1:8080/admin/v2/x",
            Some("http://[::1/x"),
            Err(Refusal::BadLocation),
        ),
        (
            "http://b1:8080",
            "http://b1:8080/admin/v2/x",
            None,
            Err(Refusal::BadLocation),
        ),
    ];
    for (base, from, location, expected) in cases {
        let got = redirect::resolve(
            &Url::parse(base).unwrap(),
            &Url::parse(from).unwrap(),
            *location,
        );
        let got = got
            .as_ref()
            .map(|(url, authority)| (url.as_str(), authority.as_str()));
        assert_eq!(
            got,
            expected.as_ref().copied(),
            "{base} {from} {location:?}"
        );
    }
}

/// What reached a fake broker.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    uri: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// A fake broker's answer: status, `Location`, JSON body.
struct Answer(u16, Option<String>, String);

impl Answer {
    fn ok(body: &str) -> Self {
        Self(200, None, body.to_owned())
    }

    fn redirect(status: u16, location: impl Into<String>) -> Self {
        Self(status, Some(location.into()), String::new())
    }
}

/// A loopback port taken before its server answers, so two fakes can name
/// each other.
struct Bound(tokio::net::TcpListener);

impl Bound {
    async fn new() -> Self {
        Self(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// `127.0.0.1:port`, as `GET /admin/v2/brokers/{cluster}` lists brokers.
    fn authority(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    fn url(&self) -> String {
        format!("http://{}", self.authority())
    }

    /// Answers every request with `answer`, recording it first.
    fn serve(self, answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Fake {
        use axum::http::{HeaderMap, Method, Uri, header};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer = std::sync::Arc::new(answer);
        let url = self.url();
        let record = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let (record, answer) = (record.clone(), answer.clone());
                async move {
                    let text = |name| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let request = Seen {
                        method: method.to_string(),
                        uri: uri.to_string(),
                        authorization: text(header::AUTHORIZATION),
                        content_type: text(header::CONTENT_TYPE),
                        body: body.to_vec(),
                    };
                    let Answer(status, location, body) = answer(&request);
                    record.lock().unwrap().push(request);
                    let mut headers = HeaderMap::new();
                    if let Some(location) = location {
                        headers.insert(header::LOCATION, location.parse().unwrap());
                    }
                    headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        headers,
                        body,
                    )
                }
            },
        );
        tokio::spawn(async move { axum::serve(self.0, app).await.unwrap() });
        Fake { url, seen }
    }
}

struct Fake {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests for `path` (query ignored) reached it.
    fn count(&self, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.uri.split('?').next() == Some(path))
            .count()
    }
}

const CLUSTER: &str = "kp-test";
const LIST: &str = "/admin/v2/brokers/kp-test";
const SCHEMA: &str = "/admin/v2/schemas/t/ns/orders/schema";
const TOKEN: &str = "t0ken";

fn cluster_client(base: &Fake) -> AdminClient {
    AdminClient::new(Url::parse(&base.url).unwrap(), SecretValue::new(TOKEN))
        .unwrap()
        .within_cluster(CLUSTER)
}

fn brokers(listed: &[&str]) -> Answer {
    Answer::ok(&serde_json::to_string(listed).unwrap())
}

const STORED: &str = r#"{"version":4,"type":"NONE","data":"{}","properties":{}}"#;

/// `b1` (the base URL, which lists both) sends every schema call to `b2`;
/// the call reaches `b2` as the caller made it, for both statuses that keep
/// the method and body.
#[tokio::test]
async fn a_redirect_to_a_listed_broker_is_followed_with_method_body_and_token() {
    for status in [307, 308] {
        let (b1, b2) = (Bound::new().await, Bound::new().await);
        let listed = [b1.authority(), b2.authority()];
        let to_b2 = format!("{}{SCHEMA}?authoritative=true", b2.url());
        let b1 = b1.serve(move |seen| match seen.uri.as_str() {
            LIST => brokers(&[&listed[0], &listed[1]]),
            _ => Answer::redirect(status, to_b2.clone()),
        });
        let b2 = b2.serve(|seen| match seen.method.as_str() {
            "POST" => Answer::ok(r#"{"version":{"version":5}}"#),
            _ => Answer::ok(STORED),
        });
        let client = cluster_client(&b1);
        let upload = SchemaUpload {
            schema_type: "NONE".into(),
            schema: r#"{"type":"object"}"#.into(),
            properties: [("kp-schema-format".to_owned(), "json-schema".to_owned())].into(),
        };

        let version = client.upload_schema("t", "ns", "orders", &upload).await;
        assert_eq!(version.unwrap(), Some(5), "{status}");
        let read = client.schema("t", "ns", "orders").await.unwrap().unwrap();
        assert_eq!(read.version, 4, "{status}");

        let at_b2 = b2.seen();
        assert_eq!(at_b2.len(), 2, "{status}: {at_b2:?}");
        let (post, get) = (&at_b2[0], &at_b2[1]);
        assert_eq!(post.method, "POST");
        assert_eq!(post.uri, format!("{SCHEMA}?authoritative=true"));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&post.body).unwrap(),
            serde_json::to_value(&upload).unwrap()
        );
        assert_eq!(post.content_type.as_deref(), Some("application/json"));
        assert_eq!(get.method, "GET");
        for seen in &at_b2 {
            assert_eq!(seen.authorization.as_deref(), Some("Bearer t0ken"));
        }
        // The list is read once and cached for the second redirect.
        assert_eq!(b1.count(LIST), 1, "{status}");
        assert_eq!(b1.count(SCHEMA), 2, "{status}");
    }
}

/// `b1` sends the call to a host the cluster does not list: refused, shown
/// without its query, and that host never hears of it — not even a retry
/// of this (retry-safe) GET.
#[tokio::test]
async fn a_redirect_to_an_unlisted_host_is_refused_and_never_sent() {
    let (b1, evil) = (Bound::new().await, Bound::new().await);
    let listed = b1.authority();
    let to_evil = format!("{}{SCHEMA}?steal=1", evil.url());
    let b1 = b1.serve(move |seen| match seen.uri.as_str() {
        LIST => brokers(&[&listed]),
        _ => Answer::redirect(307, to_evil.clone()),
    });
    let evil = evil.serve(|_| Answer::ok(STORED));
    let client = cluster_client(&b1);

    let err = client.schema("t", "ns", "orders").await.unwrap_err();
    assert!(
        matches!(
            &err,
            AdminError::Redirect { refused: Refusal::NotABroker, status: 307, location, .. }
                if *location == format!("{}{SCHEMA}", evil.url)
        ),
        "{err:?}"
    );
    assert!(evil.seen().is_empty(), "the evil host was contacted");
    assert_eq!(b1.count(SCHEMA), 1, "a refused redirect was retried");
    let shown = err.to_string();
    assert!(
        !shown.contains(TOKEN) && !shown.contains("steal"),
        "{shown}"
    );
    assert!(shown.contains("not a broker of the cluster"), "{shown}");
}

/// Refusals that need no broker list: the redirect is judged before any
/// request goes to where it points (`evil` here, whatever it is listed as).
#[tokio::test]
async fn a_redirect_that_breaks_a_rule_is_refused_before_it_is_sent() {
    type Case = (&'static str, fn(&str) -> Answer, bool, Refusal);
    let cases: [Case; 4] = [
        (
            "scheme change",
            |evil| Answer::redirect(307, format!("{}{SCHEMA}", evil.replace("http:", "https:"))),
            true,
            Refusal::SchemeChanged,
        ),
        (
            "302",
            |evil| Answer::redirect(302, format!("{evil}{SCHEMA}")),
            true,
            Refusal::Status,
        ),
        (
            "no Location",
            |_| Answer(307, None, String::new()),
            true,
            Refusal::BadLocation,
        ),
        (
            "no cluster given",
            |evil| Answer::redirect(307, format!("{evil}{SCHEMA}")),
            false,
            Refusal::NoCluster,
        ),
    ];
    for (name, answer, within_cluster, refused) in cases {
        let (b1, evil) = (Bound::new().await, Bound::new().await);
        let (listed, evil_url) = ([b1.authority(), evil.authority()], evil.url());
        let b1 = b1.serve(move |seen| match seen.uri.as_str() {
            LIST => brokers(&[&listed[0], &listed[1]]),
            _ => answer(&evil_url),
        });
        let evil = evil.serve(|_| Answer::ok(STORED));
        let client = if within_cluster {
            cluster_client(&b1)
        } else {
            AdminClient::new(Url::parse(&b1.url).unwrap(), SecretValue::new(TOKEN)).unwrap()
        };

        let err = client.schema("t", "ns", "orders").await.unwrap_err();
        assert!(
            matches!(&err, AdminError::Redirect { refused: r, .. } if *r == refused),
            "{name}: {err:?}"
        );
        assert!(evil.seen().is_empty(), "{name}: the target was contacted");
        assert_eq!(b1.count(LIST), 0, "{name}: read the list for nothing");
    }
}

/// A relative `Location` stays on the broker that sent it.
#[tokio::test]
async fn a_relative_location_is_resolved_against_the_answering_broker() {
    let b1 = Bound::new().await;
    let listed = b1.authority();
    let b1 = b1.serve(move |seen| match seen.uri.split('?').next().unwrap() {
        LIST => brokers(&[&listed]),
        SCHEMA => Answer::redirect(307, "../owned/schema?authoritative=true"),
        _ => Answer::ok(STORED),
    });
    let client = cluster_client(&b1);

    let read = client.schema("t", "ns", "orders").await.unwrap().unwrap();
    assert_eq!(read.version, 4);
    let last = b1.seen().pop().unwrap();
    assert_eq!(
        last.uri,
        "/admin/v2/schemas/t/ns/owned/schema?authoritative=true"
    );
    assert_eq!(last.authorization.as_deref(), Some("Bearer t0ken"));
}

/// Two brokers sending each other the call: followed three times, then
/// refused.
#[tokio::test]
async fn a_redirect_loop_stops_after_the_hop_limit() {
    let (b1, b2) = (Bound::new().await, Bound::new().await);
    let listed = [b1.authority(), b2.authority()];
    let (to_b1, to_b2) = (
        format!("{}{SCHEMA}", b1.url()),
        format!("{}{SCHEMA}", b2.url()),
    );
    let b1 = b1.serve(move |seen| match seen.uri.as_str() {
        LIST => brokers(&[&listed[0], &listed[1]]),
        _ => Answer::redirect(307, to_b2.clone()),
    });
    let b2 = b2.serve(move |_| Answer::redirect(307, to_b1.clone()));
    let client = cluster_client(&b1);

    let err = client.schema("t", "ns", "orders").await.unwrap_err();
    assert!(
        matches!(
            err,
            AdminError::Redirect {
                refused: Refusal::TooManyHops,
                ..
            }
        ),
        "{err:?}"
    );
    // The first request and three redirects followed: the limit is 3.
    assert_eq!(b1.count(SCHEMA) + b2.count(SCHEMA), 4);
}

/// The list is read on the first redirect; a broker it did not name yet is
/// accepted once a second read names it, and known brokers cost no read.
#[tokio::test]
async fn a_broker_that_joined_after_the_list_was_read_is_accepted_after_one_reread() {
    let (b1, b2) = (Bound::new().await, Bound::new().await);
    let (one, two) = (b1.authority(), b2.authority());
    let (to_b1, to_b2) = (
        format!("{}{SCHEMA}?authoritative=true", b1.url()),
        format!("{}{SCHEMA}?authoritative=true", b2.url()),
    );
    let joined = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let has_joined = joined.clone();
    let b1 = b1.serve(move |seen| {
        let joined = has_joined.load(std::sync::atomic::Ordering::SeqCst);
        match seen.uri.as_str() {
            LIST if joined => brokers(&[&one, &two]),
            LIST => brokers(&[&one]),
            // Owned here: the authoritative retry is answered.
            uri if uri.ends_with("authoritative=true") => Answer::ok(STORED),
            _ if joined => Answer::redirect(307, to_b2.clone()),
            _ => Answer::redirect(307, to_b1.clone()),
        }
    });
    let b2 = b2.serve(|_| Answer::ok(STORED));
    let client = cluster_client(&b1);

    client.schema("t", "ns", "orders").await.unwrap();
    assert_eq!(b1.count(LIST), 1);

    joined.store(true, std::sync::atomic::Ordering::SeqCst);
    client.schema("t", "ns", "orders").await.unwrap();
    assert_eq!(b1.count(LIST), 2, "the list was not read again");
    assert_eq!(b2.count(SCHEMA), 1, "the new broker was not followed");

    // Both are known now: no further read.
    client.schema("t", "ns", "orders").await.unwrap();
    assert_eq!(b1.count(LIST), 2);
    assert_eq!(b2.count(SCHEMA), 2);
}

/// When the list cannot be read, nothing is followed and the error says
/// why, with the list's own failure as its cause.
#[tokio::test]
async fn a_broker_list_that_cannot_be_read_refuses_the_redirect() {
    type Case = (&'static str, fn(&str) -> Answer, fn(&AdminError) -> bool);
    let cases: [Case; 3] = [
        (
            "forbidden",
            |_| Answer(403, None, r#"{"reason":"Unauthorized"}"#.into()),
            |e| matches!(e, AdminError::Forbidden { .. }),
        ),
        (
            "not a list",
            |_| Answer::ok(r#"{"brokers":"?"}"#),
            |e| matches!(e, AdminError::Decode { .. }),
        ),
        (
            "itself redirected",
            |evil| Answer::redirect(307, format!("{evil}{LIST}")),
            |e| {
                matches!(
                    e,
                    AdminError::Redirect {
                        refused: Refusal::ListRedirected,
                        ..
                    }
                )
            },
        ),
    ];
    for (name, list, cause) in cases {
        let (b1, evil) = (Bound::new().await, Bound::new().await);
        let evil_url = evil.url();
        let to_evil = format!("{evil_url}{SCHEMA}");
        let b1 = b1.serve(move |seen| match seen.uri.as_str() {
            LIST => list(&evil_url),
            _ => Answer::redirect(307, to_evil.clone()),
        });
        let evil = evil.serve(|_| brokers(&["127.0.0.1:1"]));
        let client = cluster_client(&b1);

        let err = client.schema("t", "ns", "orders").await.unwrap_err();
        let AdminError::BrokersUnknown { source, .. } = &err else {
            panic!("{name}: {err:?}");
        };
        assert!(cause(source), "{name}: {source:?}");
        assert!(evil.seen().is_empty(), "{name}: the target was contacted");
        assert_eq!(b1.count(SCHEMA), 1, "{name}: retried");
        assert!(!err.to_string().contains(TOKEN));
    }
}
