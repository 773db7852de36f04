//! X.509 client certificates for Pulsar clients that authenticate with TLS
//! (DESIGN §5, §7): every `certificates:` entry of the policy is issued from
//! the CA kept in Secrets Manager and renewed before it expires.
//!
//! Renewal follows the token rotation's discipline, with the same Secrets
//! Manager helpers ([`crate::rotation`]'s store), so readers never see a
//! certificate that was not checked:
//!
//! 1. issue a fresh key and certificate (subject CN = the Pulsar role, the
//!    policy's SANs, `validity`) signed by the CA in `ca_secret`;
//! 2. store it as a new version staged `AWSPENDING`;
//! 3. read that version back and prove it: the certificate chains to the CA
//!    (signature checked with the CA's public key), the key is the
//!    certificate's key, CN and SANs are the policy's, and it is valid now;
//! 4. only then move `AWSCURRENT` to it (the old version becomes
//!    `AWSPREVIOUS`).
//!
//! * [`renew_certificates`] — the scheduled cycle, one [`CertificateReport`]
//!   per entry; one failing entry never stops the others.
//! * [`handle_certificate_rotation_step`] — Secrets Manager's four-step
//!   protocol for certificate secrets, with the same guards as the token one.
//!
//! Private keys never reach logs, reports or error messages: certificates are
//! identified by a fingerprint of their DER.
//!
//! Secret forms: a certificate secret is
//! `{"cert_pem","key_pem","chain_pem","not_after"}` where `chain_pem` is the
//! issuing CA's certificate (what a client presents after its own, and what a
//! verifier trusts); the CA secret is `{"cert_pem","key_pem"}`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use aws_sdk_secretsmanager::Client;
use chrono::{DateTime, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::policy::{Certificate, Policy};
use crate::rotation::{
    RotationStep, RotationStepEvent, StepRefused, already_staged, describe, names_secret,
    staged_for_rotation,
};
use crate::secrets::SecretValue;
use crate::secrets::store::{AWSCURRENT, AWSPENDING, SecretMetadata, Select, Store, StoreError};
use crate::telemetry::error_chain;
use crate::telemetry::fingerprint;

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
    /// One of AWS's template guards refused a rotation step.
    #[error(transparent)]
    Refused(#[from] StepRefused),
    /// No `certificates:` entry keeps its certificate in this secret.
    #[error("secret {secret} is not a certificate secret in the policy")]
    NotACertificateSecret {
        /// The secret's name.
        secret: String,
    },
    /// `testSecret` found no value in the pending version.
    #[error("the AWSPENDING version {version_id} of secret {secret} has no value")]
    PendingMissing {
        /// The secret's name.
        secret: String,
        /// The request token.
        version_id: String,
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
        Ok(Self {
            secret: secret.to_owned(),
            cert_pem: stored.cert_pem,
            cert_der,
            key,
        })
    }

    /// Reads and parses the CA secret `secret` (its `AWSCURRENT` version).
    async fn load(store: Store<'_>, secret: &str) -> Result<Self, CertificateError> {
        let current = store
            .get(secret, Select::Stage(AWSCURRENT))
            .await?
            .ok_or_else(|| CertificateError::Ca {
                secret: secret.to_owned(),
                reason: "the secret or its AWSCURRENT version does not exist".to_owned(),
            })?;
        Self::from_secret(secret, &current.value)
    }

    /// Issues a fresh ECDSA P-256 key and a client certificate for `cert`:
    /// CN = its role, its SANs, valid from a moment ago for `validity`.
    pub fn issue(
        &self,
        cert: &Certificate,
        now: DateTime<Utc>,
    ) -> Result<IssuedCertificate, CertificateError> {
        let issue_error = |source| CertificateError::Issue {
            name: cert.name.clone(),
            source,
        };
        let sans = policy_sans(cert)?;
        let out_of_range = || CertificateError::ValidityOutOfRange {
            name: cert.name.clone(),
        };
        let validity = chrono::Duration::from_std(cert.validity).map_err(|_| out_of_range())?;
        let not_before = now - BACKDATE;
        let not_after = now
            .checked_add_signed(validity)
            .map(trim_to_seconds)
            .ok_or_else(out_of_range)?;

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
// The scheduled cycle.

/// How a scheduled run behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenewOptions {
    /// Renew every certificate, due or not (a leaked key, a replaced CA).
    pub force: bool,
    /// Report what is due and change nothing.
    pub dry_run: bool,
}

/// What happened to one `certificates:` entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertificateReport {
    /// The entry's name.
    pub name: String,
    /// Its role (the subject CN).
    pub role: String,
    /// Its secret.
    pub secret: String,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: CertificateOutcome,
}

/// The outcome for one certificate. Fingerprints of the certificates' DER
/// identify them; keys never appear.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CertificateOutcome {
    /// The secret did not exist; it was created holding a checked certificate.
    Created {
        /// The new version.
        version_id: String,
        /// The new certificate's expiry.
        not_after: DateTime<Utc>,
        /// The new certificate's fingerprint.
        fingerprint: String,
    },
    /// A new certificate is `AWSCURRENT`; the old one is `AWSPREVIOUS`.
    Renewed {
        /// Why.
        reason: RenewalReason,
        /// The new version.
        version_id: String,
        /// The version that was current, if any.
        previous_version_id: Option<String>,
        /// The old certificate's expiry, when it could be read.
        old_not_after: Option<DateTime<Utc>>,
        /// The new certificate's expiry.
        new_not_after: DateTime<Utc>,
        /// The new certificate's fingerprint.
        fingerprint: String,
    },
    /// Nothing to do: outside the renewal window and as the policy says.
    Fresh {
        /// The current certificate's expiry.
        not_after: DateTime<Utc>,
    },
    /// Dry run: this certificate would be created or renewed.
    Due {
        /// Why.
        reason: RenewalReason,
        /// The current certificate's expiry, when known.
        not_after: Option<DateTime<Utc>>,
    },
    /// Nothing changed for this entry: `AWSCURRENT` is what it was.
    Failed {
        /// The step that failed.
        step: CertificateStep,
        /// Why, with causes; never key material.
        error: String,
    },
}

