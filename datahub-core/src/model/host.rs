//! The host of a connection: one DNS name or one IP literal, nothing else.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::model::text::{is_bidi_control, is_control, is_invisible};
use crate::{Error, Result};

const FIELD: &str = "host";

/// The longest host name accepted, in characters (RFC 1035's 253 for a name without the dot).
pub const HOST_MAX_LEN: usize = 253;

/// The longest label of a host name (RFC 1035).
const LABEL_MAX_LEN: usize = 63;

/// A validated host: a DNS name (RFC 1123) or an IPv4 or IPv6 literal.
///
/// Rules, each refused with its own message on the field `host`:
/// - not empty, at most 253 characters, no whitespace nor control characters;
/// - ASCII only: internationalized names must be given in punycode (`xn--…`), so what is shown is
///   what is resolved;
/// - one host: no host lists (`a,b`), no unix-socket paths (`/var/run/…`, `@abstract`), no URL
///   (`postgres://…`; the value is never echoed, as a URL may carry a password), no `host:port`
///   (the port has its own field), no `user@host`;
/// - a name is dot-separated labels of 1–63 letters, digits, `-` and `_` (the underscore is a
///   common relaxation, e.g. container names; rustls accepts it too), not starting or ending
///   with `-`, without a trailing dot, and not all-numeric: `127.1`, `2130706433` or `0x7f.1` are
///   IPv4 addresses in disguise to the system resolver, so IPv4 must be four decimal numbers;
/// - an IPv6 literal may be bracketed (`[::1]`); zone ids (`%eth0`) are refused.
///
/// The stored form is normalised: names are lowercased, IP literals are printed canonically and
/// without brackets (`[::1]` and `0:0::1` both become `::1`), which is what libpq expects.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Host {
    text: String,
    ip: Option<IpAddr>,
}

impl Host {
    /// Validates and normalises a host.
    ///
    /// # Errors
    /// `InvalidInput` on the field `host`, saying which rule was broken.
    pub fn parse(input: &str) -> Result<Self> {
        if input.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if looks_like_url(input) {
            return Err(invalid(
                "must be a host name or IP address, not a URL; import connection strings \
                 separately so the password is kept apart",
            ));
        }
        if input.starts_with('/') || input.starts_with('@') {
            return Err(invalid(
                "unix-socket paths are not supported; give a host name or IP address",
            ));
        }
        if input.contains(',') {
            return Err(invalid(
                "must be a single host; host lists are not supported",
            ));
        }
        if input.chars().any(|c| c.is_whitespace() || is_control(c)) {
            return Err(invalid("must not contain whitespace or control characters"));
        }
        if input.chars().any(|c| is_bidi_control(c) || is_invisible(c)) {
            return Err(invalid(
                "must not contain bidirectional or invisible formatting characters",
            ));
        }
        if !input.is_ascii() {
            return Err(invalid(
                "must be ASCII; give internationalized domain names in punycode (xn--...)",
            ));
        }
        if input.contains('@') {
            return Err(invalid(
                "must not contain '@'; give the user name and password in their own fields",
            ));
        }
        if input.len() > HOST_MAX_LEN {
            return Err(invalid("must be at most 253 characters"));
        }
        if let Some(rest) = input.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err(invalid("has an opening '[' without a closing ']'"));
            };
            if after.starts_with(':') {
                return Err(port_included());
            }
            if !after.is_empty() {
                return Err(invalid("has unexpected characters after ']'"));
            }
            if inside.contains('%') {
                return Err(zone_id());
            }
            return match Ipv6Addr::from_str(inside) {
                Ok(ip) => Ok(Self::from_ip(IpAddr::V6(ip))),
                Err(_) => Err(invalid("is not a valid IPv6 address")),
            };
        }
        if let Ok(ip) = Ipv4Addr::from_str(input) {
            return Ok(Self::from_ip(IpAddr::V4(ip)));
        }
        if let Ok(ip) = Ipv6Addr::from_str(input) {
            return Ok(Self::from_ip(IpAddr::V6(ip)));
        }
        if input.contains(':') {
            if input.contains('%') {
                return Err(zone_id());
            }
            let (before, port) = input.rsplit_once(':').unwrap_or((input, ""));
            let port_like = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
            if port_like && !before.contains(':') {
                return Err(port_included());
            }
            return Err(invalid(
                "is not a valid host name or IP address (':' is allowed only in IPv6 literals)",
            ));
        }
        check_name(input)?;
        Ok(Self {
            text: input.to_ascii_lowercase(),
            ip: None,
        })
    }

    /// A host for an IP address.
    pub fn from_ip(ip: IpAddr) -> Self {
        Self {
            text: ip.to_string(),
            ip: Some(ip),
        }
    }

    /// The normalised host: a lowercase name or a canonical IP literal without brackets.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The IP address when the host is an IP literal, `None` for a name.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The host as it goes into a URL authority: IPv6 literals in brackets.
    pub fn to_url_host(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => self.text.clone(),
        }
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({:?})", self.text)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Host {
    type Err = Error;

    /// Same as [`Host::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

