//! Claim mapping: applying an issuer's
//! [`ClaimMapping`](super::ClaimMapping) to a verified token to make the
//! [`Identity`], after checking the registered claims (`exp`, `nbf`,
//! audience). Runs only on claims whose signature has been verified,
//! so nothing here needs to distrust them beyond their shape.

use std::time::Duration;

use serde_json::{Map, Value};

use super::config::normalise_token_type;
use super::keys::IssuerState;
use super::{OidcError, echo};
use crate::identity::{AuthMethod, Identity};

impl IssuerState {
    /// The issuer's `token_types`, when it lists any: the types the token
    /// declares (the `typ` header, the `token_use` claim) must all be listed,
    /// and it must declare at least one. A declared type that is not a
    /// string never matches.
    pub(super) fn check_token_type(
        &self,
        typ: Option<&Value>,
        claims: &Map<String, Value>,
    ) -> Result<(), OidcError> {
        let allowed = &self.config.token_types;
        if allowed.is_empty() {
            return Ok(());
        }
        let declared: Vec<Option<String>> = [typ, claims.get("token_use")]
            .into_iter()
            .flatten()
            .map(|v| v.as_str().map(normalise_token_type))
            .collect();
        let ok = !declared.is_empty()
            && declared
                .iter()
                .all(|t| t.as_ref().is_some_and(|t| allowed.contains(t)));
        if ok {
            return Ok(());
        }
        let found = if declared.is_empty() {
            "none".to_owned()
        } else {
            declared
                .iter()
                .map(|t| {
                    t.as_deref()
                        .map_or_else(|| "(not a string)".to_owned(), echo)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(OidcError::TokenTypeNotAllowed {
            issuer: self.config.issuer.clone(),
            found,
        })
    }

    /// `exp`, `nbf` and the audience of signature-verified claims. `iss` was
    /// matched exactly when the issuer was chosen.
    pub(super) fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: f64,
        leeway: Duration,
    ) -> Result<(), OidcError> {
        let leeway = leeway.as_secs_f64();
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .ok_or_else(|| OidcError::MissingClaim("exp".to_owned()))?;
        if now >= exp + leeway {
            return Err(OidcError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_f64()
                .ok_or_else(|| OidcError::MissingClaim("nbf".to_owned()))?;
            if nbf > now + leeway {
                return Err(OidcError::NotYetValid);
            }
        }
        let claim = &self.config.audience_claim;
        let audience = claims
            .get(claim)
            .ok_or_else(|| OidcError::MissingClaim(claim.clone()))?;
        let accepted = |aud: &str| self.config.audiences.iter().any(|a| a == aud);
        let ok = match audience {
            Value::String(aud) => accepted(aud),
            Value::Array(auds) => auds.iter().filter_map(Value::as_str).any(accepted),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(OidcError::WrongAudience)
        }
    }

    pub(super) fn identity(&self, claims: Map<String, Value>) -> Result<Identity, OidcError> {
        let mapping = &self.config.claims;
        let principal = lookup(&claims, &mapping.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OidcError::MissingClaim(mapping.subject.clone()))?
            .to_owned();
        let service = lookup(&claims, &mapping.service)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let groups = match lookup(&claims, &mapping.groups) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(group)) if !group.is_empty() => vec![group.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            principal,
            service,
            groups,
            method: AuthMethod::Oidc,
            issuer: self.config.issuer.clone(),
            iam_arn: None,
            kong_consumer: None,
            claims,
        })
    }
}

/// A claim by JSON pointer, by name, or by dotted path when no top-level
/// claim has that name (see [`ClaimMapping`](super::ClaimMapping)). An
/// empty name finds nothing.
pub(super) fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(pointer) = name.strip_prefix('/') {
        let mut tokens = pointer.split('/');
        let mut value = claims.get(unescape_pointer(tokens.next()?).as_ref())?;
        for token in tokens {
            let token = unescape_pointer(token);
            value = match value {
                Value::Object(map) => map.get(token.as_ref())?,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        return Some(value);
    }
    if name.is_empty() {
        return None;
    }
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut segments = name.split('.');
    let mut value = claims.get(segments.next()?)?;
    for segment in segments {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

fn unescape_pointer(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains('~') {
        token.replace("~1", "/").replace("~0", "~").into()
    } else {
        token.into()
    }
}
