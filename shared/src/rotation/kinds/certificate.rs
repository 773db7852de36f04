//! X.509 client certificates for Pulsar clients that authenticate with TLS
//! (DESIGN §5, §7), as a secret kind: every `certificates:` entry of the
//! policy is issued from the CA kept in Secrets Manager and renewed before it
//! expires, by the same engine as tenant tokens.
//!
//! * mint: a fresh ECDSA P-256 key and certificate (subject CN = the Pulsar
//!   role, the policy's SANs, `validity`) signed by the CA in `ca_secret`;
//! * test: the certificate chains to the CA (signature checked with the CA's
//!   public key), the key is the certificate's key, CN and SANs are the
//!   policy's, and it is valid now;
//! * due: within `renew_before` of expiry, CN/SANs no longer the policy's, or
//!   not issued by the CA now in `ca_secret` (`ca_replaced`: replacing the CA
//!   renews every certificate it did not sign).
//!
//! The CA must be fit to issue: a CA certificate (`CA:TRUE`) whose key usage
//! includes `keyCertSign`, valid now, and whose key is its certificate's;
//! anything else is an issuer failure and nothing is minted. A leaf never
//! outlives its CA: `not_after` is capped at the CA's.
//!
//! Private keys never reach logs, reports or error messages: certificates are
//! identified by a fingerprint of their DER.
//!
//! Secret forms: a certificate secret is
//! `{"cert_pem","key_pem","chain_pem","not_after"}` where `chain_pem` is the
//! issuing CA's certificate (what a client presents after its own, and what a
//! verifier trusts); the CA secret is `{"cert_pem","key_pem"}`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::Value;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::policy::Certificate;
use crate::rotation::kind::{KindError, Labels, MintError, Minted, SecretKind, Verdict};
use crate::rotation::report::Reason;
use crate::secrets::SecretValue;
use crate::secrets::store::{AWSCURRENT, Select, Store, StoreError};
use crate::telemetry::{error_chain, fingerprint};

/// Issued certificates start this long before "now", so a verifier whose
/// clock is slightly behind does not reject a certificate minted a moment ago.
const BACKDATE: chrono::Duration = chrono::Duration::minutes(5);

/// Anything that goes wrong issuing, checking or rotating a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A Secrets Manager call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CA secret is missing or not a usable `{"cert_pem","key_pem"}`.
    #[error("CA secret {secret} is unusable: {reason}")]
    Ca {
        /// The CA secret.
        secret: String,
        /// What is wrong (never key material).
        reason: String,
    },
    /// A subject alternative name in the policy is neither a DNS name, an IP
    /// address nor a URI.
    #[error("subject alternative name {san:?} is invalid: {reason}")]
    InvalidSan {
        /// The SAN as the policy spells it.
        san: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// rcgen could not build or sign the certificate.
    #[error("could not issue certificate {name}")]
    Issue {
        /// The policy entry.
        name: String,
        /// rcgen's error (it never carries key material).
        #[source]
        source: rcgen::Error,
    },
    /// The entry's validity does not fit an X.509 date.
    #[error("the validity of certificate {name} is out of range")]
    ValidityOutOfRange {
        /// The policy entry.
        name: String,
    },
    /// A certificate secret version is not `{"cert_pem","key_pem","chain_pem","not_after"}`
    /// holding a parsable certificate.
    #[error("secret {secret} does not hold a certificate: {reason}")]
    Malformed {
        /// The secret.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate is well-formed but is not what it must be.
    #[error("certificate in secret {secret} failed verification: {reason}")]
    Verification {
        /// The secret.
        secret: String,
        /// Which check failed.
        reason: String,
    },
}

/// A subject alternative name, parsed: what the policy's strings mean.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubjectAltName {
    /// A DNS name (lower-cased; a leading `*.` wildcard is allowed).
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A URI with a scheme (`spiffe://…`, `https://…`).
    Uri(String),
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => write!(f, "DNS:{name}"),
            Self::Ip(ip) => write!(f, "IP:{ip}"),
            Self::Uri(uri) => write!(f, "URI:{uri}"),
        }
    }
}

