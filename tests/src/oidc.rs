//! An in-process OpenID Provider for tests: [`TestIssuer`] serves a discovery
//! document and a JWKS over real HTTP on `127.0.0.1`, signs tokens with keys
//! the test controls, and counts the requests it serves, so tests can assert
//! exactly when the verifier went to the network.
//!
//! RSA key generation costs tens of milliseconds, so RSA key material comes
//! from a small per-process pool; every key still gets its own `kid`, and one
//! issuer never hands out the same material twice. EC P-256 keys are cheap
//! and always fresh.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kong_pulsar::identity::oidc::IssuerConfig;
use serde_json::{Value, json};
use url::Url;

use crate::outage::Switch;
use crate::unix_now;

/// The client id the [`TestIssuer::claims_for`] shapes carry as the calling
/// service (`cid`, `azp`); Cognito carries the audience there instead.
pub const TEST_CLIENT_ID: &str = "kp-test-client";

/// The token shapes of the identity providers Kong Pulsar must map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Okta access token: `aud`, `cid`, `groups`, `scp`.
    Okta,
    /// Cognito access token: no `aud`; `client_id`, `cognito:groups`,
    /// `token_use: access`.
    Cognito,
    /// Keycloak access token: `aud`, `azp`, `realm_access.roles`.
    Keycloak,
}

/// Which key type a [`TestKey`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA 2048, signs RS256.
    Rs256,
    /// EC P-256, signs ES256.
    Es256,
}

/// A signing key and its public JWK.
#[derive(Clone)]
pub struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    public_pem: String,
    material: u64,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// The key id (in the JWKS and in the header of tokens it signs).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with by default.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK as published.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// The same key under another `kid`.
    pub fn with_kid(mut self, kid: &str) -> Self {
        kid.clone_into(&mut self.kid);
        self.jwk["kid"] = json!(kid);
        self
    }

    /// The same key with the JWK's `alg` set to `alg`, or removed (`None`).
    pub fn with_jwk_alg(mut self, alg: Option<&str>) -> Self {
        if let Some(object) = self.jwk.as_object_mut() {
            match alg {
                Some(alg) => object.insert("alg".to_owned(), json!(alg)),
                None => object.remove("alg"),
            };
        }
        self
    }

    /// Signs `claims` with this key's algorithm and `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(claims, &SignOptions::default())
    }

    /// Signs `claims` with header variations.
    pub fn sign_with(&self, claims: &Value, options: &SignOptions) -> String {
        let mut header = Header::new(options.alg.unwrap_or(self.alg));
        header.typ = match &options.typ {
            Typ::Jwt => header.typ,
            Typ::Absent => None,
            Typ::Named(typ) => Some(typ.clone()),
        };
        header.kid = match &options.kid {
            Kid::Key => Some(self.kid.clone()),
            Kid::Absent => None,
            Kid::Named(kid) => Some(kid.clone()),
        };
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .unwrap_or_else(|e| panic!("signing a test token failed: {e}"))
    }
}

/// Header variations for [`TestKey::sign_with`] and [`TestIssuer::sign_with`].
#[derive(Debug, Clone, Default)]
pub struct SignOptions {
    /// The `alg` header (and signature algorithm); default the key's own.
    pub alg: Option<Algorithm>,
    /// The `kid` header.
    pub kid: Kid,
    /// The `typ` header.
    pub typ: Typ,
}

/// What `typ` header a signed token carries.
#[derive(Debug, Clone, Default)]
pub enum Typ {
    /// `JWT`, as most ID tokens (and jsonwebtoken by default) say.
    #[default]
    Jwt,
    /// No `typ` header (Cognito's tokens).
    Absent,
    /// This value, e.g. `at+jwt` (RFC 9068 access tokens).
    Named(String),
}

/// What `kid` a signed token carries.
#[derive(Debug, Clone, Default)]
pub enum Kid {
    /// The signing key's own `kid`.
    #[default]
    Key,
    /// No `kid` header.
    Absent,
    /// This `kid`, whatever key signs.
    Named(String),
}

/// An OpenID Provider on `127.0.0.1:{port}` for the lifetime of the value.
pub struct TestIssuer {
    issuer: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What the HTTP handlers and the test both see.
struct Shared {
    issuer: String,
    jwks_uri: String,
    keys: Mutex<KeyRing>,
    discovery_issuer: Mutex<Option<String>>,
    raw_jwks: Mutex<Option<String>>,
    /// 0: serve normally; otherwise answer every request with this status.
    failing: AtomicU16,
    jwks_delay_ms: AtomicU64,
    discovery_fetches: AtomicU64,
    jwks_fetches: AtomicU64,
}

struct KeyRing {
    current: TestKey,
    published: Vec<TestKey>,
    /// Key material this issuer has handed out, so no two of its keys share it.
    materials: HashSet<u64>,
}

impl TestIssuer {
    /// An issuer at `http://127.0.0.1:{port}` with one RS256 key.
    pub async fn start() -> Self {
        Self::start_with("", KeyType::Rs256).await
    }

