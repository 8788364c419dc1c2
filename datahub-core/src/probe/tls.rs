//! rustls client configurations per TLS mode, the certificate verifiers behind them, and the
//! facts read from the server certificate.
//!
//! Every configuration is built with its own ring provider (no process-wide provider). The
//! verifier always records the server's leaf certificate (subject and expiry) before it decides,
//! so a report can say which certificate was refused. `verify-full` is webpki with the
//! connection's CA only (the bundled public roots when it has none); `verify-ca` is the same with
//! only the name-mismatch errors turned into success; weaker modes encrypt without verifying the
//! certificate, but still check the handshake signature against it.
//!
//! A test's configuration never resumes a TLS session (every test runs the full handshake, so
//! the certificate is verified and recorded each time), but it shares with every other test in
//! the process the key-exchange group each server name last chose ([`KxHints`]): without it,
//! each test's fresh configuration offers an X25519 key share first, and a server that accepts
//! only P-256 (PostgreSQL's default `ssl_ecdh_curve`) answers with a HelloRetryRequest, costing
//! a round trip, an X25519 key pair and a second ClientHello on every test. The hints hold no
//! secret: a server name and a group name. A wrong hint costs only that retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionStore, Resumption, Tls12Resumption, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore,
    SignatureScheme,
};
use time::OffsetDateTime;

use crate::model::{TlsMode, TlsSettings};
use crate::secret::PrivateKeyPem;

/// The longest certificate subject kept in a report, in characters.
const SUBJECT_MAX_CHARS: usize = 256;

/// What the verifier saw of the server's leaf certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerCert {
    /// The subject, RFC 4514 style, without control characters.
    pub(crate) subject: Option<String>,
    /// The end of the validity period (UTC).
    pub(crate) not_after: Option<OffsetDateTime>,
}

/// Where the verifier leaves the leaf certificate's facts.
pub(crate) type PeerSlot = Arc<Mutex<Option<PeerCert>>>;

/// Why a configuration could not be built; the text names the field and never quotes it.
#[derive(Debug)]
pub(crate) struct ConfigError(pub(crate) &'static str);

/// A ready rustls configuration and the slot its verifier fills.
pub(crate) struct Plan {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) peer: PeerSlot,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").finish_non_exhaustive()
    }
}

/// What a configuration keeps between the connections made with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sessions {
    /// rustls's default: TLS sessions resumed when the server allows (a pool's connections).
    Resume,
    /// No session is ever resumed; only the process-wide key-exchange hints are shared
    /// (tests, see the module docs).
    HintsOnly,
}

/// The most server names [`KxHints`] remembers; when full, it starts again empty.
const KX_HINTS_MAX: usize = 4096;