impl SubjectAltName {
    /// Parses a policy SAN: an IP address, a URI (anything with `://` or a
    /// `urn:`), or else a DNS name, which must be one.
    pub fn parse(text: &str) -> Result<Self, CertificateError> {
        let invalid = |reason| CertificateError::InvalidSan {
            san: text.to_owned(),
            reason,
        };
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        if text.contains("://") || text.starts_with("urn:") {
            let url = url::Url::parse(text).map_err(|_| invalid("not a valid URI"))?;
            if !text.is_ascii() {
                return Err(invalid("a URI SAN must be ASCII"));
            }
            return Ok(Self::Uri(url.as_str().to_owned()));
        }
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        let labels = name.strip_prefix("*.").unwrap_or(&name);
        if name.is_empty() || name.len() > 253 {
            return Err(invalid("a DNS name has 1 to 253 characters"));
        }
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !labels.split('.').all(label_ok) {
            return Err(invalid(
                "not an IP address, a URI, or a DNS name (letters, digits, hyphens; \
                 labels of 1 to 63 characters; an optional leading *.)",
            ));
        }
        Ok(Self::Dns(name))
    }

    fn to_rcgen(&self) -> Result<SanType, rcgen::Error> {
        Ok(match self {
            Self::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
            Self::Ip(ip) => SanType::IpAddress(*ip),
            Self::Uri(uri) => SanType::URI(uri.as_str().try_into()?),
        })
    }
}

/// The policy's SANs for `cert`, parsed.
pub fn policy_sans(cert: &Certificate) -> Result<BTreeSet<SubjectAltName>, CertificateError> {
    cert.sans
        .iter()
        .map(|san| SubjectAltName::parse(san))
        .collect()
}

/// The issuing CA, loaded from its secret.
pub struct CertificateAuthority {
    secret: String,
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("secret", &self.secret)
            .field("fingerprint", &fingerprint(&self.cert_der))
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Parses the CA secret `{"cert_pem","key_pem"}`. The key must be the
    /// certificate's key: a mismatch would sign certificates nobody can
    /// verify, so it is refused here rather than found by every client.
    pub fn from_secret(secret: &str, value: &SecretValue) -> Result<Self, CertificateError> {
        #[derive(serde::Deserialize)]
        struct Stored {
            cert_pem: String,
            key_pem: String,
        }
        let unusable = |reason: &str| CertificateError::Ca {
            secret: secret.to_owned(),
            reason: reason.to_owned(),
        };
        // serde_json's messages quote the offending input, which may be the
        // key: only say what shape was expected.
        let stored: Stored = serde_json::from_str(value.expose())
            .map_err(|_| unusable("not JSON of the form {\"cert_pem\",\"key_pem\"}"))?;
        let cert_der = first_pem_certificate(&stored.cert_pem)
            .ok_or_else(|| unusable("cert_pem holds no PEM certificate"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|_| unusable("cert_pem is not a parsable X.509 certificate"))?;
        let key = KeyPair::from_pem(&stored.key_pem)
            .map_err(|_| unusable("key_pem is not a private key"))?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(unusable("key_pem is not the key of cert_pem"));
        }
        if !cert.is_ca() {
            return Err(unusable(
                "cert_pem is not a CA certificate (basicConstraints CA:FALSE)",
            ));
        }
        // Verifiers (Pulsar's TLS provider among them) reject leaves whose
        // issuer may not sign certificates; issuing them would only fail later.
        let may_sign = cert
            .key_usage()
            .ok()
            .flatten()
            .is_some_and(|usage| usage.value.key_cert_sign());
        if !may_sign {
            return Err(unusable(
                "cert_pem's key usage does not include keyCertSign, so it may not sign \
                 certificates",
            ));
        }
        let time =
            |t: x509_parser::time::ASN1Time| DateTime::<Utc>::from_timestamp(t.timestamp(), 0);
        let (Some(not_before), Some(not_after)) = (
            time(cert.validity().not_before),
            time(cert.validity().not_after),
        ) else {
            return Err(unusable("cert_pem's validity is out of range"));
        };
        Ok(Self {
            secret: secret.to_owned(),
            cert_pem: stored.cert_pem,
            cert_der,
            key,
            not_before,
            not_after,
        })
    }