    /// An issuer at `http://127.0.0.1:{port}{path}` (`path` empty or starting
    /// with `/`, e.g. Okta's `/oauth2/default`) with one key of `key_type`.
    pub async fn start_with(path: &str, key_type: KeyType) -> Self {
        Self::start_on(0, path, key_type).await
    }

    /// An issuer on a fixed loopback `port` (0: any free port), e.g. the
    /// demo issuer `make run` serves for the demo policy.
    pub async fn start_on(port: u16, path: &str, key_type: KeyType) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("cannot bind a test issuer on port {port}: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("test issuer has no address: {e}"));
        Self::serve(listener, addr, path, key_type)
    }

    /// An issuer (one RS256 key) that is reached only through a [`Switch`]:
    /// its identifier, discovery document and `jwks_uri` all name the
    /// switch's address, so turning the switch off is the whole provider
    /// going away, connection refused, as a verifier sees it.
    pub async fn behind_switch() -> (Self, Switch) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("cannot bind a test issuer: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("test issuer has no address: {e}"));
        let switch = Switch::start(addr).await;
        let issuer = Self::serve(listener, switch.addr(), "", KeyType::Rs256);
        (issuer, switch)
    }

    /// Serves on `listener`, known to its clients as `http://{advertised}{path}`.
    fn serve(
        listener: tokio::net::TcpListener,
        advertised: std::net::SocketAddr,
        path: &str,
        key_type: KeyType,
    ) -> Self {
        let path = path.trim_end_matches('/');
        let issuer = format!("http://{advertised}{path}");
        let mut materials = HashSet::new();
        let first = make_key(key_type, &mut materials);
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            jwks_uri: format!("{issuer}/jwks"),
            keys: Mutex::new(KeyRing {
                current: first.clone(),
                published: vec![first],
                materials,
            }),
            discovery_issuer: Mutex::new(None),
            raw_jwks: Mutex::new(None),
            failing: AtomicU16::new(0),
            jwks_delay_ms: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
            jwks_fetches: AtomicU64::new(0),
        });
        let router = axum::Router::new()
            .route(
                &format!("{path}/.well-known/openid-configuration"),
                get(discovery),
            )
            .route(&format!("{path}/jwks"), get(jwks))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            issuer,
            shared,
            server,
        }
    }

    /// The issuer identifier (`iss`).
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// Where the JWKS is served.
    pub fn jwks_uri(&self) -> Url {
        Url::parse(&self.shared.jwks_uri)
            .unwrap_or_else(|e| panic!("test issuer JWKS URI is not a URL: {e}"))
    }

    /// A verifier configuration for this issuer: `audience`, the current
    /// key's algorithm, discovery, default claim mapping.
    pub fn config(&self, audience: &str) -> IssuerConfig {
        let mut config = IssuerConfig::new(self.issuer(), [audience]);
        config.algorithms = vec![self.current_key().alg()];
        config
    }

    /// The key that [`TestIssuer::sign`] uses.
    pub fn current_key(&self) -> TestKey {
        self.ring().current.clone()
    }

    /// The current key's public key as SPKI PEM: what an attacker would use
    /// as an HMAC secret in the HS256 key-confusion attack.
    pub fn public_key_pem(&self) -> String {
        self.ring().current.public_pem.clone()
    }

    /// Signs `claims` with the current key (its algorithm, `kid` set).
    pub fn sign(&self, claims: &Value) -> String {
        self.current_key().sign(claims)
    }

    /// Signs `claims` with the current key and header variations.
    pub fn sign_with(&self, claims: &Value, options: &SignOptions) -> String {
        self.current_key().sign_with(claims, options)
    }

    /// A new key, unpublished, whose material no other key of this issuer
    /// has: for "right `kid`, wrong key" tests, or to [`publish`](Self::publish).
    pub fn new_key(&self, key_type: KeyType) -> TestKey {
        make_key(key_type, &mut self.ring().materials)
    }

    /// Adds `key` to the JWKS (the current signing key does not change).
    pub fn publish(&self, key: TestKey) {
        self.ring().published.push(key);
    }

    /// Removes every key with `kid` from the JWKS.
    pub fn unpublish(&self, kid: &str) {
        self.ring().published.retain(|k| k.kid != kid);
    }

    /// Replaces the published keys (the current signing key does not change).
    pub fn set_published(&self, keys: Vec<TestKey>) {
        self.ring().published = keys;
    }

    /// Makes a new key of the current key's type current and publishes it;
    /// the old key stays in the JWKS when `keep_old`. Returns the new key.
    pub fn rotate_key(&self, keep_old: bool) -> TestKey {
        let key_type = match self.current_key().alg() {
            Algorithm::ES256 => KeyType::Es256,
            _ => KeyType::Rs256,
        };
        let key = self.new_key(key_type);
        let mut ring = self.ring();
        if !keep_old {
            let old = ring.current.kid.clone();
            ring.published.retain(|k| k.kid != old);
        }
        ring.published.push(key.clone());
        ring.current = key.clone();
        key
    }

    /// Discovery plus JWKS requests served so far.
    pub fn fetch_count(&self) -> u64 {
        self.discovery_fetch_count() + self.jwks_fetch_count()
    }

    /// Discovery document requests served so far.
    pub fn discovery_fetch_count(&self) -> u64 {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// JWKS requests served so far.
    pub fn jwks_fetch_count(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Makes the discovery document claim another `issuer` (`None`: the real one).
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        *lock(&self.shared.discovery_issuer) = issuer.map(str::to_owned);
    }

    /// Serves `body` verbatim as the JWKS (`None`: the published keys).
    pub fn set_raw_jwks(&self, body: Option<&str>) {
        *lock(&self.shared.raw_jwks) = body.map(str::to_owned);
    }

    /// Answers every request with `status` (`None`: serve normally).
    /// Requests are still counted.
    pub fn set_failing(&self, status: Option<StatusCode>) {
        self.shared
            .failing
            .store(status.map_or(0, |s| s.as_u16()), Ordering::SeqCst);
    }

    /// Delays every JWKS response, so concurrent verifications overlap.
    pub fn set_jwks_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.jwks_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Typical access-token claims of `provider` for `subject`, valid for
    /// five minutes: `groups` go where that provider puts them, `audience`
    /// into `aud` (Okta, Keycloak) or `client_id` (Cognito).
    pub fn claims_for(
        &self,
        provider: Provider,
        subject: &str,
        groups: &[&str],
        audience: &str,
    ) -> Value {
        let now = unix_now();
        let jti = uuid::Uuid::new_v4().to_string();
        match provider {
            Provider::Okta => json!({
                "ver": 1,
                "jti": jti,
                "iss": self.issuer,
                "aud": audience,
                "iat": now,
                "exp": now + 300,
                "cid": TEST_CLIENT_ID,
                "uid": "00u1a2b3c4d5e6f7g8h9",
                "scp": ["pulsar.publish"],
                "sub": subject,
                "groups": groups,
            }),
            Provider::Cognito => json!({
                "sub": subject,
                "cognito:groups": groups,
                "iss": self.issuer,
                "version": 2,
                "client_id": audience,
                "origin_jti": uuid::Uuid::new_v4().to_string(),
                "token_use": "access",
                "scope": "kong-pulsar/publish",
                "auth_time": now,
                "exp": now + 300,
                "iat": now,
                "jti": jti,
                "username": subject,
            }),
            Provider::Keycloak => json!({
                "exp": now + 300,
                "iat": now,
                "jti": jti,
                "iss": self.issuer,
                "aud": [audience, "account"],
                "sub": subject,
                "typ": "Bearer",
                "azp": TEST_CLIENT_ID,
                "realm_access": { "roles": groups },
                "resource_access": { "account": { "roles": ["view-profile"] } },
                "scope": "profile email",
                "preferred_username": subject,
            }),
        }
    }

    fn ring(&self) -> MutexGuard<'_, KeyRing> {
        lock(&self.shared.keys)
    }
}

