//! The `identity:` section: OIDC issuers (algorithms pinned, claims mapped,
//! leeway and token types bounded) and the IAM settings (accounts, age), each
//! checked into the settings the verifiers are built from.

use super::*;

/// Algorithms an OIDC issuer may pin. Only asymmetric ones: HS* verify with
/// the signer's own secret, which a public JWKS cannot (and must not) carry.
const OIDC_ALGORITHMS: [(&str, jsonwebtoken::Algorithm); 9] = [
    ("RS256", jsonwebtoken::Algorithm::RS256),
    ("RS384", jsonwebtoken::Algorithm::RS384),
    ("RS512", jsonwebtoken::Algorithm::RS512),
    ("PS256", jsonwebtoken::Algorithm::PS256),
    ("PS384", jsonwebtoken::Algorithm::PS384),
    ("PS512", jsonwebtoken::Algorithm::PS512),
    ("ES256", jsonwebtoken::Algorithm::ES256),
    ("ES384", jsonwebtoken::Algorithm::ES384),
    ("EdDSA", jsonwebtoken::Algorithm::EdDSA),
];

const DEFAULT_LEEWAY_SECONDS: u64 = 30;
/// "Small" leeway (DESIGN §3): beyond five minutes an expired token is
/// simply accepted.
const MAX_LEEWAY_SECONDS: u64 = 300;
/// A fetched JWKS is used this long by default: keys rotate on a scale of
/// weeks, and a key the issuer withdraws is trusted until the next fetch.
const DEFAULT_JWKS_CACHE_SECONDS: u64 = 3600;
/// Bounds of `jwks_cache_seconds`: above a day a withdrawn key (and, through
/// an outage, twice that) stays trusted too long.
const JWKS_CACHE_SECONDS: std::ops::RangeInclusive<u64> = 1..=86_400;
const DEFAULT_JWKS_REFETCH_SECONDS: u64 = 30;
/// Bounds of `jwks_refetch_seconds`: at least a second, so random `kid`s
/// cannot make every request a fetch; at most five minutes, so a key the
/// issuer just added is not refused for long.
const JWKS_REFETCH_SECONDS: std::ops::RangeInclusive<u64> = 1..=300;
/// A signed GetCallerIdentity request older than this is a replay risk, not
/// clock skew; STS itself refuses SigV4 signatures older than 15 minutes, so
/// a longer window would only stretch how long a cached identity outlives
/// what STS would still accept.
const MAX_IAM_AGE_SECONDS: u64 = 900;

/// Token types an issuer's `token_types` may name: free-form, but short and
/// printable, since they are compared with what the token says.
const MAX_TOKEN_TYPE_CHARS: usize = 64;

pub(super) fn oidc_issuer(doc: OidcDoc, path: &NodePath) -> Checked<OidcIssuer> {
    http_url(&doc.issuer, &path.key("issuer"))?;
    if doc.audiences.is_empty() {
        return problem(
            path.key("audiences"),
            "audiences is empty; list the audience values tokens for this service carry",
        );
    }
    for (i, audience) in doc.audiences.iter().enumerate() {
        non_empty(audience, "audience", &path.key("audiences").index(i))?;
    }
    let audience_claim = doc.audience_claim.unwrap_or_else(|| "aud".to_owned());
    non_empty(&audience_claim, "claim name", &path.key("audience_claim"))?;

    if doc.algorithms.is_empty() {
        return problem(
            path.key("algorithms"),
            "algorithms is empty; pin the issuer's signing algorithm, e.g. [RS256]",
        );
    }
    let mut algorithms = Vec::with_capacity(doc.algorithms.len());
    for (i, alg) in doc.algorithms.iter().enumerate() {
        algorithms.push(algorithm(alg, &path.key("algorithms").index(i))?);
    }

    let jwks_uri = doc
        .jwks_uri
        .as_deref()
        .map(|uri| http_url(uri, &path.key("jwks_uri")))
        .transpose()?;
    let claims = claim_mapping(doc.claims, &path.key("claims"))?;
    let leeway_seconds = doc.leeway_seconds.unwrap_or(DEFAULT_LEEWAY_SECONDS);
    if leeway_seconds > MAX_LEEWAY_SECONDS {
        return problem(
            path.key("leeway_seconds"),
            format!(
                "leeway_seconds {leeway_seconds} is too large (at most {MAX_LEEWAY_SECONDS}); \
                 leeway covers clock skew, not token lifetime"
            ),
        );
    }
    let jwks_cache_seconds = doc.jwks_cache_seconds.unwrap_or(DEFAULT_JWKS_CACHE_SECONDS);
    if !JWKS_CACHE_SECONDS.contains(&jwks_cache_seconds) {
        return problem(
            path.key("jwks_cache_seconds"),
            format!(
                "jwks_cache_seconds {jwks_cache_seconds} is out of range ({}..={}); while the \
                 issuer is unreachable its keys stay trusted for twice this long",
                JWKS_CACHE_SECONDS.start(),
                JWKS_CACHE_SECONDS.end()
            ),
        );
    }
    let jwks_refetch_seconds = doc
        .jwks_refetch_seconds
        .unwrap_or(DEFAULT_JWKS_REFETCH_SECONDS.min(jwks_cache_seconds));
    if !JWKS_REFETCH_SECONDS.contains(&jwks_refetch_seconds)
        || jwks_refetch_seconds > jwks_cache_seconds
    {
        return problem(
            path.key("jwks_refetch_seconds"),
            format!(
                "jwks_refetch_seconds {jwks_refetch_seconds} is out of range ({}..={}, and at \
                 most jwks_cache_seconds); it bounds how often unknown key ids make us ask the \
                 issuer",
                JWKS_REFETCH_SECONDS.start(),
                JWKS_REFETCH_SECONDS.end()
            ),
        );
    }
    let token_types = match doc.token_types {
        None => Vec::new(),
        Some(types) if types.is_empty() => {
            return problem(
                path.key("token_types"),
                "token_types is empty, so no token could pass; list types (e.g. [at+jwt] or \
                 [access]) or remove the field to accept any type",
            );
        }
        Some(types) => {
            let mut normalised: Vec<String> = Vec::with_capacity(types.len());
            for (i, text) in types.iter().enumerate() {
                let item = path.key("token_types").index(i);
                non_empty(text, "token type", &item)?;
                if text.len() > MAX_TOKEN_TYPE_CHARS || !text.chars().all(|c| c.is_ascii_graphic())
                {
                    return problem(
                        item,
                        format!(
                            "token type {text:?} must be printable ASCII without spaces, at \
                             most {MAX_TOKEN_TYPE_CHARS} characters"
                        ),
                    );
                }
                let t = crate::identity::oidc::normalise_token_type(text);
                if !normalised.contains(&t) {
                    normalised.push(t);
                }
            }
            normalised
        }
    };
    Ok(OidcIssuer {
        issuer: doc.issuer,
        audiences: doc.audiences,
        audience_claim,
        algorithms,
        jwks_uri,
        claims,
        leeway_seconds,
        jwks_cache_seconds,
        jwks_refetch_seconds,
        token_types,
    })
}