    /// When the CA certificate expires (no leaf it issues outlives it).
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// Refuses a CA that is not valid at `now`: what it signs would not verify.
    pub fn check_valid_at(&self, now: DateTime<Utc>) -> Result<(), CertificateError> {
        if self.not_before > now || self.not_after <= now {
            return Err(CertificateError::Ca {
                secret: self.secret.clone(),
                reason: format!(
                    "the CA certificate is not valid now (valid {} to {})",
                    self.not_before, self.not_after
                ),
            });
        }
        Ok(())
    }

    /// Whether the certificate `der` was issued by this CA: its issuer is the
    /// CA's subject and its signature verifies with the CA's public key.
    pub fn issued(&self, der: &[u8]) -> bool {
        let (Ok((_, leaf)), Ok((_, ca))) = (
            x509_parser::parse_x509_certificate(der),
            x509_parser::parse_x509_certificate(&self.cert_der),
        ) else {
            return false;
        };
        leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// Reads and parses the CA secret `secret` (its `AWSCURRENT` version),
    /// refusing a CA not valid at `now`.
    async fn load(
        store: Store<'_>,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, CertificateError> {
        let current = store
            .get(secret, Select::Stage(AWSCURRENT))
            .await?
            .ok_or_else(|| CertificateError::Ca {
                secret: secret.to_owned(),
                reason: "the secret or its AWSCURRENT version does not exist".to_owned(),
            })?;
        let ca = Self::from_secret(secret, &current.value)?;
        ca.check_valid_at(now)?;
        Ok(ca)
    }

    /// Issues a fresh ECDSA P-256 key and a client certificate for `cert`:
    /// CN = its role, its SANs, valid from a moment ago for `validity`, but
    /// never past the CA's own `not_after`. A CA not valid at `now` is refused.
    pub fn issue(
        &self,
        cert: &Certificate,
        now: DateTime<Utc>,
    ) -> Result<IssuedCertificate, CertificateError> {
        let issue_error = |source| CertificateError::Issue {
            name: cert.name.clone(),
            source,
        };
        self.check_valid_at(now)?;
        let sans = policy_sans(cert)?;
        let out_of_range = || CertificateError::ValidityOutOfRange {
            name: cert.name.clone(),
        };
        let validity = chrono::Duration::from_std(cert.validity).map_err(|_| out_of_range())?;
        // Not before the CA's own start, which a verifier would refuse too.
        let not_before = (now - BACKDATE).max(self.not_before);
        let wanted = now
            .checked_add_signed(validity)
            .map(trim_to_seconds)
            .ok_or_else(out_of_range)?;
        let not_after = wanted.min(self.not_after);
        if not_after < wanted {
            tracing::warn!(
                event = "certificate_capped",
                name = cert.name,
                ca_secret = self.secret,
                ca_not_after = %self.not_after,
                "the CA expires before the certificate's validity would end; the certificate \
                 ends with the CA: replace the CA"
            );
        }

        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, cert.role.as_str());
        params.distinguished_name = subject;
        params.subject_alt_names = sans
            .iter()
            .map(SubjectAltName::to_rcgen)
            .collect::<Result<_, _>>()
            .map_err(issue_error)?;
        params.not_before = to_offset(not_before).ok_or_else(out_of_range)?;
        params.not_after = to_offset(not_after).ok_or_else(out_of_range)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(issue_error)?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), &self.key)
            .map_err(issue_error)?;
        let signed = params.signed_by(&key, &issuer).map_err(issue_error)?;
        Ok(IssuedCertificate {
            cert_pem: signed.pem(),
            key_pem: SecretValue::new(key.serialize_pem()),
            chain_pem: self.cert_pem.clone(),
            not_after,
            fingerprint: fingerprint(signed.der()),
        })
    }

    /// Checks a stored certificate secret against this CA and the policy
    /// entry: chain, key, CN, SANs, validity now. This is the test step.
    pub fn verify(
        &self,
        secret: &str,
        value: &SecretValue,
        cert: &Certificate,
        now: DateTime<Utc>,
    ) -> Result<CertificateFacts, CertificateError> {
        let fail = |reason: String| CertificateError::Verification {
            secret: secret.to_owned(),
            reason,
        };
        let stored = StoredCertificate::parse(secret, value)?;
        let leaf_der =
            first_pem_certificate(&stored.cert_pem).ok_or_else(|| CertificateError::Malformed {
                secret: secret.to_owned(),
                reason: "cert_pem holds no PEM certificate".to_owned(),
            })?;
        let facts = facts_of(secret, &leaf_der)?;
        let (_, leaf) = parse(secret, &leaf_der)?;
        let (_, ca) = x509_parser::parse_x509_certificate(&self.cert_der)
            .map_err(|_| fail("the CA certificate does not parse".to_owned()))?;

        if leaf.issuer() != ca.subject() {
            return Err(fail(format!(
                "issued by {}, not by the CA {}",
                leaf.issuer(),
                ca.subject()
            )));
        }
        leaf.verify_signature(Some(ca.public_key())).map_err(|_| {
            fail("the signature does not verify with the CA's public key".to_owned())
        })?;
        if first_pem_certificate(&stored.chain_pem).as_deref() != Some(self.cert_der.as_slice()) {
            return Err(fail(
                "chain_pem is not the issuing CA's certificate".to_owned(),
            ));
        }
        let key = KeyPair::from_pem(stored.key_pem.expose())
            .map_err(|_| fail("key_pem is not a private key".to_owned()))?;
        if key.public_key_raw() != leaf.public_key().subject_public_key.data.as_ref() {
            return Err(fail("key_pem is not the certificate's key".to_owned()));
        }
        if facts.not_before > now || facts.not_after <= now {
            return Err(fail(format!(
                "not valid now (valid {} to {})",
                facts.not_before, facts.not_after
            )));
        }
        facts.check_subject(cert).map_err(fail)?;
        Ok(facts)
    }
}

