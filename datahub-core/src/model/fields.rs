//! Validated single-field types: name, description, port, database, username, tags,
//! application name, and the password rule.
//!
//! Each type can only hold a value that passed its rule, so code that has one needs no check.

use std::fmt;
use std::str::FromStr;

use crate::model::text::{Controls, check_chars};
use crate::secret::Password;
use crate::{Error, Result};

/// Declares a `String` newtype with `as_str`, `Display`, `Debug`, `FromStr` and `AsRef<str>`.
macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The validated text, moved out.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;

            /// Same as `parse`.
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }
    };
}

string_newtype!(
    /// The name of a connection: 1–64 characters of `[a-z0-9][a-z0-9_.-]*`.
    ///
    /// It is how embedding code and notebooks ask for a connection, so it is restricted to
    /// characters that need no quoting anywhere. Uniqueness is the store's job.
    ConnectionName
);

impl ConnectionName {
    /// The most characters a name may have.
    pub const MAX_LEN: usize = 64;

    /// Validates a name.
    ///
    /// # Errors
    /// `InvalidInput` on the field `name`: empty, longer than 64 characters, uppercase, not
    /// starting with a letter or digit, or another character than `a-z 0-9 _ . -`.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |m| Error::invalid("name", m);
        if input.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if input.chars().count() > Self::MAX_LEN {
            return Err(invalid("must be at most 64 characters"));
        }
        if input.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("must be lowercase"));
        }
        if !input.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(invalid("must start with a lowercase letter or a digit"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
        {
            return Err(invalid(
                "may contain only lowercase letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Self(input.to_owned()))
    }
}

string_newtype!(
    /// A free-text description: 1–1,000 characters; newline and tab allowed, other control
    /// characters, bidi controls and invisible formatting characters refused.
    ///
    /// A Windows line ending (`\r\n`) is normalised to `\n`; a lone `\r` is refused, as it can
    /// overwrite a terminal line. An empty description is represented by `None`, not by this type.
    Description
);

impl Description {
    /// The most characters a description may have.
    pub const MAX_LEN: usize = 1_000;

    /// Validates a description; `Ok(None)` for the empty string (no description).
    ///
    /// # Errors
    /// `InvalidInput` on the field `description`: too long, or a refused character.
    pub fn parse_optional(input: &str) -> Result<Option<Self>> {
        if input.is_empty() {
            return Ok(None);
        }
        Self::parse(input).map(Some)
    }

    /// Validates a non-empty description.
    ///
    /// # Errors
    /// `InvalidInput` on the field `description`: empty, too long, or a refused character.
    pub fn parse(input: &str) -> Result<Self> {
        let text = input.replace("\r\n", "\n");
        if text.is_empty() {
            return Err(Error::invalid("description", "must not be empty"));
        }
        if text.chars().count() > Self::MAX_LEN {
            return Err(Error::invalid(
                "description",
                "must be at most 1000 characters",
            ));
        }
        check_chars("description", &text, Controls::NewlineAndTab)?;
        Ok(Self(text))
    }
}

/// The rule shared by database and user names: what PostgreSQL stores (63 bytes, longer names
/// are silently truncated by the server) and what can be shown without deceiving.
fn check_identifier(field: &'static str, input: &str) -> Result<()> {
    if input.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if input.len() > 63 {
        return Err(Error::invalid(field, "must be at most 63 bytes"));
    }
    check_chars(field, input, Controls::None)?;
    if input.starts_with(char::is_whitespace) || input.ends_with(char::is_whitespace) {
        return Err(Error::invalid(
            field,
            "must not start or end with whitespace",
        ));
    }
    Ok(())
}

string_newtype!(
    /// A database name: 1–63 bytes (PostgreSQL's limit), no control characters, no bidi controls
    /// nor invisible formatting characters, no leading or trailing whitespace. Other Unicode
    /// letters are fine.
    DatabaseName
);

impl DatabaseName {
    /// Validates a database name.
    ///
    /// # Errors
    /// `InvalidInput` on the field `database`, saying which rule was broken.
    pub fn parse(input: &str) -> Result<Self> {
        check_identifier("database", input)?;
        Ok(Self(input.to_owned()))
    }
}

string_newtype!(
    /// A user name: the same rules as [`DatabaseName`] (1–63 bytes, no control, bidi or
    /// invisible characters, no surrounding whitespace).
    Username
);

impl Username {
    /// Validates a user name.
    ///
    /// # Errors
    /// `InvalidInput` on the field `username`, saying which rule was broken.
    pub fn parse(input: &str) -> Result<Self> {
        check_identifier("username", input)?;
        Ok(Self(input.to_owned()))
    }
}

string_newtype!(
    /// The `application_name` a connection reports to the server: 1–63 bytes of printable
    /// ASCII (PostgreSQL replaces anything else with `?` and truncates at 63 bytes).
    ApplicationName
);

impl ApplicationName {
    /// Validates an application name.
    ///
    /// # Errors
    /// `InvalidInput` on the field `options.application_name`: empty, longer than 63 bytes, or
    /// a character outside printable ASCII.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |m| Error::invalid("options.application_name", m);
        if input.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if !input.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(invalid("may contain only printable ASCII characters"));
        }
        if input.len() > 63 {
            return Err(invalid("must be at most 63 characters"));
        }
        Ok(Self(input.to_owned()))
    }

    /// Validates an application name; `Ok(None)` for the empty string (not set).
    ///
    /// # Errors
    /// As [`ApplicationName::parse`].
    pub fn parse_optional(input: &str) -> Result<Option<Self>> {
        if input.is_empty() {
            return Ok(None);
        }
        Self::parse(input).map(Some)
    }
}

string_newtype!(
    /// A tag for filtering: 1–40 characters of `[a-z0-9][a-z0-9_.:/-]*`.
    ///
    /// Input is lowercased first, ASCII only: Unicode case folding is not applied because it
    /// maps look-alikes into ASCII (the Kelvin sign `K` lowercases to `k`).
    Tag
);

impl Tag {
    /// The most characters a tag may have.
    pub const MAX_LEN: usize = 40;

    /// Validates and lowercases a tag.
    ///
    /// # Errors
    /// `InvalidInput` on the field `tags`: empty, longer than 40 characters, not starting with a
    /// letter or digit, or a character outside `a-z 0-9 _ . : / -`. Inside a list the field is
    /// `tags[i]`.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |m| Error::invalid("tags", m);
        if input.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if input.chars().count() > Self::MAX_LEN {
            return Err(invalid("must be at most 40 characters"));
        }
        let lower = input.to_ascii_lowercase();
        if !lower.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(invalid("must start with a letter or a digit"));
        }
        if !lower
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:/-".contains(&b))
        {
            return Err(invalid(
                "may contain only letters, digits, '_', '.', ':', '/' and '-'",
            ));
        }
        Ok(Self(lower))
    }
}

