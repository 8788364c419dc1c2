//! Integration tests: libpq connection strings (URLs and key=value), their refusals, redaction,
//! property tests that nothing panics and the password never leaks, and the secret canary
//! through the whole model.

use std::path::Path;

use base64::Engine as _;
use datahub_core::dsn::{self, ParsedDsn, redact_url};
use datahub_core::model::{ChannelBinding, ConnectionPatch, TlsMode};
use datahub_core::secret::Password;
use datahub_core::{Error, ErrorKind};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;

fn parse(input: &str) -> ParsedDsn {
    match dsn::parse(input) {
        Ok(p) => p,
        Err(e) => panic!("{input:?} refused: {e}"),
    }
}

fn password(p: &ParsedDsn) -> Option<&str> {
    p.draft.password.as_ref().map(Password::expose_secret)
}

#[test]
fn url_with_everything() {
    let p = parse(
        "postgres://alice:s%40cr%2Ft%20%C3%A9@db.example.com:6543/orders%2Deu\
         ?sslmode=verify-ca&application_name=etl%20job&connect_timeout=3\
         &channel_binding=require&sslrootcert=/etc/ca.pem&sslcert=c.pem&sslkey=k.pem",
    );
    let d = &p.draft;
    assert_eq!(d.username, "alice");
    assert_eq!(password(&p), Some("s@cr/t é"));
    assert_eq!(d.host, "db.example.com");
    assert_eq!(d.port, Some(6543));
    assert_eq!(d.database, "orders-eu");
    assert_eq!(d.tls.mode, Some(TlsMode::VerifyCa));
    assert_eq!(d.tls.channel_binding, Some(ChannelBinding::Require));
    assert_eq!(d.options.connect_timeout_ms, Some(3000));
    assert_eq!(d.options.application_name.as_deref(), Some("etl job"));
    assert_eq!(p.sslrootcert.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(p.sslcert.as_deref(), Some(Path::new("c.pem")));
    assert_eq!(p.sslkey.as_deref(), Some(Path::new("k.pem")));
    assert!(d.name.is_empty(), "the caller names the connection");
}

#[test]
fn url_forms() {
    let p = parse("postgresql://db");
    assert_eq!((p.draft.host.as_str(), p.draft.port), ("db", None));
    assert!(p.draft.password.is_none());
    assert_eq!(parse("POSTGRES://db/x").draft.database, "x");
    let p = parse("postgres://u@[::1]:5433/x");
    assert_eq!((p.draft.host.as_str(), p.draft.port), ("[::1]", Some(5433)));
    let p = parse("postgres://[2001:db8::1]/x");
    assert_eq!(p.draft.host, "[2001:db8::1]");
    // libpq: without dbname the database is the user name; an empty password is none.
    let p = parse("postgres://bob:@db");
    assert_eq!(p.draft.database, "bob");
    assert!(p.draft.password.is_none());
    // The last '@' ends the user info, so an unencoded '@' in a password still works.
    let p = parse("postgres://u:p@ss@db/x");
    assert_eq!((password(&p), p.draft.host.as_str()), (Some("p@ss"), "db"));
    let p = parse("  postgres://db/x?password=a%26b&user=u \n");
    assert_eq!(
        (password(&p), p.draft.username.as_str()),
        (Some("a&b"), "u")
    );
}

#[test]
fn key_value_forms() {
    let p = parse(
        r"host=db.example.com port = 5432  dbname='my db' user=alice password='p a\'ss\\' sslmode=require",
    );
    let d = &p.draft;
    assert_eq!(d.host, "db.example.com");
    assert_eq!(d.port, Some(5432));
    assert_eq!(d.database, "my db");
    assert_eq!(d.username, "alice");
    assert_eq!(password(&p), Some(r"p a'ss\"));
    assert_eq!(d.tls.mode, Some(TlsMode::Require));
    let p = parse(r"host=h password=un\ quoted\\x");
    assert_eq!(password(&p), Some(r"un quoted\x"));
    let p = parse("host=h\tuser=u\npassword=''");
    assert!(p.draft.password.is_none());
    assert_eq!(p.draft.database, "u");
    let p = parse("application_name=http://x host=h");
    assert_eq!(
        p.draft.options.application_name.as_deref(),
        Some("http://x")
    );
}

#[test]
fn libpq_tls_meanings() {
    // `require` with a root certificate verifies the chain in libpq.
    let p = parse("host=h sslmode=require sslrootcert=ca.pem");
    assert_eq!(p.draft.tls.mode, Some(TlsMode::VerifyCa));
    // `sslrootcert=system`: the system roots and verify-full.
    let p = parse("host=h sslrootcert=system");
    assert_eq!(
        (p.draft.tls.mode, p.sslrootcert),
        (Some(TlsMode::VerifyFull), None)
    );
    let e = dsn::parse("host=h sslrootcert=system sslmode=verify-ca").unwrap_err();
    assert_eq!(e.field(), Some("dsn.sslmode"));
    // No sslmode: this product's default (verify-full), not libpq's prefer.
    assert_eq!(parse("host=h").draft.tls.mode, None);
}

#[test]
fn refusals_name_the_key() {
    let long = format!("host=h application_name={}", "a".repeat(17 * 1024));
    let table: &[(&str, &str)] = &[
        ("", "dsn"),
        ("   ", "dsn"),
        (&long, "dsn"),
        ("mysql://db/x", "dsn"),
        ("jdbc:postgresql://db/x", "dsn"),
        ("http://db", "dsn"),
        ("postgres://a,b/x", "dsn.host"),
        ("postgres://h1:5432,h2:5433/x", "dsn.host"),
        ("host=a,b", "dsn.host"),
        ("host=/var/run/postgresql", "dsn.host"),
        ("host=@abstract", "dsn.host"),
        ("postgres://%2Fvar%2Frun%2Fpostgresql/x", "dsn.host"),
        ("postgres:///x", "dsn.host"),
        ("postgres:///x?host=/tmp", "dsn.host"),
        ("user=u dbname=x", "dsn.host"),
        ("host=h host=h", "dsn.host"),
        ("postgres://h/x?host=h", "dsn.host"),
        ("postgres://h/x?dbname=y", "dsn.dbname"),
        ("postgres://[::1/x", "dsn.host"),
        ("postgres://[::1]x/y", "dsn.host"),
        ("postgres://::1/x", "dsn.host"),
        ("hostaddr=127.0.0.1 host=h", "dsn.hostaddr"),
        ("host=h options='-c search_path=evil'", "dsn.options"),
        ("host=h service=prod", "dsn.service"),
        ("host=h passfile=/etc/passwd", "dsn.passfile"),
        ("host=h sslpassword=x", "dsn.sslpassword"),
        (
            "host=h target_session_attrs=any",
            "dsn.target_session_attrs",
        ),
        ("postgres://h/x?options=-cx%3Dy", "dsn.options"),
        ("host=h bogus-key-7d=1", "dsn"),
        ("host=h Host=x", "dsn"),
        ("host=h port=abc", "dsn.port"),
        ("host=h port=5432,5433", "dsn.port"),
        ("host=h port=-1", "dsn.port"),
        ("postgres://h:/x", "dsn.port"),
        ("postgres://h:abc/x", "dsn.port"),
        ("host=h sslmode=verify_full", "dsn.sslmode"),
        ("host=h sslmode=REQUIRE", "dsn.sslmode"),
        ("host=h channel_binding=yes", "dsn.channel_binding"),
        ("host=h connect_timeout=0", "dsn.connect_timeout"),
        ("host=h connect_timeout=6", "dsn.connect_timeout"),
        ("host=h connect_timeout=1.5", "dsn.connect_timeout"),
        ("host=h connect_timeout=-1", "dsn.connect_timeout"),
        (
            "host=h connect_timeout=99999999999999999999",
            "dsn.connect_timeout",
        ),
        ("host=h dbname='host=evil user=x'", "dsn.dbname"),
        ("host=h dbname=postgres://evil/x", "dsn.dbname"),
        ("host=h password='unterminated-secret-4f1", "dsn"),
        ("host=h password='ends-in-backslash\\", "dsn"),
        ("host", "dsn"),
        ("host=h lonely-word-9c2", "dsn"),
        ("=x host=h", "dsn"),
        ("postgres://u:p%zz@h/x", "dsn.password"),
        ("postgres://u:p%ff@h/x", "dsn.password"),
        ("postgres://u%@h/x", "dsn.user"),
        ("postgres://u:secret-3e7/with-slash@h/x", "dsn"),
        ("postgres://u:1234/secret-3e7@h/x", "dsn"),
        ("postgres://h/a/b", "dsn"),
        ("postgres://h /x", "dsn"),
        ("postgres://h/x\n?sslmode=disable", "dsn"),
        ("postgres://h/x?sslmode", "dsn"),
        ("postgres://h/x?%zz=1", "dsn"),
    ];
    for (input, field) in table {
        let e = match dsn::parse(input) {
            Ok(p) => panic!("{input:?} accepted: {p:?}"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field(), Some(*field), "{input:?}: {e}");
        for secret in [
            "bogus-key-7d",
            "unterminated-secret-4f1",
            "ends-in-backslash",
            "lonely-word-9c2",
            "secret-3e7",
            "evil",
        ] {
            assert!(
                !format!("{e} {e:?}").contains(secret),
                "{input:?} echoed: {e}"
            );
        }
    }
}

#[test]
fn parsed_drafts_validate_by_model_field() {
    let mut p = parse("postgres://alice:pw@db.example.com:5432/orders?sslmode=verify-full");
    p.draft.name = "orders".into();
    let (spec, secrets) = p.draft.validate().unwrap();
    assert_eq!(spec.host.as_str(), "db.example.com");
    assert_eq!(secrets.password.expose_secret(), "pw");
    // Values are checked by the model and named by its fields.
    for (input, field) in [
        ("postgres://u:pw@h:0/x", "port"),
        ("postgres://u:pw@h:65536/x", "port"),
        ("postgres://u:pw@h:99999999999999999999999/x", "port"),
        ("postgres://u:pw@bad_host!/x", "host"),
        ("postgres://u:pw@h%20x/x", "host"),
        ("postgres://u@h/x", "password"),
        ("postgres://u:pw@h/x%00y", "database"),
        (
            "host=h user=u password=pw application_name=é",
            "options.application_name",
        ),
    ] {
        let mut p = parse(input);
        p.draft.name = "n".into();
        let e = p.draft.validate().unwrap_err();
        assert_eq!(e.field(), Some(field), "{input}: {e}");
    }
}

#[test]
fn redaction() {
    for (input, expected) in [
        ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgres://h:5432/db", "postgres://h:5432/db"),
        (
            "postgres://h/db?password=secret&sslmode=require",
            "postgres://h/db?password=***&sslmode=require",
        ),
        ("postgres://h/db?pasword=secret", "postgres://h/db?***=***"),
        ("postgres://h/db?secret", "postgres://h/db?***"),
        (
            "postgres://h/db?sslpassword=secret",
            "postgres://h/db?sslpassword=***",
        ),
        (
            "x:// password=secret",
            "<unparseable connection string, redacted>",
        ),
        ("host=h secret=x", "host=h ***=***"),
        ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
        ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
        ("postgres://h/db?password=x@y", "postgres://***@y"),
        (
            "host=h password='s e c' user=u",
            "host=h password=*** user=u",
        ),
        (
            "host=h sslpassword=x dbname='my db'",
            "host=h sslpassword=*** dbname='my db'",
        ),
        (
            "host=h password='unterminated",
            "<unparseable connection string, redacted>",
        ),
        ("secret", "<unparseable connection string, redacted>"),
    ] {
        assert_eq!(redact_url(input), expected, "{input}");
    }
}

// ---- the secret canary ----

const CANARY: &str = "canary-9d8e7f-pässwörd";

/// Every form the canary could leak in.
fn canary_forms() -> Vec<String> {
    vec![
        CANARY.to_owned(),
        "9d8e7f".to_owned(),
        "pässwörd".to_owned(),
        utf8_percent_encode(CANARY, NON_ALPHANUMERIC).to_string(),
        base64::engine::general_purpose::STANDARD.encode(CANARY),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(CANARY),
    ]
}

fn assert_no_canary(what: &str, text: &str) {
    for form in canary_forms() {
        assert!(
            !text.contains(&form),
            "{what} leaks the canary ({form}): {text}"
        );
    }
}

fn assert_error_clean(what: &str, e: &Error) {
    assert_no_canary(what, &e.to_string());
    assert_no_canary(what, &format!("{e:?}"));
    assert_no_canary(what, &format!("{e:#?}"));
}

#[test]
fn secret_canary_never_shows() {
    let encoded = utf8_percent_encode(CANARY, NON_ALPHANUMERIC).to_string();

    // Draft and validation.
    let mut draft = datahub_core::model::ConnectionDraft {
        name: "orders".into(),
        host: "db.example.com".into(),
        database: "orders".into(),
        username: "alice".into(),
        password: Some(Password::from(CANARY)),
        ..Default::default()
    };
    assert_no_canary("draft", &format!("{draft:?} {draft:#?}"));
    let (spec, secrets) = draft.clone().validate().unwrap();
    assert_eq!(secrets.password.expose_secret(), CANARY);
    assert_no_canary("spec", &format!("{spec:?}"));
    assert_no_canary("secrets", &format!("{secrets:?} {secrets:#?}"));

    // A failed validation with the canary in the draft, and the canary in the wrong fields.
    draft.port = Some(0);
    assert_error_clean("validate", &draft.clone().validate().unwrap_err());
    for field in [
        "name",
        "host",
        "database",
        "username",
        "description",
        "tag",
        "app",
    ] {
        let mut d = draft.clone();
        d.port = None;
        let wrong = format!("x\0{CANARY}");
        match field {
            "name" => d.name = wrong,
            "host" => d.host = wrong,
            "database" => d.database = wrong,
            "username" => d.username = wrong,
            "description" => d.description = Some(wrong),
            "tag" => d.tags = vec![wrong],
            _ => d.options.application_name = Some(wrong),
        }
        assert_error_clean(field, &d.validate().unwrap_err());
    }
    let mut d = draft.clone();
    d.port = None;
    d.password = Some(Password::new(format!("{CANARY}\0")));
    assert_error_clean("nul password", &d.clone().validate().unwrap_err());
    d.host = format!("postgres://alice:{CANARY}@db/x");
    assert_error_clean("url as host", &d.validate().unwrap_err());

    // Patches.
    let patch = ConnectionPatch {
        password: Some(Password::from(CANARY)),
        host: Some("other.example".into()),
        ..Default::default()
    };
    assert_no_canary("patch", &format!("{patch:?}"));
    let out = patch.apply(&spec).unwrap();
    assert_no_canary("outcome", &format!("{out:?}"));
    assert_no_canary("changed", &out.changed().join(","));
    let bad = ConnectionPatch {
        password: Some(Password::from(CANARY)),
        port: Some(65536),
        ..Default::default()
    };
    assert_error_clean("patch error", &bad.apply(&spec).unwrap_err());

    // Connection strings: URL (raw and encoded), key=value, and malformed ones.
    for input in [
        format!("postgres://alice:{encoded}@db.example.com/orders"),
        format!("postgres://alice:{CANARY}@db.example.com/orders"),
        format!("postgres://db.example.com/orders?user=alice&password={encoded}"),
        format!("host=db.example.com user=alice password='{CANARY}'"),
        format!("host=db.example.com user=alice password={CANARY}"),
    ] {
        let p = dsn::parse(&input).unwrap();
        assert_eq!(password(&p), Some(CANARY));
        assert_no_canary("parsed dsn", &format!("{p:?} {p:#?}"));
        assert_no_canary("redacted", &redact_url(&input));
        let mut draft = p.draft;
        draft.name = "x".into();
        draft.port = Some(0);
        assert_error_clean("dsn draft", &draft.validate().unwrap_err());
    }
    for input in [
        format!("host=db.example.com password='{CANARY}"),
        format!("host=db.example.com password={CANARY} bogus"),
        format!("host=db.example.com {CANARY}=x"),
        format!("host=db.example.com password={CANARY} options=x"),
        format!("postgres://alice:{CANARY}/x@db.example.com/orders"),
        format!("postgres://alice:{encoded}%zz@db.example.com/orders"),
        format!("postgres://alice:{encoded}%ff@db.example.com/orders"),
        format!("postgres://alice:{encoded}@db.example.com:bad/orders"),
        format!("postgres://alice:{encoded}@a,b/orders"),
        format!("postgres://alice:{CANARY} x@db.example.com/orders"),
        format!("postgres://db/x?password={encoded}&password=again"),
        format!("mysql://alice:{CANARY}@db.example.com/orders"),
    ] {
        let e = dsn::parse(&input).unwrap_err();
        assert_error_clean(&format!("parse error of {input}"), &e);
        assert_no_canary("redacted", &redact_url(&input));
    }
}

// ---- properties ----

/// Pieces that steer random input into every branch of the parser.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "postgres://", "postgresql://", "jdbc:", "://", "@", ":", "/", "?", "&", "=", "'",
            "\\", "%", "%2", "%41", "%ff", "%C3%A9", "[", "]", ",", " ", "\t", "\n", "\0",
            "host", "password", "user", "dbname", "port", "sslmode", "hostaddr", "sslrootcert",
            "connect_timeout", "channel_binding", "application_name", "options", "system",
            "5432", "0", "99999999999999999999", "::1", "[::1]", "verify-full", "require",
            "db.example.com", "é", "\u{202E}", "\u{200B}", "日本",
        ])
        .prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => ".{0,8}",
    ]
}