/// A freshly issued certificate and its key.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: SecretValue,
    /// The issuing CA's certificate, PEM.
    pub chain_pem: String,
    /// When it expires.
    pub not_after: DateTime<Utc>,
    /// Fingerprint of the certificate's DER.
    pub fingerprint: String,
}

impl IssuedCertificate {
    /// The secret value, DESIGN §5's form.
    pub fn secret_value(&self) -> SecretValue {
        let json = serde_json::json!({
            "cert_pem": self.cert_pem,
            "key_pem": self.key_pem.expose(),
            "chain_pem": self.chain_pem,
            "not_after": self.not_after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        SecretValue::new(json.to_string())
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// The subject CN (the Pulsar role), when there is one.
    pub common_name: Option<String>,
    /// Its subject alternative names.
    pub sans: BTreeSet<SubjectAltName>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Fingerprint of the certificate's DER.
    pub fingerprint: String,
}

impl CertificateFacts {
    /// Reads the certificate of a certificate secret, without checking who
    /// issued it (that needs the CA: [`CertificateAuthority::verify`]).
    pub fn of_secret(secret: &str, value: &SecretValue) -> Result<Self, CertificateError> {
        let stored = StoredCertificate::parse(secret, value)?;
        let der =
            first_pem_certificate(&stored.cert_pem).ok_or_else(|| CertificateError::Malformed {
                secret: secret.to_owned(),
                reason: "cert_pem holds no PEM certificate".to_owned(),
            })?;
        facts_of(secret, &der)
    }

    /// `Err(why)` when CN or SANs are not what the policy entry says.
    fn check_subject(&self, cert: &Certificate) -> Result<(), String> {
        if self.common_name.as_deref() != Some(cert.role.as_str()) {
            return Err(format!(
                "subject CN is {:?}, the policy's role is {:?}",
                self.common_name, cert.role
            ));
        }
        // A policy SAN that does not parse cannot be in any certificate.
        let wanted = policy_sans(cert).map_err(|err| err.to_string())?;
        if self.sans != wanted {
            let show = |sans: &BTreeSet<SubjectAltName>| {
                sans.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "SANs are [{}], the policy's are [{}]",
                show(&self.sans),
                show(&wanted)
            ));
        }
        Ok(())
    }
}

/// A certificate secret's stored form.
struct StoredCertificate {
    cert_pem: String,
    key_pem: SecretValue,
    chain_pem: String,
}

impl StoredCertificate {
    fn parse(secret: &str, value: &SecretValue) -> Result<Self, CertificateError> {
        #[derive(serde::Deserialize)]
        struct Stored {
            cert_pem: String,
            key_pem: String,
            chain_pem: String,
        }
        // As for the CA: serde_json would quote the input, key included.
        let stored: Stored =
            serde_json::from_str(value.expose()).map_err(|_| CertificateError::Malformed {
                secret: secret.to_owned(),
                reason:
                    "not JSON of the form {\"cert_pem\",\"key_pem\",\"chain_pem\",\"not_after\"}"
                        .to_owned(),
            })?;
        Ok(Self {
            cert_pem: stored.cert_pem,
            key_pem: SecretValue::new(stored.key_pem),
            chain_pem: stored.chain_pem,
        })
    }
}

fn first_pem_certificate(pem: &str) -> Option<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|block| block.label == "CERTIFICATE")
        .map(|block| block.contents)
}