/// The key-exchange group each server name last chose, shared by every test's configuration.
/// Stores no session or ticket: nothing is ever resumed through it.
#[derive(Debug, Default)]
pub(crate) struct KxHints(Mutex<HashMap<ServerName<'static>, NamedGroup>>);

impl KxHints {
    /// The one store of the process.
    fn shared() -> Arc<Self> {
        static HINTS: OnceLock<Arc<KxHints>> = OnceLock::new();
        Arc::clone(HINTS.get_or_init(Arc::default))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ServerName<'static>, NamedGroup>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ClientSessionStore for KxHints {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        let mut hints = self.lock();
        if hints.len() >= KX_HINTS_MAX && !hints.contains_key(&server_name) {
            hints.clear();
        }
        hints.insert(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().get(&server_name.to_owned()).copied()
    }

    fn set_tls12_session(
        &self,
        _server_name: ServerName<'static>,
        _value: rustls::client::Tls12ClientSessionValue,
    ) {
    }

    fn tls12_session(
        &self,
        _server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _server_name: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        _server_name: ServerName<'static>,
        _value: rustls::client::Tls13ClientSessionValue,
    ) {
    }

    fn take_tls13_ticket(
        &self,
        _server_name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        None
    }
}

/// Builds the configuration for `mode` (which must use TLS at some point).
pub(crate) fn plan(
    mode: TlsMode,
    tls: &TlsSettings,
    client_key: Option<&PrivateKeyPem>,
    sessions: Sessions,
) -> Result<Plan, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let peer: PeerSlot = Arc::new(Mutex::new(None));
    let check: Arc<dyn ServerCertVerifier> = if mode.verifies_certificate() {
        let roots = roots(tls)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|_| ConfigError("tls.ca_cert_pem: no usable CA certificate"))?;
        if mode == TlsMode::VerifyCa {
            Arc::new(IgnoreName(webpki))
        } else {
            webpki
        }
    } else {
        Arc::new(NoCertificateCheck(
            provider.signature_verification_algorithms,
        ))
    };
    let verifier = Arc::new(Recording {
        inner: check,
        peer: peer.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| ConfigError("tls: no protocol version available"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (tls.client_cert_pem(), client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_str().as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| ConfigError("tls.client_cert_pem: not a readable certificate"))?;
            let key = PrivateKeyDer::from_pem_slice(key.expose_secret().as_bytes())
                .map_err(|_| ConfigError("tls.client_key_pem: not a readable private key"))?;
            builder.with_client_auth_cert(chain, key).map_err(|_| {
                ConfigError("tls.client_key_pem: does not match tls.client_cert_pem")
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = config;
    if sessions == Sessions::HintsOnly {
        config.resumption =
            Resumption::store(KxHints::shared()).tls12_resumption(Tls12Resumption::Disabled);
    }
    Ok(Plan {
        config: Arc::new(config),
        peer,
    })
}

/// The connection's CA certificates, or the bundled public roots when it has none (as libpq's
/// `sslrootcert=system`).
fn roots(tls: &TlsSettings) -> Result<RootCertStore, ConfigError> {
    let Some(ca) = tls.ca_cert_pem() else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_str().as_bytes()) {
        let cert = cert.map_err(|_| ConfigError("tls.ca_cert_pem: not a readable certificate"))?;
        roots
            .add(cert)
            .map_err(|_| ConfigError("tls.ca_cert_pem: not a usable CA certificate"))?;
    }
    Ok(roots)
}

/// Records the leaf certificate, then lets the inner verifier decide.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    peer: PeerSlot,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let facts = peer_cert(end_entity);
        *self
            .peer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(facts);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// verify-ca: webpki's verdict, except that a name mismatch passes. Sound because webpki checks
/// the chain, validity and usage before the name.
#[derive(Debug)]
struct IgnoreName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `allow`, `prefer`, `require`: encryption without certificate verification (libpq's meaning),
/// but the handshake signature is still checked against the presented certificate.
#[derive(Debug)]
struct NoCertificateCheck(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The subject and expiry of a DER certificate; unreadable parts stay `None`.
pub(crate) fn peer_cert(der: &[u8]) -> PeerCert {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return PeerCert::default();
    };
    let subject = cert.subject().to_string();
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp()).ok();
    PeerCert {
        subject: Some(clean_text(&subject)),
        not_after,
    }
}

/// The `tls-server-end-point` channel binding data of a server certificate (RFC 5929 § 4.1):
/// the certificate hashed with its signature's hash function, SHA-256 in place of MD5 and
/// SHA-1. `None` when the signature's hash is not one of these (e.g. Ed25519, which RFC 5929
/// does not cover: PostgreSQL then offers no channel binding either).
pub(crate) fn end_point_hash(der: &[u8]) -> Option<Vec<u8>> {
    use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let algorithm = &cert.signature_algorithm;
    let mut oid = algorithm.algorithm.to_id_string();
    if oid == "1.2.840.113549.1.1.10" {
        // RSASSA-PSS: the hash is a parameter (SHA-1 when absent).
        let params = algorithm.parameters.as_ref()?;
        let pss = x509_parser::signature_algorithm::RsaSsaPssParams::try_from(params).ok()?;
        oid = pss.hash_algorithm_oid().to_id_string();
    }
    let hash = match oid.as_str() {
        // MD5 and SHA-1 with RSA, DSA or ECDSA, and the bare hashes (PSS): SHA-256.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.3.14.3.2.29"
        | "1.2.840.10040.4.3"
        | "1.2.840.10045.4.1"
        | "1.2.840.113549.2.5"
        | "1.3.14.3.2.26" => Sha256::digest(der).to_vec(),
        "1.2.840.113549.1.1.14"
        | "1.2.840.10045.4.3.1"
        | "2.16.840.1.101.3.4.3.1"
        | "2.16.840.1.101.3.4.2.4" => Sha224::digest(der).to_vec(),
        "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.3.2"
        | "2.16.840.1.101.3.4.3.2"
        | "2.16.840.1.101.3.4.2.1" => Sha256::digest(der).to_vec(),
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" | "2.16.840.1.101.3.4.2.2" => {
            Sha384::digest(der).to_vec()
        }
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" | "2.16.840.1.101.3.4.2.3" => {
            Sha512::digest(der).to_vec()
        }
        _ => return None,
    };
    Some(hash)
}

/// The protocol version as PostgreSQL's `pg_stat_ssl` and OpenSSL name it, e.g. `TLSv1.3`.
pub(crate) fn protocol_name(version: rustls::ProtocolVersion) -> Option<String> {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2".to_owned()),
        rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3".to_owned()),
        _ => None,
    }
}

/// The cipher suite's IANA name, e.g. `TLS_AES_256_GCM_SHA384` or
/// `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384` (rustls prefixes TLS 1.3 suites with `TLS13_`).
pub(crate) fn cipher_name(suite: rustls::CipherSuite) -> Option<String> {
    let name = suite.as_str()?;
    Some(match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_owned(),
    })
}

/// Text from the peer made safe to show: no control or formatting characters, bounded length.
pub(crate) fn clean_text(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !is_format_char(*c))
        .take(SUBJECT_MAX_CHARS)
        .collect()
}

