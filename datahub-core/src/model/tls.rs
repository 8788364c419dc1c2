//! TLS settings of a connection and the PEM checks of its certificates and client key.
//!
//! The checks are structural (markers, labels, base64 body, size): they catch a wrong paste, and
//! above all a private key pasted into a certificate field, which would otherwise be stored as a
//! non-secret. Parsing the DER is the prober's job. Errors never quote the PEM.

use std::fmt;

use crate::model::enums::{ChannelBinding, TlsMode};
use crate::secret::PrivateKeyPem;
use crate::{Error, Result};

/// The largest PEM accepted in any field: 64 KiB.
pub const PEM_MAX_BYTES: usize = 64 * 1024;

/// One or more PEM `CERTIFICATE` blocks (a CA bundle, or a client certificate with its chain).
///
/// Surrounding whitespace is trimmed; nothing but whitespace may appear between blocks.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CertificatePem(String);

impl CertificatePem {
    /// Validates certificate PEM for `field` (e.g. `tls.ca_cert_pem`).
    ///
    /// # Errors
    /// `InvalidInput` on `field`: empty, over 64 KiB, not PEM, a block that is not a
    /// certificate (a private key gets its own message), or a BEGIN without its END.
    pub fn parse(field: &'static str, input: &str) -> Result<Self> {
        let blocks = pem_blocks(field, input)?;
        for label in &blocks {
            if label.contains("PRIVATE KEY") {
                return Err(Error::invalid(
                    field,
                    "must not contain a private key; put the client key in tls.client_key_pem",
                ));
            }
            if label != "CERTIFICATE" {
                return Err(Error::invalid(
                    field,
                    "must contain only CERTIFICATE blocks",
                ));
            }
        }
        Ok(Self(input.trim().to_owned()))
    }

    /// The PEM text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CertificatePem {
    /// Prints the size only: certificates are public, but long.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificatePem({} bytes)", self.0.len())
    }
}

/// Checks a client private key: one unencrypted PEM private key (`PRIVATE KEY`,
/// `RSA PRIVATE KEY` or `EC PRIVATE KEY`, optionally after `EC PARAMETERS`), at most 64 KiB.
///
/// # Errors
/// `InvalidInput` on `tls.client_key_pem`; an encrypted key and a certificate pasted in its
/// place get their own messages. The message never contains the key.
pub fn check_private_key(key: &PrivateKeyPem) -> Result<()> {
    const FIELD: &str = "tls.client_key_pem";
    let blocks = pem_blocks(FIELD, key.expose_secret())?;
    let mut keys = 0;
    for label in &blocks {
        match label.as_str() {
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => keys += 1,
            "EC PARAMETERS" => {}
            "ENCRYPTED PRIVATE KEY" => return Err(encrypted_key()),
            "CERTIFICATE" => {
                return Err(Error::invalid(
                    FIELD,
                    "must be a private key, not a certificate",
                ));
            }
            _ => {
                return Err(Error::invalid(
                    FIELD,
                    "must be a PEM private key (BEGIN PRIVATE KEY)",
                ));
            }
        }
    }
    if keys != 1 {
        return Err(Error::invalid(
            FIELD,
            "must contain exactly one private key",
        ));
    }
    Ok(())
}

fn encrypted_key() -> Error {
    Error::invalid(
        "tls.client_key_pem",
        "encrypted private keys are not supported; give the key unencrypted (it is stored \
         encrypted)",
    )
}

/// The labels of the PEM blocks in `input`, after checking the structure.
fn pem_blocks(field: &'static str, input: &str) -> Result<Vec<String>> {
    let invalid = |m| Error::invalid(field, m);
    if input.len() > PEM_MAX_BYTES {
        return Err(invalid("must be at most 64 KiB"));
    }
    let mut labels = Vec::new();
    let mut open: Option<&str> = None;
    let mut body_lines = 0usize;
    for line in input.split('\n') {
        let line = line
            .strip_suffix('\r')
            .unwrap_or(line)
            .trim_matches([' ', '\t']);
        match open {
            None => {
                if line.is_empty() {
                    continue;
                }
                match marker(line, "-----BEGIN ") {
                    Some(label) => {
                        open = Some(label);
                        body_lines = 0;
                    }
                    None => {
                        return Err(invalid(
                            "must be PEM: only -----BEGIN ...----- / -----END ...----- blocks",
                        ));
                    }
                }
            }
            Some(label) => {
                if line.starts_with("-----") {
                    if marker(line, "-----END ") != Some(label) {
                        return Err(invalid(
                            "has a BEGIN marker without its matching END marker",
                        ));
                    }
                    if body_lines == 0 {
                        return Err(invalid("has an empty PEM block"));
                    }
                    labels.push(label.to_owned());
                    open = None;
                } else if line.contains(':') {
                    // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`) only occur in legacy
                    // encrypted keys.
                    return Err(if field == "tls.client_key_pem" {
                        encrypted_key()
                    } else {
                        invalid("must not contain PEM headers")
                    });
                } else if line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                {
                    if !line.is_empty() {
                        body_lines += 1;
                    }
                } else {
                    return Err(invalid("is not valid PEM: the body must be base64"));
                }
            }
        }
    }
    if open.is_some() {
        return Err(invalid(
            "has a BEGIN marker without its matching END marker",
        ));
    }
    if labels.is_empty() {
        return Err(invalid("must contain a PEM block"));
    }
    Ok(labels)
}

