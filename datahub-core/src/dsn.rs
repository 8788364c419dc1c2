//! Parsing the libpq connection strings users paste, into a [`ConnectionDraft`] with the
//! password split out as a [`Password`]; and redacting them for logs.
//!
//! Two forms are accepted, as libpq documents them:
//! - URLs: `postgres://` or `postgresql://`, `user:password@` (percent-encoded), a host or
//!   `[ipv6]`, `:port`, `/dbname`, `?key=value&…`;
//! - key=value strings: pairs separated by whitespace, spaces around `=` allowed, values
//!   optionally single-quoted, with `\'` and `\\` escapes (in quoted and unquoted values).
//!
//! Only these keys are accepted (SECURITY.md S15): `host`, `port`, `dbname`, `user`,
//! `password`, `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `channel_binding`,
//! `connect_timeout`, `application_name`. Any other key, a key given twice, a host list, a
//! unix-socket host and `hostaddr` are refused with an error naming the key.
//!
//! This module owns the syntax only: values are checked by [`ConnectionDraft::validate`], which
//! names the model's fields. It never reads the certificate files it is given paths to (that is
//! the caller's job), and never puts any part of the input into an error or `Debug` output,
//! since the input may carry a password, possibly malformed (a password with an unencoded `/`
//! or `@` shifts everything after it).

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::model::{ChannelBinding, ConnectionDraft, TlsMode};
use crate::secret::Password;
use crate::{Error, Result};

/// The longest connection string accepted: 16 KiB.
pub const DSN_MAX_BYTES: usize = 16 * 1024;

/// The field every syntax error is reported on; errors about one key use `dsn.<key>`.
const FIELD: &str = "dsn";

/// The keys this product accepts, in libpq's spelling.
const SUPPORTED: &[&str] = &[
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "channel_binding",
    "connect_timeout",
    "application_name",
];

/// Other libpq keys, refused by name: naming a known key is safe, while an unknown "key" could
/// be a fragment of a password and is never repeated.
const REFUSED: &[&str] = &[
    "hostaddr",
    "options",
    "passfile",
    "service",
    "servicefile",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcompression",
    "sslcertmode",
    "sslnegotiation",
    "sslkeylogfile",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "min_protocol_version",
    "max_protocol_version",
    "requirepeer",
    "require_auth",
    "krbsrvname",
    "gsslib",
    "gssencmode",
    "gssdelegation",
    "target_session_attrs",
    "load_balance_hosts",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "client_encoding",
    "fallback_application_name",
    "scram_client_key",
    "scram_server_key",
    "oauth_issuer",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_scope",
];

/// Keys whose values [`redact_url`] keeps: none of them can hold a secret.
const SHOWN_IN_LOGS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "channel_binding",
    "connect_timeout",
    "application_name",
    "target_session_attrs",
    "gssencmode",
    "sslnegotiation",
];

/// A parsed connection string: a draft to complete and validate, plus the certificate paths it
/// named. `Debug` redacts the password.
#[derive(Debug, Clone, Default)]
pub struct ParsedDsn {
    /// The connection settings. `name` is empty (the caller chooses it); absent keys are left
    /// to the model's defaults, so a missing `sslmode` means `verify-full`, not libpq's
    /// `prefer`. Without `dbname`, the database is the user name, as in libpq.
    pub draft: ConnectionDraft,
    /// `sslrootcert`: a file of CA certificates to read into `tls.ca_cert_pem`. With
    /// `sslmode=require`, giving it upgrades the mode to `verify-ca` (libpq's meaning);
    /// `sslrootcert=system` means the system roots: no path, and `verify-full`.
    pub sslrootcert: Option<PathBuf>,
    /// `sslcert`: a client certificate file to read into `tls.client_cert_pem`.
    pub sslcert: Option<PathBuf>,
    /// `sslkey`: a client key file to read into `tls.client_key_pem`.
    pub sslkey: Option<PathBuf>,
}

