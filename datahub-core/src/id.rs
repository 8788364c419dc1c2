//! Identifiers. Every id is a UUID v7 assigned by the server, so ids sort by creation time and
//! index well in both stores.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::{Error, Result};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id (UUID v7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID, e.g. one read back from a store.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// The 16 bytes of the UUID.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            #[doc = concat!("Parses the hyphenated form; anything else is an `InvalidInput` error on the field `", $field, "`.")]
            fn from_str(s: &str) -> Result<Self> {
                Uuid::try_parse(s)
                    .map(Self)
                    .map_err(|_| Error::invalid($field, "must be a UUID"))
            }
        }
    };
}

uuid_id!(
    /// The identifier of a saved connection. It is bound into every ciphertext of the connection
    /// (associated data), so a sealed value copied to another row fails to open.
    ConnectionId,
    "id"
);

uuid_id!(
    /// The identifier of a user, e.g. the owner of a connection.
    UserId,
    "user_id"
);

uuid_id!(
    /// The identifier of a team.
    TeamId,
    "team_id"
);

uuid_id!(
    /// The identifier of an API token (not the token itself, which is secret).
    TokenId,
    "token_id"
);

uuid_id!(
    /// The identifier of a browser session (not its token, which is secret).
    SessionId,
    "session_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_parse_back() {
        let a = ConnectionId::new();
        let b = ConnectionId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<ConnectionId>().unwrap(), a);
        let err = "not-a-uuid".parse::<ConnectionId>().unwrap_err();
        assert_eq!(err.field(), Some("id"));
    }

    #[test]
    fn each_id_names_its_own_field() {
        let u = UserId::new();
        assert_eq!(u.to_string().parse::<UserId>().unwrap(), u);
        assert!(format!("{u:?}").starts_with("UserId("));
        assert_eq!("x".parse::<UserId>().unwrap_err().field(), Some("user_id"));
        assert_eq!("x".parse::<TeamId>().unwrap_err().field(), Some("team_id"));
        assert_eq!(
            "x".parse::<TokenId>().unwrap_err().field(),
            Some("token_id")
        );
    }
}
