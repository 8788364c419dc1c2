//! Sealing a connection's secrets for the store and opening them again: the only place the Hub
//! turns [`ConnectionSecrets`] into [`SealedSecrets`] and back.

use zeroize::Zeroize;

use crate::crypto::{DataKey, Keyring};
use crate::model::{ConnectionSecrets, SecretsUpdate};
use crate::secret::{Password, PrivateKeyPem, SecretBytes};
use crate::store::SealedSecrets;
use crate::{ConnectionId, Error, ErrorKind, Result};

/// The field name bound into the sealed password.
pub(crate) const PASSWORD_FIELD: &str = "password";
/// The field name bound into the sealed TLS client key.
pub(crate) const CLIENT_KEY_FIELD: &str = "tls.client_key_pem";

/// Seals the secrets of a new connection under a fresh data key.
pub(crate) fn seal_new(
    keyring: &Keyring,
    id: ConnectionId,
    secrets: &ConnectionSecrets,
) -> Result<SealedSecrets> {
    let (dek, wrapped) = keyring.new_dek(id)?;
    Ok(SealedSecrets {
        dek: wrapped,
        password: dek.seal(
            id,
            PASSWORD_FIELD,
            secrets.password.expose_secret().as_bytes(),
        )?,
        client_key_pem: secrets
            .client_key_pem
            .as_ref()
            .map(|k| dek.seal(id, CLIENT_KEY_FIELD, k.expose_secret().as_bytes()))
            .transpose()?,
    })
}

/// Opens every secret of a stored connection.
pub(crate) fn open(
    keyring: &Keyring,
    id: ConnectionId,
    sealed: &SealedSecrets,
) -> Result<ConnectionSecrets> {
    let dek = keyring.unwrap_dek(id, &sealed.dek)?;
    let password = Password::new(open_text(&dek, id, PASSWORD_FIELD, sealed)?);
    let client_key_pem = match &sealed.client_key_pem {
        Some(_) => Some(PrivateKeyPem::new(open_text(
            &dek,
            id,
            CLIENT_KEY_FIELD,
            sealed,
        )?)),
        None => None,
    };
    Ok(ConnectionSecrets {
        password,
        client_key_pem,
    })
}

/// Applies a patch's secret changes to the stored secrets: new values are sealed under the
/// connection's existing data key; the rest is kept as it is.
pub(crate) fn apply_update(
    keyring: &Keyring,
    id: ConnectionId,
    current: &SealedSecrets,
    update: &SecretsUpdate,
) -> Result<SealedSecrets> {
    if update.password.is_none() && update.client_key_pem.is_none() {
        return Ok(current.clone());
    }
    let dek = keyring.unwrap_dek(id, &current.dek)?;
    let password = match &update.password {
        Some(p) => dek.seal(id, PASSWORD_FIELD, p.expose_secret().as_bytes())?,
        None => current.password.clone(),
    };
    let client_key_pem = match &update.client_key_pem {
        Some(Some(k)) => Some(dek.seal(id, CLIENT_KEY_FIELD, k.expose_secret().as_bytes())?),
        Some(None) => None,
        None => current.client_key_pem.clone(),
    };
    Ok(SealedSecrets {
        dek: current.dek.clone(),
        password,
        client_key_pem,
    })
}

fn open_text(
    dek: &DataKey,
    id: ConnectionId,
    field: &'static str,
    sealed: &SealedSecrets,
) -> Result<String> {
    let value = match field {
        PASSWORD_FIELD => &sealed.password,
        _ => sealed
            .client_key_pem
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "no sealed client key"))?,
    };
    let bytes: SecretBytes = dek.open(id, field, value)?;
    String::from_utf8(bytes.expose_secret().to_vec()).map_err(|e| {
        // The bytes opened, so they are the stored secret: wipe the copy before failing.
        e.into_bytes().zeroize();
        Error::new(
            ErrorKind::Store,
            "corrupt row: a stored secret is not UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(text: &str) -> Keyring {
        Keyring::parse(text).unwrap()
    }

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:HxseHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

    fn secrets(password: &str, key: Option<&str>) -> ConnectionSecrets {
        ConnectionSecrets {
            password: Password::from(password),
            client_key_pem: key.map(PrivateKeyPem::from),
        }
    }

    #[test]
    fn sealed_secrets_open_back_and_only_for_their_row() {
        let ring = keyring(K1);
        let id = ConnectionId::new();
        let sealed = seal_new(&ring, id, &secrets("pw-1", Some("KEY"))).unwrap();
        let opened = open(&ring, id, &sealed).unwrap();
        assert_eq!(opened.password.expose_secret(), "pw-1");
        assert_eq!(opened.client_key_pem.unwrap().expose_secret(), "KEY");
        let err = open(&ring, ConnectionId::new(), &sealed).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decrypt);
        // The password's ciphertext in the client key's place does not open.
        let swapped = SealedSecrets {
            client_key_pem: Some(sealed.password.clone()),
            ..sealed
        };
        assert_eq!(
            open(&ring, id, &swapped).unwrap_err().kind(),
            ErrorKind::Decrypt
        );
    }

    #[test]
    fn updates_replace_only_what_they_name() {
        let ring = keyring(K1);
        let id = ConnectionId::new();
        let sealed = seal_new(&ring, id, &secrets("old", Some("KEY"))).unwrap();

        let same = apply_update(&ring, id, &sealed, &SecretsUpdate::default()).unwrap();
        assert_eq!(same, sealed);

        let new_pw = SecretsUpdate {
            password: Some(Password::from("new")),
            client_key_pem: None,
        };
        let updated = apply_update(&ring, id, &sealed, &new_pw).unwrap();
        assert_eq!(updated.dek, sealed.dek);
        assert_eq!(updated.client_key_pem, sealed.client_key_pem);
        let opened = open(&ring, id, &updated).unwrap();
        assert_eq!(opened.password.expose_secret(), "new");

        let drop_key = SecretsUpdate {
            password: None,
            client_key_pem: Some(None),
        };
        let updated = apply_update(&ring, id, &sealed, &drop_key).unwrap();
        assert!(open(&ring, id, &updated).unwrap().client_key_pem.is_none());
    }

    #[test]
    fn after_rotation_the_old_row_opens_with_the_new_ring() {
        let id = ConnectionId::new();
        let sealed = seal_new(&keyring(K1), id, &secrets("pw", None)).unwrap();
        let ring = keyring(&format!("{K2},{K1}"));
        let crate::crypto::Rewrap::Rewrapped(dek) = ring.rewrap(id, &sealed.dek).unwrap() else {
            panic!("expected a rewrap");
        };
        let rotated = SealedSecrets { dek, ..sealed };
        assert_eq!(rotated.dek.kek_id().as_str(), "k2");
        assert_eq!(
            open(&keyring(K2), id, &rotated)
                .unwrap()
                .password
                .expose_secret(),
            "pw"
        );
    }
}