/// Parses a libpq URL or key=value connection string.
///
/// Surrounding whitespace is ignored. An empty password counts as none.
///
/// # Errors
/// `InvalidInput` on `dsn` for a syntax error (empty, over 16 KiB, unsupported scheme, bad
/// percent-encoding, unterminated quote, a pair without `=`, an unknown key), or on
/// `dsn.<key>` for a refused or malformed key: `dsn.host` for a host list, a unix socket or no
/// host, `dsn.hostaddr`, `dsn.port` for a non-number, `dsn.sslmode`, `dsn.connect_timeout`
/// outside 1–5 s, a key given twice. No error contains any part of the input.
pub fn parse(input: &str) -> Result<ParsedDsn> {
    let input = input.trim();
    if input.is_empty() {
        return Err(Error::invalid(FIELD, "must not be empty"));
    }
    if input.len() > DSN_MAX_BYTES {
        return Err(Error::invalid(FIELD, "must be at most 16 KiB"));
    }
    let params = match url_scheme(input) {
        Some((scheme, rest)) => {
            check_scheme(scheme)?;
            parse_url(rest)?
        }
        None => parse_key_values(input)?,
    };
    build(params)
}

/// Replaces the secrets of a connection string with `***`, for logging (SECURITY.md S9).
///
/// In a URL, the password of the user info is replaced, and so is every query value except
/// those of keys known to be harmless (`host`, `port`, `dbname`, `user`, `sslmode`, …); a
/// malformed user info is replaced whole, and so is a key that is not a libpq key (it could be
/// a misplaced secret). In a key=value string, the same rules apply. Input that parses as
/// neither, or a URL with whitespace in it, is replaced whole by a fixed placeholder. The
/// redaction errs on the side of hiding too much.
pub fn redact_url(input: &str) -> String {
    const UNPARSEABLE: &str = "<unparseable connection string, redacted>";
    let input = input.trim();
    match url_scheme(input) {
        // A URL holds no whitespace: with some, the split into parts cannot be trusted.
        Some(_) if input.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            UNPARSEABLE.to_owned()
        }
        Some((scheme, rest)) => format!("{scheme}://{}", redact_url_rest(rest)),
        None => match tokenize(input) {
            Ok(pairs) => pairs
                .iter()
                .map(|(k, v)| {
                    if SHOWN_IN_LOGS.contains(&k.as_str()) {
                        format!("{k}={}", quote(v))
                    } else {
                        format!("{}=***", shown_key(k))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => UNPARSEABLE.to_owned(),
        },
    }
}

/// A key as shown in a redacted string: a libpq key by name, anything else (which could be a
/// misplaced secret) as `***`.
fn shown_key(key: &str) -> &str {
    if SUPPORTED.contains(&key) || REFUSED.contains(&key) {
        key
    } else {
        "***"
    }
}

/// The value of a parameter: zeroized on drop, as it may be the password.
type Value = Zeroizing<String>;

/// Where a parameter came from, for the order of processing: keys are matched by name.
struct Param {
    key: String,
    value: Value,
}

/// The scheme and what follows `://`, when the input is a URL: `://` appears before any `=`
/// (in a key=value string, a URL can only be inside a value).
fn url_scheme(input: &str) -> Option<(&str, &str)> {
    let sep = input.find("://")?;
    match input.find('=') {
        Some(eq) if eq < sep => None,
        _ => Some((&input[..sep], &input[sep + 3..])),
    }
}

fn check_scheme(scheme: &str) -> Result<()> {
    let lower = scheme.to_ascii_lowercase();
    if lower == "postgres" || lower == "postgresql" {
        return Ok(());
    }
    Err(Error::invalid(
        FIELD,
        if lower.starts_with("jdbc:") {
            "JDBC URLs are not supported; remove the jdbc: prefix"
        } else {
            "only postgres:// and postgresql:// URLs are supported"
        },
    ))
}

/// Splits the part of a URL after `://` into parameters, in libpq's key names.
fn parse_url(rest: &str) -> Result<Vec<Param>> {
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            FIELD,
            "a URL must not contain whitespace or control characters; percent-encode them",
        ));
    }
    let mut params = Vec::new();

    // The user info ends at the last '@' before the path or query; a password containing '/'
    // or '?' must be percent-encoded, as in every URL.
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (userinfo, after) = match rest[..auth_end].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        push(&mut params, "user", decode(user, "user")?);
        if let Some(p) = password {
            push(&mut params, "password", decode(p, "password")?);
        }
    }

    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    let (netloc, after) = after.split_at(host_end);
    parse_netloc(netloc, &mut params)?;

    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (after, None),
    };
    if let Some(db) = path.strip_prefix('/') {
        if db.contains('@') {
            return Err(Error::invalid(
                FIELD,
                "unexpected '@' after the host; percent-encode special characters in the \
                 password ('/' as %2F, '@' as %40)",
            ));
        }
        if db.contains('/') {
            return Err(Error::invalid(
                FIELD,
                "the path must be a single database name; percent-encode '/' as %2F",
            ));
        }
        push(&mut params, "dbname", decode(db, "dbname")?);
    }
    if let Some(query) = query {
        for (i, pair) in query.split('&').enumerate() {
            if pair.is_empty() {
                continue;
            }
            let Some((k, v)) = pair.split_once('=') else {
                return Err(Error::invalid(
                    FIELD,
                    format!("query parameter #{} has no '='", i + 1),
                ));
            };
            let key = decode(k, "dsn")?;
            let value = decode(v, "dsn")?;
            params.push(Param {
                key: key.as_str().to_owned(),
                value,
            });
        }
    }
    Ok(params)
}