/// Bidirectional and invisible formatting characters (terminal and display spoofing).
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A default provider is never installed: this only exists so a test can assert it.
#[cfg(test)]
fn provider_is_local() -> bool {
    rustls::crypto::CryptoProvider::get_default().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_strips_controls_and_bounds_length() {
        assert_eq!(clean_text("CN=a\u{1b}[31m\u{202E}b"), "CN=a[31mb");
        assert_eq!(
            clean_text(&"x".repeat(1000)).chars().count(),
            SUBJECT_MAX_CHARS
        );
    }

    #[test]
    fn garbage_der_gives_no_facts() {
        assert_eq!(peer_cert(b"not a certificate"), PeerCert::default());
        assert_eq!(end_point_hash(b"not a certificate"), None);
    }

    /// The channel binding hash follows the certificate's signature: SHA-256 for ECDSA P-256
    /// with SHA-256, SHA-384 for P-384 with SHA-384, none for Ed25519.
    #[test]
    fn end_point_hash_uses_the_signature_hash() {
        use sha2::{Digest, Sha256, Sha384};
        let der = |alg: &'static rcgen::SignatureAlgorithm| {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let p256 = der(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(end_point_hash(&p256), Some(Sha256::digest(&p256).to_vec()));
        let p384 = der(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(end_point_hash(&p384), Some(Sha384::digest(&p384).to_vec()));
        assert_eq!(end_point_hash(&der(&rcgen::PKCS_ED25519)), None);
    }

    #[test]
    fn names_follow_postgres_and_iana() {
        assert_eq!(
            protocol_name(rustls::ProtocolVersion::TLSv1_3).as_deref(),
            Some("TLSv1.3")
        );
        assert_eq!(
            cipher_name(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384).as_deref(),
            Some("TLS_AES_256_GCM_SHA384")
        );
        assert_eq!(
            cipher_name(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256).as_deref(),
            Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
        );
    }

    /// verify-full and verify-ca without a CA trust the bundled public roots (webpki-roots,
    /// Mozilla's list), as libpq's `sslrootcert=system`: never an empty store (which would
    /// refuse everything) nor a verifier that accepts anything.
    #[test]
    fn no_ca_means_the_bundled_public_roots() {
        let store = roots(&TlsSettings::default()).unwrap_or_else(|e| panic!("{}", e.0));
        let bundled = webpki_roots::TLS_SERVER_ROOTS;
        assert!(store.len() > 100, "{} roots", store.len());
        assert_eq!(store.len(), bundled.len());
        assert!(
            store
                .roots
                .iter()
                .zip(bundled)
                .all(|(a, b)| a.subject.as_ref() == b.subject.as_ref())
        );
        let has = |name: &[u8]| {
            store
                .roots
                .iter()
                .any(|r| r.subject.as_ref().windows(name.len()).any(|w| w == name))
        };
        assert!(has(b"ISRG Root X1"));
        assert!(has(b"DigiCert Global Root G2"));
        assert!(!has(b"datahub-testkit"));
    }

    /// The hints keep the last group per server name, stay bounded, and never hand out a
    /// session to resume.
    #[test]
    fn kx_hints_keep_groups_only_and_stay_bounded() {
        let hints = KxHints::default();
        let name = |s: &str| ServerName::try_from(s.to_owned()).unwrap();
        assert_eq!(hints.kx_hint(&name("db.example")), None);
        hints.set_kx_hint(name("db.example"), NamedGroup::X25519);
        hints.set_kx_hint(name("db.example"), NamedGroup::secp256r1);
        assert_eq!(
            hints.kx_hint(&name("db.example")),
            Some(NamedGroup::secp256r1)
        );
        assert!(hints.tls12_session(&name("db.example")).is_none());
        assert!(hints.take_tls13_ticket(&name("db.example")).is_none());
        for i in 0..KX_HINTS_MAX + 10 {
            hints.set_kx_hint(name(&format!("h{i}.example")), NamedGroup::secp384r1);
        }
        assert!(hints.lock().len() <= KX_HINTS_MAX);
    }

    /// A test's configuration shares the process's hints and resumes nothing; a pool's keeps
    /// rustls's own session cache.
    #[test]
    fn a_test_resumes_nothing_but_shares_the_hints() {
        let tls = TlsSettings::default();
        let test = plan(TlsMode::VerifyFull, &tls, None, Sessions::HintsOnly)
            .unwrap_or_else(|e| panic!("{}", e.0));
        let name = ServerName::try_from("hint-share.example").unwrap();
        KxHints::shared().set_kx_hint(name.clone(), NamedGroup::secp256r1);
        let seen = format!("{:?}", test.config.resumption);
        assert!(seen.contains("KxHints"), "{seen}");
        assert!(seen.contains("Disabled"), "{seen}");
        let pool = plan(TlsMode::VerifyFull, &tls, None, Sessions::Resume)
            .unwrap_or_else(|e| panic!("{}", e.0));
        let seen = format!("{:?}", pool.config.resumption);
        assert!(!seen.contains("KxHints"), "{seen}");
    }

    #[test]
    fn plans_build_without_a_process_provider() {
        let tls = TlsSettings::default();
        for mode in [TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull] {
            for sessions in [Sessions::Resume, Sessions::HintsOnly] {
                assert!(plan(mode, &tls, None, sessions).is_ok(), "{mode}");
            }
        }
        assert!(provider_is_local());
    }
}
