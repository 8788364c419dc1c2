//! Secret types: the only places plaintext credentials live.
//!
//! Each is a [`secrecy`] wrapper, so the bytes are zeroized on drop. None implements `Display` or
//! `Serialize`; `Debug` prints only the type name and `<redacted>`. Reading the value needs an
//! explicit `expose_secret()` call, which is easy to find in review.

use std::fmt;

use secrecy::{ExposeSecret, SecretBox, SecretString};

macro_rules! secret_text {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            /// Wraps a plaintext value. The `String` is moved in, not copied.
            pub fn new(value: String) -> Self {
                Self(SecretString::from(value))
            }

            /// The plaintext. Call it at the last moment: to connect, or on an audited reveal.
            pub fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }

            /// Whether the value is the empty string.
            pub fn is_empty(&self) -> bool {
                self.0.expose_secret().is_empty()
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value.to_owned())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_text!(
    /// A database password.
    Password
);

secret_text!(
    /// A PEM-encoded private key (e.g. a TLS client key).
    PrivateKeyPem
);

secret_text!(
    /// An API token's text (`dh_…`), shown to its user once and stored only as a hash.
    ApiToken
);

secret_text!(
    /// A browser session's token (`dhs_…`), handed to the client once (in a cookie) and stored
    /// only as a hash.
    SessionToken
);

/// Decrypted bytes, e.g. what opening a sealed value yields. Zeroized on drop.
pub struct SecretBytes(SecretBox<[u8]>);

impl SecretBytes {
    /// Wraps plaintext bytes. The `Vec` is moved in, not copied.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretBox::from(bytes))
    }

    /// The plaintext bytes.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// How many bytes the secret holds (not secret itself: ciphertext length reveals it anyway).
    pub fn len(&self) -> usize {
        self.0.expose_secret().len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> Self {
        Self::new(self.expose_secret().to_vec())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted>, {} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let canary = "canary-debug-7f3a9c";
        let p = Password::from(canary);
        let k = PrivateKeyPem::from(canary);
        let b = SecretBytes::new(canary.as_bytes().to_vec());
        for shown in [
            format!("{p:?}"),
            format!("{p:#?}"),
            format!("{k:?}"),
            format!("{b:?}"),
            format!("{:?}", Some(p.clone())),
        ] {
            assert!(!shown.contains(canary), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        assert_eq!(p.expose_secret(), canary);
        assert_eq!(b.expose_secret(), canary.as_bytes());
    }
}