impl CertificateOutcome {
    /// Whether this entry failed.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

/// Why a certificate is (or would be) replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalReason {
    /// The secret does not exist.
    Missing,
    /// The secret exists without an `AWSCURRENT` value.
    NoCurrentValue,
    /// The value is not a certificate secret.
    Malformed,
    /// CN or SANs differ from the policy.
    SubjectChanged,
    /// It expires within `renew_before` (or has expired).
    Expiring,
    /// Asked for.
    Forced,
}

/// Where an entry's renewal stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateStep {
    /// Reading the current certificate.
    ReadCurrent,
    /// Loading the CA.
    Ca,
    /// Issuing the certificate.
    Issue,
    /// Creating the secret.
    Create,
    /// Storing the new certificate as `AWSPENDING`.
    StagePending,
    /// Checking the new certificate.
    Test,
    /// Moving `AWSCURRENT`.
    Promote,
}

/// One scheduled cycle over every `certificates:` entry, in policy order.
/// An entry that fails is reported and the others go on.
pub async fn renew_certificates(
    policy: &Policy,
    secrets: &Client,
    options: RenewOptions,
) -> Vec<CertificateReport> {
    let store = Store::new(secrets);
    let mut reports = Vec::with_capacity(policy.certificates().len());
    for cert in policy.certificates() {
        let outcome = renew_one(store, cert, options).await;
        if let CertificateOutcome::Failed { step, error } = &outcome {
            tracing::warn!(
                event = "certificate_rotation_failed",
                certificate = cert.name,
                role = cert.role,
                secret = cert.secret,
                step = ?step,
                error,
                "certificate renewal failed; AWSCURRENT unchanged"
            );
        }
        reports.push(CertificateReport {
            name: cert.name.clone(),
            role: cert.role.clone(),
            secret: cert.secret.clone(),
            outcome,
        });
    }
    reports
}

fn failed(step: CertificateStep, err: &CertificateError) -> CertificateOutcome {
    CertificateOutcome::Failed {
        step,
        error: error_chain(err),
    }
}

/// The current certificate and whether it may stay.
enum Verdict {
    Keep(DateTime<Utc>),
    Replace {
        reason: RenewalReason,
        current_version: Option<String>,
        not_after: Option<DateTime<Utc>>,
    },
}