fn hostile_input() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..14).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// No input makes parsing, validation of the result, or redaction panic.
    #[test]
    fn nothing_panics(input in hostile_input()) {
        let _ = redact_url(&input);
        match dsn::parse(&input) {
            Ok(parsed) => {
                let mut draft = parsed.draft;
                draft.name = "x".into();
                let _ = draft.validate();
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidInput),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 20_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A password never appears in an error, a parsed result's `Debug` or a redacted string,
    /// whatever surrounds it (the surroundings contain no quote or backslash, which would
    /// legitimately move it into another value, and no uppercase, so they cannot spell it).
    #[test]
    fn password_never_leaks(
        pw in "Zx[A-Za-z0-9!$()*+;~-]{6,24}",
        rest in "[a-z0-9 =./:@%?&,\\[\\]-]{0,30}",
        form in 0..4u8,
    ) {
        let encoded = utf8_percent_encode(&pw, NON_ALPHANUMERIC).to_string();
        let input = match form {
            0 => format!("postgres://user:{pw}@{rest}"),
            1 => format!("postgres://user:{encoded}@{rest}"),
            2 => format!("host=h password='{pw}' {rest}"),
            _ => format!("{rest} password={pw}"),
        };
        let shown = match dsn::parse(&input) {
            Ok(p) => format!("{p:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains(&pw), "{} in {}", input, shown);
        prop_assert!(!shown.contains(&encoded));
        let redacted = redact_url(&input);
        prop_assert!(!redacted.contains(&pw), "{} redacted to {}", input, redacted);
    }
}