/// An unsecured JWT (`alg: none`, empty signature) carrying `claims`.
pub fn unsecured(claims: &Value, kid: Option<&str>) -> String {
    let mut header = json!({ "alg": "none", "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A URL on loopback where nothing listens (the port was just released).
pub async fn unreachable_url(path: &str) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("cannot bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no address: {e}"))
        .port();
    drop(listener);
    Url::parse(&format!("http://127.0.0.1:{port}{path}"))
        .unwrap_or_else(|e| panic!("not a URL: {e}"))
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = failing(&shared) {
        return status.into_response();
    }
    let issuer = lock(&shared.discovery_issuer)
        .clone()
        .unwrap_or_else(|| shared.issuer.clone());
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{}/authorize", shared.issuer),
        "token_endpoint": format!("{}/token", shared.issuer),
        "jwks_uri": shared.jwks_uri,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = shared.jwks_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(status) = failing(&shared) {
        return status.into_response();
    }
    if let Some(raw) = lock(&shared.raw_jwks).clone() {
        return ([("content-type", "application/json")], raw).into_response();
    }
    let keys: Vec<Value> = lock(&shared.keys)
        .published
        .iter()
        .map(|k| k.jwk.clone())
        .collect();
    Json(json!({ "keys": keys })).into_response()
}

fn failing(shared: &Shared) -> Option<StatusCode> {
    match shared.failing.load(Ordering::SeqCst) {
        0 => None,
        code => StatusCode::from_u16(code).ok(),
    }
}

/// A test that panicked while holding a lock has failed already; the data is
/// still usable by the others.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// RSA material shared across the process: generated once per slot.
struct RsaMaterial {
    private_pem: String,
    n: Vec<u8>,
    e: Vec<u8>,
    public_pem: String,
}

const RSA_POOL_SIZE: usize = 8;
static RSA_POOL: [OnceLock<Arc<RsaMaterial>>; RSA_POOL_SIZE] =
    [const { OnceLock::new() }; RSA_POOL_SIZE];
static RSA_NEXT: AtomicUsize = AtomicUsize::new(0);
/// Ids for material that is not pooled; above every pool slot.
static FRESH_MATERIAL: AtomicU64 = AtomicU64::new(RSA_POOL_SIZE as u64);

fn make_key(key_type: KeyType, used: &mut HashSet<u64>) -> TestKey {
    let kid = format!("kid-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let key = match key_type {
        KeyType::Rs256 => {
            let (material, rsa) = rsa_material(used);
            let encoding = EncodingKey::from_rsa_pem(rsa.private_pem.as_bytes())
                .unwrap_or_else(|e| panic!("generated RSA key is unusable: {e}"));
            TestKey {
                jwk: json!({
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": kid,
                    "n": URL_SAFE_NO_PAD.encode(&rsa.n),
                    "e": URL_SAFE_NO_PAD.encode(&rsa.e),
                }),
                kid,
                alg: Algorithm::RS256,
                encoding,
                public_pem: rsa.public_pem.clone(),
                material,
            }
        }
        KeyType::Es256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .unwrap_or_else(|e| panic!("EC key generation failed: {e}"));
            let pkcs8 = pair
                .to_pkcs8v1()
                .unwrap_or_else(|e| panic!("EC key export failed: {e}"));
            let point = pair.public_key().as_ref();
            let (x, y) = point[1..].split_at(32);
            let spki = pair
                .public_key()
                .as_der()
                .unwrap_or_else(|e| panic!("EC public key export failed: {e}"));
            TestKey {
                jwk: json!({
                    "kty": "EC",
                    "use": "sig",
                    "alg": "ES256",
                    "kid": kid,
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                }),
                kid,
                alg: Algorithm::ES256,
                encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
                public_pem: pem("PUBLIC KEY", spki.as_ref()),
                material: FRESH_MATERIAL.fetch_add(1, Ordering::SeqCst),
            }
        }
    };
    used.insert(key.material);
    key
}

