//! Identifiers. Connection and user ids are UUID v7s assigned by the server, so ids sort by
//! creation time. This module only names things; it never decides who may see them.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::{Error, Result};

/// The server-assigned identifier of a saved connection (a UUID v7).
///
/// It is also bound into every ciphertext of the connection (associated data), so a sealed value
/// copied to another row fails to open.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
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

    /// The 16 bytes of the UUID, as bound into associated data.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.0)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for ConnectionId {
    type Err = Error;

    /// Parses the hyphenated form; anything else is an `InvalidInput` error on the field `id`.
    fn from_str(s: &str) -> Result<Self> {
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| Error::invalid("id", "must be a UUID"))
    }
}

/// The server-assigned identifier of a user (a UUID v7), e.g. the owner of a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Uuid);

impl UserId {
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
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for UserId {
    type Err = Error;

    /// Parses the hyphenated form; anything else is an `InvalidInput` error on the field
    /// `user_id`.
    fn from_str(s: &str) -> Result<Self> {
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| Error::invalid("user_id", "must be a UUID"))
    }
}

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
    fn user_ids_parse_back_and_name_their_field() {
        let u = UserId::new();
        assert_eq!(u.to_string().parse::<UserId>().unwrap(), u);
        assert!(format!("{u:?}").starts_with("UserId("));
        let err = "x".parse::<UserId>().unwrap_err();
        assert_eq!(err.field(), Some("user_id"));
        assert!(!err.to_string().contains('x'));
    }
}