/// Parses `host`, `host:port`, `[ipv6]` or `[ipv6]:port`.
fn parse_netloc(netloc: &str, params: &mut Vec<Param>) -> Result<()> {
    if netloc.contains(',') {
        return Err(host_list());
    }
    let (host, port) = if let Some(inner) = netloc.strip_prefix('[') {
        let Some((ip, after)) = inner.split_once(']') else {
            return Err(Error::invalid(
                "dsn.host",
                "has an opening '[' without a closing ']'",
            ));
        };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => {
                    return Err(Error::invalid(
                        "dsn.host",
                        "has unexpected characters after ']'",
                    ));
                }
            },
        };
        // Kept in brackets: the host rule accepts and normalises them.
        (
            Zeroizing::new(format!("[{}]", decode(ip, "host")?.as_str())),
            port,
        )
    } else {
        let (h, p) = match netloc.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (netloc, None),
        };
        if p.is_some_and(|p| p.contains(':')) {
            return Err(Error::invalid(
                "dsn.host",
                "an IPv6 address in a URL must be in brackets, e.g. [::1]",
            ));
        }
        (decode(h, "host")?, p)
    };
    if !host.is_empty() {
        params.push(Param {
            key: "host".to_owned(),
            value: host,
        });
    }
    if let Some(port) = port {
        if port.is_empty() {
            return Err(Error::invalid("dsn.port", "must not be empty after ':'"));
        }
        push(params, "port", decode(port, "port")?);
    }
    Ok(())
}

fn push(params: &mut Vec<Param>, key: &str, value: Value) {
    params.push(Param {
        key: key.to_owned(),
        value,
    });
}

/// Strict percent-decoding to UTF-8: a `%` must start two hex digits.
fn decode(s: &str, what: &'static str) -> Result<Value> {
    let field = if what == FIELD {
        FIELD.to_owned()
    } else {
        format!("dsn.{what}")
    };
    let bytes = s.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    // Two hex digits are at most 255.
                    out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                    i += 3;
                }
                _ => {
                    return Err(Error::invalid(
                        field,
                        "has a '%' not followed by two hex digits",
                    ));
                }
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    match std::str::from_utf8(&out) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(Error::invalid(field, "is not valid UTF-8 once decoded")),
    }
}

/// Parses a key=value string into parameters.
fn parse_key_values(input: &str) -> Result<Vec<Param>> {
    Ok(tokenize(input)?
        .into_iter()
        .map(|(key, value)| Param { key, value })
        .collect())
}