fn parse<'d>(
    secret: &str,
    der: &'d [u8],
) -> Result<(&'d [u8], X509Certificate<'d>), CertificateError> {
    x509_parser::parse_x509_certificate(der).map_err(|_| CertificateError::Malformed {
        secret: secret.to_owned(),
        reason: "cert_pem is not a parsable X.509 certificate".to_owned(),
    })
}

fn facts_of(secret: &str, der: &[u8]) -> Result<CertificateFacts, CertificateError> {
    let (_, cert) = parse(secret, der)?;
    let malformed = |reason: &str| CertificateError::Malformed {
        secret: secret.to_owned(),
        reason: reason.to_owned(),
    };
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let mut sans = BTreeSet::new();
    let extension = cert
        .subject_alternative_name()
        .map_err(|_| malformed("its subjectAltName extension does not parse"))?;
    for name in extension.iter().flat_map(|ext| &ext.value.general_names) {
        let san = match name {
            GeneralName::DNSName(dns) => SubjectAltName::Dns(dns.to_ascii_lowercase()),
            GeneralName::URI(uri) => SubjectAltName::Uri((*uri).to_owned()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => SubjectAltName::Ip(IpAddr::from(
                    <[u8; 4]>::try_from(*bytes).map_err(|_| malformed("bad IPv4 SAN"))?,
                )),
                16 => SubjectAltName::Ip(IpAddr::from(
                    <[u8; 16]>::try_from(*bytes).map_err(|_| malformed("bad IPv6 SAN"))?,
                )),
                _ => return Err(malformed("an IP address SAN is neither IPv4 nor IPv6")),
            },
            // Other kinds are never issued here; one present means the
            // certificate is not ours to keep.
            other => SubjectAltName::Uri(format!("unsupported:{other}")),
        };
        sans.insert(san);
    }
    let time = |t: x509_parser::time::ASN1Time| {
        DateTime::<Utc>::from_timestamp(t.timestamp(), 0)
            .ok_or_else(|| malformed("its validity is out of range"))
    };
    Ok(CertificateFacts {
        common_name,
        sans,
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
        fingerprint: fingerprint(der),
    })
}

/// X.509 times have whole seconds; the secret's `not_after` says the same.
fn trim_to_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

fn to_offset(at: DateTime<Utc>) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp()).ok()
}

// ---------------------------------------------------------------------------
// The secret kind.

/// The `certificates:` entries of a policy, issued from and tested against
/// the CA in each entry's `ca_secret`. A CA is read once per instance (one
/// cycle, or one protocol step): judging, minting and testing an entry, and
/// every entry sharing the CA, use that one read. A CA replaced during a
/// cycle is found by the next one (`ca_replaced`).
pub struct CertificateKind<'p> {
    entries: &'p [Certificate],
    authorities: Mutex<HashMap<String, Arc<CertificateAuthority>>>,
}

impl<'p> CertificateKind<'p> {
    /// The kind over these entries (`policy.certificates()`).
    pub fn new(entries: &'p [Certificate]) -> Self {
        Self {
            entries,
            authorities: Mutex::default(),
        }
    }