fn invalid(message: &'static str) -> Error {
    Error::invalid(FIELD, message)
}

fn port_included() -> Error {
    invalid("must not include a port; give the port in its own field")
}

fn zone_id() -> Error {
    invalid("IPv6 zone ids ('%...') are not supported")
}

/// Whether the input is (the start of) a URL: a scheme followed by `://`, or a PostgreSQL scheme
/// without the slashes.
fn looks_like_url(input: &str) -> bool {
    if input.contains("://") {
        return true;
    }
    let lower = input.get(..11).unwrap_or(input).to_ascii_lowercase();
    lower.starts_with("postgres:") || lower.starts_with("postgresql:")
}

/// The RFC 1123 rules for a name, on an ASCII input of at most 253 characters.
fn check_name(input: &str) -> Result<()> {
    if input.ends_with('.') {
        return Err(invalid("must not end with a dot"));
    }
    let mut all_numeric = true;
    let mut last_numeric = false;
    for label in input.split('.') {
        if label.is_empty() {
            return Err(invalid(
                "must not have empty labels (leading or double dots)",
            ));
        }
        if label.len() > LABEL_MAX_LEN {
            return Err(invalid("labels must be at most 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "may contain only letters, digits, '-', '_' and '.'",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("labels must not start or end with '-'"));
        }
        let numeric = is_numeric_label(label);
        all_numeric &= numeric;
        last_numeric = label.bytes().all(|b| b.is_ascii_digit());
    }
    if all_numeric || last_numeric {
        return Err(invalid(
            "looks like an IP address in a non-standard form; write IPv4 as four decimal \
             numbers (e.g. 127.0.0.1)",
        ));
    }
    Ok(())
}

/// A label the C resolver reads as a number: decimal, octal (leading 0) or hex (`0x…`).
fn is_numeric_label(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    match lower.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => lower.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(
            Host::parse("DB.Example.COM").unwrap().as_str(),
            "db.example.com"
        );
        assert_eq!(Host::parse("[::1]").unwrap().as_str(), "::1");
        assert_eq!(Host::parse("0:0::1").unwrap().as_str(), "::1");
        assert_eq!(Host::parse("[::1]").unwrap().to_url_host(), "[::1]");
        let v4 = Host::parse("127.0.0.9").unwrap();
        assert_eq!(v4.ip(), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))));
        assert_eq!(v4.to_url_host(), "127.0.0.9");
        assert_eq!(Host::parse("localhost").unwrap().ip(), None);
    }

    #[test]
    fn numeric_disguises_are_refused() {
        for bad in [
            "127.1",
            "2130706433",
            "0x7f.1",
            "0x7f000001",
            "1.2.3.4.5",
            "010.0.0.1",
        ] {
            let e = Host::parse(bad).unwrap_err();
            assert_eq!(e.field(), Some("host"), "{bad}");
        }
        for ok in [
            "1password.com",
            "db1",
            "x.0a",
            "3com.example",
            "a-1.b_2.example",
        ] {
            assert!(Host::parse(ok).is_ok(), "{ok}");
        }
    }
}