/// Splits a key=value string as libpq does.
fn tokenize(input: &str) -> Result<Vec<(String, Value)>> {
    let mut pairs = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let n = pairs.len() + 1;
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "parameter #{n} has no '=': write key=value pairs separated by spaces, or \
                     a postgres:// URL"
                ),
            ));
        }
        if key.is_empty() {
            return Err(Error::invalid(
                FIELD,
                format!("parameter #{n} has no name before '='"),
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = Zeroizing::new(String::new());
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(Error::invalid(
                            FIELD,
                            format!("parameter #{n} has an unterminated quoted value"),
                        ));
                    }
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(Error::invalid(
                                FIELD,
                                format!("parameter #{n} has an unterminated quoted value"),
                            ));
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Turns parameters into a draft, refusing unsupported keys and repeated ones.
fn build(params: Vec<Param>) -> Result<ParsedDsn> {
    let mut out = ParsedDsn::default();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut sslrootcert_system = false;
    let mut dbname_given = false;
    for (i, Param { key, value }) in params.into_iter().enumerate() {
        let Some(&key) = SUPPORTED.iter().find(|k| **k == key) else {
            if let Some(&refused) = REFUSED.iter().find(|k| **k == key) {
                return Err(refused_key(refused));
            }
            return Err(Error::invalid(
                FIELD,
                format!(
                    "parameter #{} is not supported; accepted keys: {}",
                    i + 1,
                    SUPPORTED.join(", ")
                ),
            ));
        };
        if seen.contains(&key) {
            return Err(Error::invalid(
                format!("dsn.{key}"),
                "is given more than once",
            ));
        }
        seen.push(key);
        let field = || format!("dsn.{key}");
        if value.is_empty() {
            // libpq reads an empty value as "not set".
            continue;
        }
        let draft = &mut out.draft;
        match key {
            "host" => {
                if value.contains(',') {
                    return Err(host_list());
                }
                if value.starts_with('/') || value.starts_with('@') {
                    return Err(Error::invalid(
                        "dsn.host",
                        "unix-socket paths are not supported; give a host name or IP address",
                    ));
                }
                draft.host = value.as_str().to_owned();
            }
            "port" => {
                if value.contains(',') {
                    return Err(Error::invalid(
                        "dsn.port",
                        "must be a single port; port lists are not supported",
                    ));
                }
                let digits = value.trim();
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::invalid(
                        "dsn.port",
                        "must be a number between 1 and 65535",
                    ));
                }
                // Too many digits for an i64 is out of range all the same.
                draft.port = Some(digits.parse::<i64>().unwrap_or(i64::MAX));
            }
            "dbname" => {
                if value.contains('=') || url_scheme(&value).is_some() {
                    return Err(Error::invalid(
                        "dsn.dbname",
                        "a connection string inside dbname is not supported",
                    ));
                }
                dbname_given = true;
                draft.database = value.as_str().to_owned();
            }
            "user" => draft.username = value.as_str().to_owned(),
            "password" => draft.password = Some(Password::new(value.as_str().to_owned())),
            "sslmode" => {
                let mode = value
                    .parse::<TlsMode>()
                    .map_err(|e| e.with_field(field()))?;
                draft.tls.mode = Some(mode);
            }
            "channel_binding" => {
                let cb = value
                    .parse::<ChannelBinding>()
                    .map_err(|e| e.with_field(field()))?;
                draft.tls.channel_binding = Some(cb);
            }
            "sslrootcert" if value.as_str() == "system" => sslrootcert_system = true,
            "sslrootcert" => out.sslrootcert = Some(PathBuf::from(value.as_str())),
            "sslcert" => out.sslcert = Some(PathBuf::from(value.as_str())),
            "sslkey" => out.sslkey = Some(PathBuf::from(value.as_str())),
            "connect_timeout" => {
                let secs = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| Error::invalid(field(), "must be a whole number of seconds"))?;
                if !(1..=5).contains(&secs) {
                    return Err(Error::invalid(
                        field(),
                        "must be between 1 and 5 seconds (0, wait forever, is not supported)",
                    ));
                }
                draft.options.connect_timeout_ms = Some(secs * 1000);
            }
            "application_name" => {
                draft.options.application_name = Some(value.as_str().to_owned());
            }
            _ => return Err(refused_key(key)),
        }
    }
    if out.draft.host.is_empty() {
        return Err(Error::invalid(
            "dsn.host",
            "is required; libpq's default, a local unix socket, is not supported",
        ));
    }
    if !dbname_given {
        out.draft.database = out.draft.username.clone();
    }
    if sslrootcert_system {
        match out.draft.tls.mode {
            None => out.draft.tls.mode = Some(TlsMode::VerifyFull),
            Some(TlsMode::VerifyFull) => {}
            Some(_) => {
                return Err(Error::invalid(
                    "dsn.sslmode",
                    "must be verify-full with sslrootcert=system",
                ));
            }
        }
    } else if out.sslrootcert.is_some() && out.draft.tls.mode == Some(TlsMode::Require) {
        // libpq verifies the chain in `require` mode when a root certificate is given.
        out.draft.tls.mode = Some(TlsMode::VerifyCa);
    }
    Ok(out)
}