fn algorithm(text: &str, path: &NodePath) -> Checked<jsonwebtoken::Algorithm> {
    if let Some((_, alg)) = OIDC_ALGORITHMS.iter().find(|(name, _)| *name == text) {
        return Ok(*alg);
    }
    let allowed: Vec<&str> = OIDC_ALGORITHMS.iter().map(|(name, _)| *name).collect();
    let allowed = allowed.join(", ");
    if text.starts_with("HS") {
        problem(
            path.clone(),
            format!(
                "algorithm {text:?} is refused for OIDC: HMAC needs the issuer's shared secret, \
                 which a public JWKS cannot carry; use one of {allowed}"
            ),
        )
    } else {
        problem(
            path.clone(),
            format!("unknown algorithm {text:?}; use one of {allowed}"),
        )
    }
}

fn claim_mapping(doc: ClaimsDoc, path: &NodePath) -> Checked<ClaimSettings> {
    let claim = |value: Option<String>, field: &str| -> Checked<Option<ClaimPath>> {
        value
            .map(|v| {
                non_empty(&v, "claim name", &path.key(field))?;
                if v == "/" {
                    return problem(path.key(field), "claim pointer \"/\" names no claim");
                }
                Ok(ClaimPath(v))
            })
            .transpose()
    };
    Ok(ClaimSettings {
        subject: claim(doc.subject, "subject")?.unwrap_or_else(|| ClaimPath("sub".to_owned())),
        groups: claim(doc.groups, "groups")?,
        service: claim(doc.service, "service")?,
    })
}

pub(super) fn iam_settings(doc: IamDoc, path: &NodePath) -> Checked<IamSettings> {
    let sts_endpoint = http_url(&doc.sts_endpoint, &path.key("sts_endpoint"))?;
    non_empty(&doc.server_id, "server id", &path.key("server_id"))?;
    if doc.max_age_seconds == 0 || doc.max_age_seconds > MAX_IAM_AGE_SECONDS {
        return problem(
            path.key("max_age_seconds"),
            format!(
                "max_age_seconds must be between 1 and {MAX_IAM_AGE_SECONDS} (STS refuses \
                 signatures older than 15 minutes), got {}",
                doc.max_age_seconds
            ),
        );
    }
    let accounts_path = path.key("allowed_accounts");
    if doc.allowed_accounts.is_empty() {
        return problem(
            accounts_path,
            "allowed_accounts is empty; list the 12-digit AWS account ids whose roles and users \
             may call (every other account is refused)",
        );
    }
    for (i, account) in doc.allowed_accounts.iter().enumerate() {
        let item = accounts_path.index(i);
        if !is_account_id(account) {
            return problem(
                item,
                format!("{account:?} is not an AWS account id (exactly 12 digits)"),
            );
        }
        if doc.allowed_accounts[..i].contains(account) {
            return problem(item, format!("account {account:?} is listed twice"));
        }
    }
    Ok(IamSettings {
        sts_endpoint,
        server_id: doc.server_id,
        max_age_seconds: doc.max_age_seconds,
        allowed_accounts: doc.allowed_accounts,
    })
}

pub(super) fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}