/// The label of a `-----BEGIN LABEL-----` or `-----END LABEL-----` line.
fn marker<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let label = line.strip_prefix(prefix)?.strip_suffix("-----")?;
    let ok = !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    ok.then_some(label)
}

/// The validated, non-secret TLS settings of a connection. The client key, if any, is in
/// [`ConnectionSecrets`](crate::model::ConnectionSecrets); a client certificate is present
/// exactly when a client key is stored.
///
/// `verify-ca` and `verify-full` without a CA certificate are allowed: the server certificate
/// is then verified against the bundled public roots (Mozilla's list from webpki-roots, the same on
/// every host; libpq's `sslrootcert=system` uses the host's store instead).
/// The CA certificate is used only by those two modes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TlsSettings {
    mode: TlsMode,
    ca_cert_pem: Option<CertificatePem>,
    client_cert_pem: Option<CertificatePem>,
    channel_binding: ChannelBinding,
}

impl TlsSettings {
    /// Combines validated parts, checking the rule between them: `channel_binding = require`
    /// needs TLS, so it is refused with `mode = disable`.
    ///
    /// # Errors
    /// `InvalidInput` on `tls.channel_binding`.
    pub fn new(
        mode: TlsMode,
        ca_cert_pem: Option<CertificatePem>,
        client_cert_pem: Option<CertificatePem>,
        channel_binding: ChannelBinding,
    ) -> Result<Self> {
        if channel_binding == ChannelBinding::Require && mode == TlsMode::Disable {
            return Err(Error::invalid(
                "tls.channel_binding",
                "require needs TLS, but tls.mode is disable",
            ));
        }
        Ok(Self {
            mode,
            ca_cert_pem,
            client_cert_pem,
            channel_binding,
        })
    }

    /// How TLS is used. Default: `verify-full`.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// The CA certificates to verify the server with; `None` means the bundled public roots.
    pub fn ca_cert_pem(&self) -> Option<&CertificatePem> {
        self.ca_cert_pem.as_ref()
    }

    /// The client certificate (present exactly when a client key is stored).
    pub fn client_cert_pem(&self) -> Option<&CertificatePem> {
        self.client_cert_pem.as_ref()
    }

    /// SCRAM channel binding. Default: `prefer`.
    pub fn channel_binding(&self) -> ChannelBinding {
        self.channel_binding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAbC+/=\n-----END CERTIFICATE-----\n";

    #[test]
    fn certificates() {
        assert!(CertificatePem::parse("f", CERT).is_ok());
        let bundle = format!("{CERT}\r\n\n{CERT}");
        assert!(CertificatePem::parse("f", &bundle).is_ok());
        let key = CERT.replace("CERTIFICATE", "PRIVATE KEY");
        let e = CertificatePem::parse("f", &key).unwrap_err();
        assert!(e.message().contains("private key"));
        assert!(CertificatePem::parse("f", "hello").is_err());
        assert!(CertificatePem::parse("f", "").is_err());
        assert!(
            CertificatePem::parse("f", &CERT.replace("-----END CERTIFICATE-----", "")).is_err()
        );
    }

    #[test]
    fn keys() {
        let key = CERT.replace("CERTIFICATE", "PRIVATE KEY");
        assert!(check_private_key(&PrivateKeyPem::from(key.as_str())).is_ok());
        let enc = CERT.replace("CERTIFICATE", "ENCRYPTED PRIVATE KEY");
        let e = check_private_key(&PrivateKeyPem::from(enc.as_str())).unwrap_err();
        assert!(e.message().contains("encrypted"));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----";
        let e = check_private_key(&PrivateKeyPem::from(legacy)).unwrap_err();
        assert!(e.message().contains("encrypted"));
        let e = check_private_key(&PrivateKeyPem::from(CERT)).unwrap_err();
        assert_eq!(e.field(), Some("tls.client_key_pem"));
    }
}