/// The tags of a connection: at most 20 distinct [`Tag`]s, in the order first given.
///
/// Duplicates (after lowercasing) are removed rather than refused, as they do no harm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tags(Vec<Tag>);

impl Tags {
    /// The most tags a connection may have.
    pub const MAX_COUNT: usize = 20;

    /// Validates a list of tags.
    ///
    /// # Errors
    /// `InvalidInput` on `tags[i]` for the first bad tag (by input position), or on `tags` when
    /// more than 20 distinct tags remain.
    pub fn parse<S: AsRef<str>>(input: &[S]) -> Result<Self> {
        let mut tags: Vec<Tag> = Vec::new();
        for (i, raw) in input.iter().enumerate() {
            let tag = Tag::parse(raw.as_ref())
                .map_err(|e| e.with_field(format!("[{i}]")).in_field("tags"))?;
            if !tags.contains(&tag) {
                if tags.len() == Self::MAX_COUNT {
                    return Err(Error::invalid("tags", "must have at most 20 tags"));
                }
                tags.push(tag);
            }
        }
        Ok(Self(tags))
    }

    /// The tags, in the order first given.
    pub fn as_slice(&self) -> &[Tag] {
        &self.0
    }

    /// Whether a tag is present.
    pub fn contains(&self, tag: &Tag) -> bool {
        self.0.contains(tag)
    }

