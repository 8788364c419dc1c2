//! Certificates generated at run time with rcgen: the cluster's CA, a second unrelated CA, the
//! server certificate in its good and bad variants, and client certificates for `cert` users.
//!
//! This module owns key generation and signing only; it never writes files (the cluster does,
//! with the modes PostgreSQL demands).

use std::fmt;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};

use crate::error::Result;

/// Which server certificate a TLS cluster presents; every variant but [`ServerCert::Valid`]
/// must fail a verify-full client for a specific reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ServerCert {
    /// Signed by the cluster CA ([`crate::PgCluster::ca_pem`]) for `localhost` and `127.0.0.1`.
    /// Default.
    #[default]
    Valid,
    /// Valid names and dates, but signed by another CA
    /// ([`crate::PgCluster::other_ca_pem`]): a client trusting only the cluster CA reports an
    /// unknown issuer.
    OtherCa,
    /// Signed by the cluster CA but only for `wrong.example.invalid`: a client checking the host
    /// name reports a name mismatch.
    WrongHost,
    /// Signed by the cluster CA for the right names, but valid only from 2000-01-01 to
    /// 2001-01-01: a client reports an expired certificate.
    Expired,
}

/// The host name the [`ServerCert::WrongHost`] certificate is issued for.
pub const WRONG_HOST: &str = "wrong.example.invalid";

/// A certificate authority: its certificate, its key, and the certificate's PEM.
pub(crate) struct Authority {
    cert: Certificate,
    key: KeyPair,
    pem: String,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of Debug output.
        f.debug_struct("Authority")
            .field("pem", &self.pem)
            .finish_non_exhaustive()
    }
}

impl Authority {
    pub(crate) fn new(common_name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let pem = cert.pem();
        Ok(Authority { cert, key, pem })
    }

    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// Issues a leaf certificate; returns `(certificate PEM, private key PEM)`.
    fn issue(&self, params: CertificateParams) -> Result<KeyAndCert> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(KeyAndCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for `names` (DNS names or IP literals).
    pub(crate) fn issue_server(&self, names: &[&str], expired: bool) -> Result<KeyAndCert> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "datahub-testkit server");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        self.issue(params)
    }

    /// A client certificate whose common name is `user`, as PostgreSQL's `cert` method expects.
    pub(crate) fn issue_client(&self, user: &str) -> Result<KeyAndCert> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }
}

/// A leaf certificate and its private key, both PEM.
pub(crate) struct KeyAndCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl fmt::Debug for KeyAndCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAndCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Everything a TLS cluster needs: both CAs and the server certificate of the chosen variant.
#[derive(Debug)]
pub(crate) struct TlsMaterial {
    pub(crate) ca: Authority,
    pub(crate) other_ca: Authority,
    pub(crate) server: KeyAndCert,
}

impl TlsMaterial {
    pub(crate) fn generate(variant: ServerCert) -> Result<Self> {
        let ca = Authority::new("datahub-testkit CA")?;
        let other_ca = Authority::new("datahub-testkit other CA")?;
        let good_names = ["localhost", "127.0.0.1"];
        let server = match variant {
            ServerCert::Valid => ca.issue_server(&good_names, false)?,
            ServerCert::OtherCa => other_ca.issue_server(&good_names, false)?,
            ServerCert::WrongHost => ca.issue_server(&[WRONG_HOST], false)?,
            ServerCert::Expired => ca.issue_server(&good_names, true)?,
        };
        Ok(TlsMaterial {
            ca,
            other_ca,
            server,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_generates_pem() {
        for variant in [
            ServerCert::Valid,
            ServerCert::OtherCa,
            ServerCert::WrongHost,
            ServerCert::Expired,
        ] {
            let tls = TlsMaterial::generate(variant).unwrap();
            assert!(tls.ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
            assert_ne!(tls.ca.pem(), tls.other_ca.pem());
            assert!(
                tls.server
                    .cert_pem
                    .starts_with("-----BEGIN CERTIFICATE-----")
            );
            assert!(
                tls.server
                    .key_pem
                    .starts_with("-----BEGIN PRIVATE KEY-----")
            );
        }
    }

    #[test]
    fn debug_output_has_no_private_key() {
        let tls = TlsMaterial::generate(ServerCert::Valid).unwrap();
        let debug = format!("{tls:?}");
        assert!(!debug.contains("PRIVATE KEY"));
    }
}