    /// The CA in `secret`, read on first use; a CA that could not be loaded
    /// is not remembered, so each entry reports its own failure.
    async fn authority(
        &self,
        store: Store<'_>,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<CertificateAuthority>, CertificateError> {
        let known = self.lock().get(secret).cloned();
        if let Some(ca) = known {
            return Ok(ca);
        }
        let ca = Arc::new(CertificateAuthority::load(store, secret, now).await?);
        self.lock().insert(secret.to_owned(), ca.clone());
        Ok(ca)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CertificateAuthority>>> {
        self.authorities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl SecretKind for CertificateKind<'_> {
    type Item = Certificate;

    fn kind(&self) -> &'static str {
        "certificate"
    }

    fn items(&self) -> Vec<&Certificate> {
        self.entries.iter().collect()
    }

    fn labels<'a>(&self, cert: &'a Certificate) -> Labels<'a> {
        Labels {
            name: &cert.name,
            role: Some(&cert.role),
            secret: &cert.secret,
        }
    }

    fn description(&self, cert: &Certificate) -> String {
        format!(
            "X.509 client certificate for Pulsar role {} (kong-pulsar rotate)",
            cert.role
        )
    }

    async fn judge(
        &self,
        store: Store<'_>,
        cert: &Certificate,
        value: &SecretValue,
        now: DateTime<Utc>,
    ) -> Verdict {
        let Ok(facts) = CertificateFacts::of_secret(&cert.secret, value) else {
            return Verdict::Replace {
                reason: Reason::Malformed,
                expires_at: None,
                fingerprint: None,
            };
        };
        let replace = |reason| Verdict::Replace {
            reason,
            expires_at: Some(facts.not_after),
            fingerprint: Some(facts.fingerprint.clone()),
        };
        if facts.check_subject(cert).is_err() {
            return replace(Reason::SubjectChanged);
        }
        // Against the CA in ca_secret now. A CA that cannot be loaded is
        // reported when a renewal needs it (an issuer failure); until then
        // the certificate is judged by itself.
        match self.authority(store, &cert.ca_secret, now).await {
            Ok(ca) => {
                let leaf = StoredCertificate::parse(&cert.secret, value)
                    .ok()
                    .and_then(|stored| first_pem_certificate(&stored.cert_pem));
                if !leaf.is_some_and(|der| ca.issued(&der)) {
                    return replace(Reason::CaReplaced);
                }
            }
            Err(err) => tracing::warn!(
                name = cert.name,
                ca_secret = cert.ca_secret,
                error = error_chain(&err),
                "the CA could not be loaded to judge the certificate"
            ),
        }
        let renew_before =
            chrono::Duration::from_std(cert.renew_before).unwrap_or(chrono::Duration::MAX);
        if facts
            .not_after
            .checked_sub_signed(renew_before)
            .is_none_or(|at| at <= now)
        {
            return replace(Reason::Expiring);
        }
        Verdict::Keep {
            expires_at: facts.not_after,
            fingerprint: facts.fingerprint,
        }
    }

    async fn mint(
        &self,
        store: Store<'_>,
        cert: &Certificate,
        now: DateTime<Utc>,
    ) -> Result<Minted, MintError> {
        let ca = self
            .authority(store, &cert.ca_secret, now)
            .await
            .map_err(|e| MintError::Issuer(e.into()))?;
        let issued = ca.issue(cert, now).map_err(|e| MintError::Mint(e.into()))?;
        Ok(Minted {
            value: issued.secret_value(),
            expires_at: issued.not_after,
            fingerprint: issued.fingerprint,
        })
    }

    async fn test(
        &self,
        store: Store<'_>,
        cert: &Certificate,
        value: &SecretValue,
        now: DateTime<Utc>,
    ) -> Result<Value, KindError> {
        let ca = self.authority(store, &cert.ca_secret, now).await?;
        let facts = ca.verify(&cert.secret, value, cert, now)?;
        Ok(serde_json::json!({
            "not_after": facts.not_after,
            "fingerprint": facts.fingerprint,
        }))
    }
}

#[cfg(test)]
mod tests;