    /// How many tags there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A TCP port: 1–65535. Default: 5432.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(u16);

impl Port {
    /// PostgreSQL's port, the default.
    pub const POSTGRES: Self = Self(5432);

    /// Validates a port given as any integer, so that 0, 65536 and negative numbers are refused
    /// rather than wrapped.
    ///
    /// # Errors
    /// `InvalidInput` on the field `port` outside 1–65535.
    pub fn new(value: i64) -> Result<Self> {
        match u16::try_from(value) {
            Ok(p) if p != 0 => Ok(Self(p)),
            _ => Err(Error::invalid("port", "must be between 1 and 65535")),
        }
    }

    /// The port number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl Default for Port {
    fn default() -> Self {
        Self::POSTGRES
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The longest password accepted, in bytes.
pub const PASSWORD_MAX_BYTES: usize = 1_024;

/// Checks a password: 1–1,024 bytes, no NUL (PostgreSQL's protocol ends strings with NUL).
///
/// Any other character is allowed, as passwords are chosen by other systems.
///
/// # Errors
/// `InvalidInput` on the field `password`; the message never contains the password.
pub fn check_password(password: &Password) -> Result<()> {
    let p = password.expose_secret();
    if p.is_empty() {
        return Err(Error::invalid("password", "must not be empty"));
    }
    if p.len() > PASSWORD_MAX_BYTES {
        return Err(Error::invalid("password", "must be at most 1024 bytes"));
    }
    if p.contains('\0') {
        return Err(Error::invalid(
            "password",
            "must not contain a NUL character",
        ));
    }
    Ok(())
}

/// Checks an integer against an inclusive range, naming `field` and the range in the error.
pub(crate) fn in_range(
    field: &'static str,
    value: i64,
    min: i64,
    max: i64,
    message: &'static str,
) -> Result<u32> {
    if (min..=max).contains(&value) {
        u32::try_from(value).map_err(|_| Error::invalid(field, message))
    } else {
        Err(Error::invalid(field, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(ConnectionName::parse("orders-db.eu_1").is_ok());
        assert!(ConnectionName::parse(&"a".repeat(64)).is_ok());
        assert!(ConnectionName::parse(&"a".repeat(65)).is_err());
        assert!(ConnectionName::parse("-x").is_err());
        assert!(ConnectionName::parse("Orders").is_err());
    }

    #[test]
    fn tags_are_lowercased_and_deduplicated() {
        let t = Tags::parse(&["Prod", "prod", "team:data", "PROD"]).unwrap();
        let got: Vec<&str> = t.as_slice().iter().map(Tag::as_str).collect();
        assert_eq!(got, ["prod", "team:data"]);
        let many: Vec<String> = (0..40).map(|i| format!("t{}", i % 20)).collect();
        assert_eq!(Tags::parse(&many).unwrap().len(), 20);
        let e = Tags::parse(&["ok", "\u{212A}"]).unwrap_err();
        assert_eq!(e.field(), Some("tags[1]"));
    }

    #[test]
    fn ports() {
        assert_eq!(Port::new(1).unwrap().get(), 1);
        assert_eq!(Port::new(65535).unwrap().get(), 65535);
        for bad in [0, 65536, -1, i64::MIN, i64::MAX] {
            assert_eq!(Port::new(bad).unwrap_err().field(), Some("port"));
        }
    }

    #[test]
    fn descriptions_normalise_crlf() {
        let d = Description::parse("a\r\nb").unwrap();
        assert_eq!(d.as_str(), "a\nb");
        assert!(Description::parse("a\rb").is_err());
        assert!(Description::parse_optional("").unwrap().is_none());
    }
}