fn host_list() -> Error {
    Error::invalid(
        "dsn.host",
        "must be a single host; host lists are not supported",
    )
}

fn refused_key(key: &'static str) -> Error {
    let message = match key {
        "hostaddr" => "is not supported; give the address as host",
        "options" => "is not supported: free-form server options are not accepted",
        _ => "is not supported by this product",
    };
    Error::invalid(format!("dsn.{key}"), message)
}

/// Quotes a key=value value when it needs it.
fn quote(v: &str) -> String {
    if !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        return v.to_owned();
    }
    let mut out = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Redacts what follows `://` in a URL; see [`redact_url`].
fn redact_url_rest(rest: &str) -> String {
    let mut out = String::new();
    let tail = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            if !plain(user) {
                out.push_str("***@");
            } else if userinfo.contains(':') {
                out.push_str(user);
                out.push_str(":***@");
            } else if plain(userinfo) {
                out.push_str(userinfo);
                out.push('@');
            } else {
                out.push_str("***@");
            }
            &rest[at + 1..]
        }
        None => rest,
    };
    match tail.split_once('?') {
        None => out.push_str(tail),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let redacted: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if SHOWN_IN_LOGS.contains(&k) => format!("{k}={v}"),
                    Some((k, _)) => format!("{}=***", shown_key(k)),
                    _ if pair.is_empty() => String::new(),
                    _ => "***".to_owned(),
                })
                .collect();
            out.push_str(&redacted.join("&"));
        }
    }
    out
}

/// Whether a part of a URL holds no delimiter, so it is not a shifted fragment of a secret.
fn plain(s: &str) -> bool {
    !s.contains(['/', '?', '&', '=', '#', '@', ':'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(decode("a%20b%2F", "user").unwrap().as_str(), "a b/");
        assert!(decode("%zz", "user").is_err());
        assert!(decode("%4", "user").is_err());
        assert!(decode("%ff", "user").is_err());
        assert_eq!(decode("%C3%A9", "user").unwrap().as_str(), "é");
    }

    #[test]
    fn tokenizer_follows_libpq() {
        let pairs = tokenize(r"a=1  b = 'x y\'z\\' c=d\ e  d=''").unwrap();
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, [("a", "1"), ("b", "x y'z\\"), ("c", "d e"), ("d", "")]);
        assert!(tokenize("a='x").is_err());
        assert!(tokenize("a").is_err());
        assert!(tokenize("=x").is_err());
    }

    #[test]
    fn quoting_round_trips() {
        for v in ["", "a b", "it's", "back\\slash", "plain"] {
            let s = format!("k={}", quote(v));
            assert_eq!(tokenize(&s).unwrap()[0].1.as_str(), v);
        }
    }
}