/// Pool material none of `used` has, or fresh material when the pool is
/// exhausted for this issuer.
fn rsa_material(used: &HashSet<u64>) -> (u64, Arc<RsaMaterial>) {
    for _ in 0..RSA_POOL_SIZE {
        let slot = RSA_NEXT.fetch_add(1, Ordering::SeqCst) % RSA_POOL_SIZE;
        if !used.contains(&(slot as u64)) {
            let material = RSA_POOL[slot].get_or_init(|| Arc::new(generate_rsa()));
            return (slot as u64, material.clone());
        }
    }
    (
        FRESH_MATERIAL.fetch_add(1, Ordering::SeqCst),
        Arc::new(generate_rsa()),
    )
}

fn generate_rsa() -> RsaMaterial {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048)
        .unwrap_or_else(|e| panic!("RSA key generation failed: {e}"));
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&pair)
        .unwrap_or_else(|e| panic!("RSA key export failed: {e}"));
    let public = pair.public_key();
    let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der<'static>>::as_der(public)
        .unwrap_or_else(|e| panic!("RSA public key export failed: {e}"));
    RsaMaterial {
        private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
        n: public.modulus().big_endian_without_leading_zero().to_vec(),
        e: public.exponent().big_endian_without_leading_zero().to_vec(),
        public_pem: pem("PUBLIC KEY", spki.as_ref()),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