async fn verdict(
    store: Store<'_>,
    cert: &Certificate,
    force: bool,
    now: DateTime<Utc>,
) -> Result<Verdict, CertificateError> {
    if store.describe(&cert.secret).await?.is_none() {
        return Ok(Verdict::Replace {
            reason: RenewalReason::Missing,
            current_version: None,
            not_after: None,
        });
    }
    let current = store.get(&cert.secret, Select::Stage(AWSCURRENT)).await?;
    let Some(current) = current else {
        return Ok(Verdict::Replace {
            reason: RenewalReason::NoCurrentValue,
            current_version: None,
            not_after: None,
        });
    };
    let replace = |reason, not_after| Verdict::Replace {
        reason,
        current_version: Some(current.version_id.clone()),
        not_after,
    };
    let facts = match CertificateFacts::of_secret(&cert.secret, &current.value) {
        Ok(facts) => facts,
        Err(_) => return Ok(replace(RenewalReason::Malformed, None)),
    };
    let not_after = Some(facts.not_after);
    if force {
        return Ok(replace(RenewalReason::Forced, not_after));
    }
    if facts.check_subject(cert).is_err() {
        return Ok(replace(RenewalReason::SubjectChanged, not_after));
    }
    let renew_before =
        chrono::Duration::from_std(cert.renew_before).unwrap_or(chrono::Duration::MAX);
    if facts
        .not_after
        .checked_sub_signed(renew_before)
        .is_none_or(|at| at <= now)
    {
        return Ok(replace(RenewalReason::Expiring, not_after));
    }
    Ok(Verdict::Keep(facts.not_after))
}

async fn renew_one(
    store: Store<'_>,
    cert: &Certificate,
    options: RenewOptions,
) -> CertificateOutcome {
    use CertificateStep as S;
    let now = Utc::now();
    let (reason, current_version, old_not_after) =
        match verdict(store, cert, options.force, now).await {
            Ok(Verdict::Keep(not_after)) => return CertificateOutcome::Fresh { not_after },
            Ok(Verdict::Replace {
                reason,
                current_version,
                not_after,
            }) => (reason, current_version, not_after),
            Err(err) => return failed(S::ReadCurrent, &err),
        };
    if options.dry_run {
        return CertificateOutcome::Due {
            reason,
            not_after: old_not_after,
        };
    }
    let ca = match CertificateAuthority::load(store, &cert.ca_secret).await {
        Ok(ca) => ca,
        Err(err) => return failed(S::Ca, &err),
    };
    let issued = match ca.issue(cert, now) {
        Ok(issued) => issued,
        Err(err) => return failed(S::Issue, &err),
    };
    let value = issued.secret_value();
    let version_id = uuid::Uuid::new_v4().to_string();

    if reason == RenewalReason::Missing {
        // No reader can see a secret that does not exist yet, so the check
        // runs on the value in hand before it becomes the first version.
        if let Err(err) = ca.verify(&cert.secret, &value, cert, now) {
            return failed(S::Test, &err);
        }
        let description = format!(
            "X.509 client certificate for Pulsar role {} (kong-pulsar rotate)",
            cert.role
        );
        if let Err(err) = store
            .create(&cert.secret, &value, &version_id, &description)
            .await
        {
            return failed(S::Create, &err.into());
        }
        log_change("certificate_created", cert, &version_id, None, &issued);
        return CertificateOutcome::Created {
            version_id,
            not_after: issued.not_after,
            fingerprint: issued.fingerprint,
        };
    }

    if let Err(err) = store
        .put(&cert.secret, &version_id, &value, AWSPENDING)
        .await
    {
        return failed(S::StagePending, &err.into());
    }
    // Test what Secrets Manager holds, not what was sent: the version
    // readers will get once it is promoted.
    let tested = match store
        .get(
            &cert.secret,
            Select::VersionInStage(&version_id, AWSPENDING),
        )
        .await
    {
        Ok(Some(pending)) => ca.verify(&cert.secret, &pending.value, cert, now),
        Ok(None) => Err(CertificateError::PendingMissing {
            secret: cert.secret.clone(),
            version_id: version_id.clone(),
        }),
        Err(err) => Err(err.into()),
    };
    if let Err(err) = tested {
        return failed(S::Test, &err);
    }
    if let Err(err) = store
        .promote_pending(&cert.secret, &version_id, current_version.as_deref())
        .await
    {
        return failed(S::Promote, &err.into());
    }
    log_change(
        "certificate_renewed",
        cert,
        &version_id,
        current_version.as_deref(),
        &issued,
    );
    CertificateOutcome::Renewed {
        reason,
        version_id,
        previous_version_id: current_version,
        old_not_after,
        new_not_after: issued.not_after,
        fingerprint: issued.fingerprint,
    }
}

fn log_change(
    event: &'static str,
    cert: &Certificate,
    version_id: &str,
    previous_version_id: Option<&str>,
    issued: &IssuedCertificate,
) {
    tracing::info!(
        event,
        certificate = cert.name,
        role = cert.role,
        secret = cert.secret,
        version_id,
        previous_version_id,
        fingerprint = issued.fingerprint,
        not_after = %issued.not_after,
        "certificate issued and promoted to AWSCURRENT"
    );
}

// ---------------------------------------------------------------------------
// Secrets Manager's four-step protocol.

/// The `certificates:` entry whose `secret` is this one, by name or ARN
/// (full, or partial without AWS's random `-xxxxxx` suffix).
pub fn certificate_for_secret<'p>(
    policy: &'p Policy,
    name: &str,
    arn: Option<&str>,
) -> Option<&'p Certificate> {
    policy
        .certificates()
        .iter()
        .find(|cert| names_secret(&cert.secret, name, arn))
}

/// What a certificate rotation step did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertificateStepReport {
    /// The step.
    pub step: RotationStep,
    /// The secret's name.
    pub secret: String,
    /// The version (= the request token).
    pub version_id: String,
    /// The `certificates:` entry.
    pub certificate: String,
    /// What was done.
    #[serde(flatten)]
    pub action: CertificateStepAction,
}

/// What a certificate rotation step did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CertificateStepAction {
    /// The version is already `AWSCURRENT`: nothing to do, whatever the step.
    AlreadyCurrent,
    /// `createSecret` issued a certificate and staged it `AWSPENDING`.
    Staged {
        /// Its expiry.
        not_after: DateTime<Utc>,
        /// Its fingerprint.
        fingerprint: String,
    },
    /// `createSecret` found the pending version already holding a value.
    AlreadyStaged,
    /// `setSecret`: the broker trusts the CA, nothing to install.
    NothingToSet,
    /// `testSecret`: the pending certificate chains to the CA, its key
    /// matches, and CN/SANs are the policy's.
    Tested {
        /// Its expiry.
        not_after: DateTime<Utc>,
        /// Its fingerprint.
        fingerprint: String,
    },
    /// `finishSecret` moved `AWSCURRENT` to this version.
    Promoted {
        /// The version that is now `AWSPREVIOUS`.
        previous_version_id: Option<String>,
    },
}

/// Performs one step of the rotation protocol for a certificate secret, with
/// the token protocol's guards (see [`crate::rotation::handle_rotation_step`]).
pub async fn handle_certificate_rotation_step(
    event: RotationStepEvent,
    policy: &Policy,
    secrets: &Client,
) -> Result<CertificateStepReport, CertificateError> {
    let metadata = describe(Store::new(secrets), &event.secret_id).await?;
    certificate_step(event, metadata, policy, secrets).await
}

/// [`handle_certificate_rotation_step`] for a secret already described.
pub(crate) async fn certificate_step(
    event: RotationStepEvent,
    metadata: SecretMetadata,
    policy: &Policy,
    secrets: &Client,
) -> Result<CertificateStepReport, CertificateError> {
    let store = Store::new(secrets);
    let secret_id = event.secret_id.as_str();
    let version_id = event.client_request_token.as_str();
    let cert = certificate_for_secret(policy, &metadata.name, metadata.arn.as_deref()).ok_or_else(
        || CertificateError::NotACertificateSecret {
            secret: metadata.name.clone(),
        },
    )?;
    let report = |action| CertificateStepReport {
        step: event.step,
        secret: metadata.name.clone(),
        version_id: version_id.to_owned(),
        certificate: cert.name.clone(),
        action,
    };
    if !staged_for_rotation(&metadata, version_id)? {
        tracing::info!(
            secret = metadata.name,
            version_id,
            step = ?event.step,
            "version already AWSCURRENT; nothing to do"
        );
        return Ok(report(CertificateStepAction::AlreadyCurrent));
    }
    let name = metadata.name.as_str();
    let action = match event.step {
        RotationStep::CreateSecret => {
            if already_staged(store, secret_id, &metadata, version_id).await? {
                return Ok(report(CertificateStepAction::AlreadyStaged));
            }
            let ca = CertificateAuthority::load(store, &cert.ca_secret).await?;
            let issued = ca.issue(cert, Utc::now())?;
            store
                .put(secret_id, version_id, &issued.secret_value(), AWSPENDING)
                .await?;
            tracing::info!(
                event = "certificate_staged",
                certificate = cert.name,
                role = cert.role,
                secret = name,
                version_id,
                fingerprint = issued.fingerprint,
                not_after = %issued.not_after,
                "createSecret: new certificate staged AWSPENDING"
            );
            CertificateStepAction::Staged {
                not_after: issued.not_after,
                fingerprint: issued.fingerprint,
            }
        }
        // Pulsar trusts the CA, not individual certificates: nothing to
        // register before the test.
        RotationStep::SetSecret => CertificateStepAction::NothingToSet,
        RotationStep::TestSecret => {
            let pending = store
                .get(secret_id, Select::VersionInStage(version_id, AWSPENDING))
                .await?
                .ok_or_else(|| CertificateError::PendingMissing {
                    secret: name.to_owned(),
                    version_id: version_id.to_owned(),
                })?;
            let ca = CertificateAuthority::load(store, &cert.ca_secret).await?;
            let facts = ca.verify(name, &pending.value, cert, Utc::now())?;
            CertificateStepAction::Tested {
                not_after: facts.not_after,
                fingerprint: facts.fingerprint,
            }
        }
        RotationStep::FinishSecret => {
            let previous = metadata.version_with(AWSCURRENT).map(str::to_owned);
            store
                .promote_pending(secret_id, version_id, previous.as_deref())
                .await?;
            tracing::info!(
                event = "certificate_rotated",
                certificate = cert.name,
                role = cert.role,
                secret = name,
                version_id,
                previous_version_id = previous.as_deref(),
                "finishSecret: AWSCURRENT moved to the new certificate"
            );
            CertificateStepAction::Promoted {
                previous_version_id: previous,
            }
        }
    };
    Ok(report(action))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(sans: &[&str]) -> Certificate {
        Certificate {
            name: "gw".into(),
            role: "payments-gw".into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            validity: Duration::from_secs(30 * 86400),
            renew_before: Duration::from_secs(7 * 86400),
            secret: "kp/certs/gw".into(),
            ca_secret: "kp/ca".into(),
        }
    }

    fn test_ca() -> (SecretValue, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let json = serde_json::json!({"cert_pem": cert.pem(), "key_pem": key.serialize_pem()});
        (SecretValue::new(json.to_string()), key.serialize_pem())
    }

    #[test]
    fn sans_parse_and_garbage_is_refused() {
        assert_eq!(
            SubjectAltName::parse("GW.Internal").unwrap(),
            SubjectAltName::Dns("gw.internal".into())
        );
        assert!(matches!(
            SubjectAltName::parse("10.0.0.7").unwrap(),
            SubjectAltName::Ip(_)
        ));
        assert!(matches!(
            SubjectAltName::parse("::1").unwrap(),
            SubjectAltName::Ip(_)
        ));
        assert!(matches!(
            SubjectAltName::parse("spiffe://kp/payments").unwrap(),
            SubjectAltName::Uri(_)
        ));
        assert!(matches!(
            SubjectAltName::parse("*.gw.internal").unwrap(),
            SubjectAltName::Dns(_)
        ));
        for garbage in [
            "bad_name",
            "a..b",
            "-a.b",
            "héllo.example",
            "http://",
            "*",
            "a b",
        ] {
            assert!(SubjectAltName::parse(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn issued_certificates_verify_and_mismatches_do_not() {
        let (ca_secret, _) = test_ca();
        let ca = CertificateAuthority::from_secret("kp/ca", &ca_secret).unwrap();
        let cert = entry(&["gw.internal", "10.0.0.7", "spiffe://kp/gw"]);
        let now = Utc::now();
        let issued = ca.issue(&cert, now).unwrap();
        let facts = ca
            .verify("kp/certs/gw", &issued.secret_value(), &cert, now)
            .unwrap();
        assert_eq!(facts.common_name.as_deref(), Some("payments-gw"));
        assert_eq!(facts.sans.len(), 3);
        assert_eq!(facts.not_after, issued.not_after);

        let other = entry(&["gw.internal"]);
        assert!(matches!(
            ca.verify("kp/certs/gw", &issued.secret_value(), &other, now),
            Err(CertificateError::Verification { .. })
        ));
        let (foreign_secret, _) = test_ca();
        let foreign = CertificateAuthority::from_secret("kp/ca2", &foreign_secret).unwrap();
        let err = foreign
            .verify("kp/certs/gw", &issued.secret_value(), &cert, now)
            .unwrap_err();
        assert!(
            matches!(err, CertificateError::Verification { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_ca_whose_key_is_not_its_certificates_is_refused_without_leaking_it() {
        let (ca_secret, _) = test_ca();
        let (_, other_key) = test_ca();
        let mut json: serde_json::Value = serde_json::from_str(ca_secret.expose()).unwrap();
        json["key_pem"] = other_key.clone().into();
        let err = CertificateAuthority::from_secret("kp/ca", &SecretValue::new(json.to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("not the key"), "{err}");
        let err = CertificateAuthority::from_secret("kp/ca", &SecretValue::new(other_key.clone()))
            .unwrap_err();
        assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
    }
}
