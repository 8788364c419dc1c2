//! Integration tests: the connection model. Table-driven hostile input for every field, the
//! rules between fields, patches (S11, S12), and a secret canary through everything.

use datahub_core::model::{
    ChannelBinding, Connection, ConnectionDraft, ConnectionPatch, ConnectionSpec, HealthStatus,
    TlsMode,
};
use datahub_core::secret::{Password, PrivateKeyPem};
use datahub_core::{ErrorKind, UserId};

const CERT: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2V4\nZmFrZQ==\n-----END CERTIFICATE-----\n";
const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKey\n-----END PRIVATE KEY-----\n";

/// Puts a test input into one field of a draft.
type Setter<T> = fn(&mut ConnectionDraft, T);

fn draft() -> ConnectionDraft {
    ConnectionDraft {
        name: "orders".into(),
        host: "db.example.com".into(),
        database: "orders".into(),
        username: "alice".into(),
        password: Some(Password::from("correct horse")),
        ..ConnectionDraft::default()
    }
}

fn spec() -> ConnectionSpec {
    draft().validate().unwrap().0
}

/// Applies `set` to a valid draft and asserts that validation fails on `field`, with a message
/// that does not repeat `input`.
fn check<T: Clone + std::fmt::Debug>(set: Setter<T>, input: T, shown: &str, field: &str) {
    let mut d = draft();
    set(&mut d, input.clone());
    let err = match d.validate() {
        Ok(_) => panic!("{input:?} was accepted, expected an error on {field}"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{input:?}");
    assert_eq!(err.field(), Some(field), "{input:?}: {err}");
    if !shown.is_empty() {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(shown), "{input:?} echoed in {text}");
        }
    }
}

fn accept<T: Clone + std::fmt::Debug>(set: Setter<T>, input: T) -> ConnectionSpec {
    let mut d = draft();
    set(&mut d, input.clone());
    match d.validate() {
        Ok((spec, _)) => spec,
        Err(e) => panic!("{input:?} was refused: {e}"),
    }
}

fn set_name(d: &mut ConnectionDraft, v: String) {
    d.name = v;
}
fn set_host(d: &mut ConnectionDraft, v: String) {
    d.host = v;
}
fn set_port(d: &mut ConnectionDraft, v: i64) {
    d.port = Some(v);
}
fn set_database(d: &mut ConnectionDraft, v: String) {
    d.database = v;
}
fn set_username(d: &mut ConnectionDraft, v: String) {
    d.username = v;
}
fn set_description(d: &mut ConnectionDraft, v: String) {
    d.description = Some(v);
}
fn set_password(d: &mut ConnectionDraft, v: String) {
    d.password = Some(Password::new(v));
}
fn set_tags(d: &mut ConnectionDraft, v: Vec<String>) {
    d.tags = v;
}
fn set_app(d: &mut ConnectionDraft, v: String) {
    d.options.application_name = Some(v);
}
fn set_timeout(d: &mut ConnectionDraft, v: i64) {
    d.options.connect_timeout_ms = Some(v);
}
fn set_interval(d: &mut ConnectionDraft, v: i64) {
    d.monitoring.interval_s = Some(v);
}
fn set_slow(d: &mut ConnectionDraft, v: i64) {
    d.monitoring.slow_ms = Some(v);
}
fn set_ca(d: &mut ConnectionDraft, v: String) {
    d.tls.ca_cert_pem = Some(v);
}

/// Text every free-text field must refuse: control characters, line breaks, bidi controls and
/// invisible formatting characters.
const HOSTILE_CHARS: &[&str] = &[
    "a\0b",
    "a\nb",
    "a\rb",
    "a\u{1b}[31mb",
    "a\u{7f}b",
    "a\u{85}b",
    "a\u{2028}b",
    "a\u{202E}b",
    "a\u{202A}b",
    "a\u{2066}b",
    "a\u{2069}b",
    "a\u{200E}b",
    "a\u{200F}b",
    "a\u{061C}b",
    "a\u{200B}b",
    "a\u{200D}b",
    "\u{FEFF}ab",
    "a\u{00AD}b",
    "a\u{2060}b",
    "a\u{E0041}b",
];

#[test]
fn name() {
    let long = "a".repeat(65);
    for bad in [
        "",
        long.as_str(),
        "Orders",
        "-orders",
        "_orders",
        ".orders",
        "my orders",
        "orders/eu",
        "orders,eu",
        "café",
        "ｏrders",
        "orders\u{202E}",
        "postgres://u:pw@h/db",
    ] {
        check(set_name, bad.to_owned(), bad, "name");
    }
    for bad in HOSTILE_CHARS {
        check(set_name, (*bad).to_owned(), bad, "name");
    }
    for ok in ["a", "0", "orders-db", "a.b_c-d", &"a".repeat(64)] {
        assert_eq!(accept(set_name, ok.to_owned()).name.as_str(), ok);
    }
}

#[test]
fn host() {
    let long = format!("{}.com", "a.".repeat(126));
    let long_label = format!("{}.com", "a".repeat(64));
    let table: &[(&str, &str)] = &[
        ("", "empty"),
        (" db.example.com", "whitespace"),
        ("db.example.com ", "whitespace"),
        ("db\texample", "whitespace"),
        ("db\0example", "control"),
        ("db\nexample", "whitespace"),
        ("db.example.com,db2.example.com", "host lists"),
        ("a,b", "host lists"),
        ("/var/run/postgresql", "unix-socket"),
        ("@abstract", "unix-socket"),
        ("postgres://alice:hunter2-canary@db/x", "not a URL"),
        ("postgresql://db", "not a URL"),
        ("https://db.example.com", "not a URL"),
        ("postgres:db", "not a URL"),
        ("db.example.com:5432", "port"),
        ("10.0.0.1:5432", "port"),
        ("[::1]:5432", "port"),
        ("alice@db.example.com", "'@'"),
        ("db\u{202E}moc.elpmaxe", "bidirectional"),
        ("db\u{200B}.example.com", "invisible"),
        ("bücher.example", "punycode"),
        ("ｄｂ.example.com", "punycode"),
        ("db.exаmple.com", "punycode"),
        (&long, "253"),
        (&long_label, "63"),
        ("db..example.com", "empty labels"),
        (".db.example.com", "empty labels"),
        ("db.example.com.", "dot"),
        ("-db.example.com", "'-'"),
        ("db-.example.com", "'-'"),
        ("db!.example.com", "only letters"),
        ("db*.example.com", "only letters"),
        ("127.1", "non-standard"),
        ("2130706433", "non-standard"),
        ("0x7f000001", "non-standard"),
        ("0x7f.0.0.1", "non-standard"),
        ("010.0.0.1", "non-standard"),
        ("1.2.3.4.5", "non-standard"),
        ("256.0.0.1", "non-standard"),
        ("fe80::1%eth0", "zone"),
        ("[fe80::1%eth0]", "zone"),
        ("[::1", "'['"),
        ("[not-an-ip]", "IPv6"),
        ("[::1]x", "after"),
        ("::1::2", "valid host"),
        ("a:b:c", "valid host"),
    ];
    for (bad, fragment) in table {
        let mut d = draft();
        d.host = (*bad).to_owned();
        let e = d.validate().unwrap_err();
        assert_eq!(e.field(), Some("host"), "{bad:?}");
        assert!(e.message().contains(fragment), "{bad:?}: {e}");
        if !bad.is_empty() {
            assert!(!e.to_string().contains(bad), "{bad:?} echoed: {e}");
        }
    }
    assert!(!table.is_empty());
    let ok_long = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(ok_long.len(), 253);
    for (input, stored) in [
        ("localhost", "localhost"),
        ("DB.Example.COM", "db.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("my_db", "my_db"),
        ("10.0.0.1", "10.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[2001:DB8:0:0::1]", "2001:db8::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        (ok_long.as_str(), ok_long.as_str()),
    ] {
        assert_eq!(
            accept(set_host, input.to_owned()).host.as_str(),
            stored,
            "{input}"
        );
    }
}

#[test]
fn port() {
    for bad in [0, 65536, -1, -5432, 70000, i64::MAX, i64::MIN] {
        check(set_port, bad, "", "port");
    }
    for ok in [1, 5432, 65535] {
        assert_eq!(i64::from(accept(set_port, ok).port.get()), ok);
    }
    assert_eq!(spec().port.get(), 5432);
}

#[test]
fn database_and_username() {
    let setters: [(Setter<String>, &str); 2] =
        [(set_database, "database"), (set_username, "username")];
    for (set, field) in setters {
        let long = "a".repeat(64);
        let long_unicode = "日".repeat(22); // 66 bytes
        for bad in ["", &long, &long_unicode, " lead", "trail ", "\u{3000}x"] {
            check(set, bad.to_owned(), bad, field);
        }
        for bad in HOSTILE_CHARS {
            check(set, (*bad).to_owned(), bad, field);
        }
        for ok in [
            "orders",
            "données",
            "日本語",
            "my db",
            "a-b.c",
            &"a".repeat(63),
            &"日".repeat(21),
        ] {
            let mut d = draft();
            set(&mut d, ok.to_owned());
            let spec = d.validate().unwrap().0;
            let stored = if field == "database" {
                spec.database.as_str().to_owned()
            } else {
                spec.username.as_str().to_owned()
            };
            assert_eq!(stored, ok);
        }
    }
}

#[test]
fn description() {
    let long = "x".repeat(1001);
    for bad in [
        long.as_str(),
        "a\0b",
        "a\rb",
        "\u{1b}[2J",
        "a\u{202E}b",
        "a\u{200B}b",
        "a\u{2029}b",
    ] {
        check(set_description, bad.to_owned(), bad, "description");
    }
    for bad in HOSTILE_CHARS.iter().filter(|s| !s.contains('\n')) {
        check(set_description, (*bad).to_owned(), bad, "description");
    }
    let max = "é".repeat(1000);
    assert_eq!(
        accept(set_description, max.clone())
            .description
            .unwrap()
            .as_str(),
        max
    );
    let d = accept(set_description, "line one\r\nline two\twith tab".to_owned());
    assert_eq!(
        d.description.unwrap().as_str(),
        "line one\nline two\twith tab"
    );
    assert!(accept(set_description, String::new()).description.is_none());
}

#[test]
fn tags() {
    let s = |v: &[&str]| v.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
    let long = "t".repeat(41);
    for (bad, index) in [
        (vec![""], 0),
        (vec!["ok", "a b"], 1),
        (vec!["ok", "fine", long.as_str()], 2),
        (vec!["-x"], 0),
        (vec![":x"], 0),
        (vec!["\u{212A}elvin"], 0),
        (vec!["é"], 0),
        (vec!["a\0"], 0),
        (vec!["a\n"], 0),
        (vec!["a\u{202E}"], 0),
        (vec!["a,b"], 0),
    ] {
        let field = format!("tags[{index}]");
        check(set_tags, s(&bad), bad[index], &field);
    }
    let too_many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    check(set_tags, too_many, "", "tags");

    let spec = accept(
        set_tags,
        s(&[
            "Prod",
            "prod",
            "team:data/eu-1.x_y",
            "PROD",
            &"t".repeat(40),
        ]),
    );
    let got: Vec<&str> = spec.tags.as_slice().iter().map(|t| t.as_str()).collect();
    assert_eq!(got, ["prod", "team:data/eu-1.x_y", &"t".repeat(40)]);
    let twenty: Vec<String> = (0..40).map(|i| format!("T{}", i % 20)).collect();
    assert_eq!(accept(set_tags, twenty).tags.len(), 20);
}

#[test]
fn options() {
    let long = "a".repeat(64);
    for bad in [
        long.as_str(),
        "é",
        "a\0",
        "a\n",
        "a\u{7f}",
        "a\u{202E}",
        "a\tb",
    ] {
        check(set_app, bad.to_owned(), bad, "options.application_name");
    }
    let max = "~".repeat(63);
    for ok in ["etl (v1.2) ~ nightly!", max.as_str()] {
        let spec = accept(set_app, ok.to_owned());
        assert_eq!(spec.options.application_name().unwrap().as_str(), ok);
    }
    assert!(
        accept(set_app, String::new())
            .options
            .application_name()
            .is_none()
    );

    for bad in [0, -1, 5001, 60_000, i64::MAX, i64::MIN] {
        check(set_timeout, bad, "", "options.connect_timeout_ms");
    }
    for ok in [1, 250, 5000] {
        assert_eq!(
            i64::from(accept(set_timeout, ok).options.connect_timeout_ms()),
            ok
        );
    }
    assert_eq!(spec().options.connect_timeout_ms(), 5000);
}

#[test]
fn monitoring() {
    for bad in [9, 0, -60, 86_401, i64::MAX] {
        check(set_interval, bad, "", "monitoring.interval_s");
    }
    for bad in [0, -1, 60_001, i64::MIN] {
        check(set_slow, bad, "", "monitoring.slow_ms");
    }
    assert_eq!(accept(set_interval, 10).monitoring.interval_s(), 10);
    assert_eq!(accept(set_interval, 86_400).monitoring.interval_s(), 86_400);
    assert_eq!(accept(set_slow, 1).monitoring.slow_ms(), 1);
    assert_eq!(accept(set_slow, 60_000).monitoring.slow_ms(), 60_000);
    let m = spec().monitoring;
    assert!(m.enabled());
    assert_eq!((m.interval_s(), m.slow_ms()), (60, 1000));
    let mut d = draft();
    d.monitoring.enabled = Some(false);
    assert!(!d.validate().unwrap().0.monitoring.enabled());
}

#[test]
fn password() {
    let long = "p".repeat(1025);
    for bad in ["", "pass\0word", long.as_str()] {
        check(set_password, bad.to_owned(), bad, "password");
    }
    let mut d = draft();
    d.password = None;
    let e = d.validate().unwrap_err();
    assert_eq!(e.field(), Some("password"));
    for ok in [
        "x",
        "pässwörd with spaces\tand\ttabs\n",
        &"p".repeat(1024),
        "'\"\\%@:/?&=",
    ] {
        let mut d = draft();
        d.password = Some(Password::from(ok));
        let (_, secrets) = d.validate().unwrap();
        assert_eq!(secrets.password.expose_secret(), ok);
    }
}

#[test]
fn tls() {
    let key_in_ca = KEY.to_owned();
    let huge = format!("{}{}", CERT, " ".repeat(64 * 1024));
    let no_end = CERT.replace("-----END CERTIFICATE-----", "");
    let wrong_end = CERT.replace("END CERTIFICATE", "END PRIVATE KEY");
    let bad_body = CERT.replace("ZmFrZQ==", "not base64!");
    let headers = CERT.replace("ZmFrZQ==", "Proc-Type: 4,ENCRYPTED");
    let empty_block = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----";
    let trailing_text = format!("{CERT}subject=CN=x");
    for bad in [
        "not pem",
        key_in_ca.as_str(),
        huge.as_str(),
        no_end.as_str(),
        wrong_end.as_str(),
        bad_body.as_str(),
        headers.as_str(),
        empty_block,
        trailing_text.as_str(),
        "-----BEGIN CERTIFICATE-----",
        "\0",
    ] {
        check(set_ca, bad.to_owned(), bad, "tls.ca_cert_pem");
    }
    // A private key pasted into a certificate field is named as such, and never echoed.
    let mut d = draft();
    d.tls.ca_cert_pem = Some(KEY.to_owned());
    let e = d.validate().unwrap_err();
    assert!(e.message().contains("private key"));
    assert!(!format!("{e:?}").contains("MC4CAQ"));

    // Client certificate and key come in pairs.
    let mut d = draft();
    d.tls.client_cert_pem = Some(CERT.to_owned());
    assert_eq!(
        d.validate().unwrap_err().field(),
        Some("tls.client_key_pem")
    );
    let mut d = draft();
    d.tls.client_key_pem = Some(PrivateKeyPem::from(KEY));
    assert_eq!(
        d.validate().unwrap_err().field(),
        Some("tls.client_cert_pem")
    );

    // The key field: a certificate, an encrypted key, garbage.
    let encrypted = KEY.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
    let two_keys = format!("{KEY}{KEY}");
    for bad in [CERT, encrypted.as_str(), "garbage", two_keys.as_str()] {
        let mut d = draft();
        d.tls.client_cert_pem = Some(CERT.to_owned());
        d.tls.client_key_pem = Some(PrivateKeyPem::from(bad));
        let e = d.validate().unwrap_err();
        assert_eq!(e.field(), Some("tls.client_key_pem"));
        assert!(!format!("{e} {e:?}").contains("MC4CAQ"));
    }

    // Channel binding `require` needs TLS.
    let mut d = draft();
    d.tls.mode = Some(TlsMode::Disable);
    d.tls.channel_binding = Some(ChannelBinding::Require);
    assert_eq!(
        d.validate().unwrap_err().field(),
        Some("tls.channel_binding")
    );

    // Defaults, verify modes without a CA (system roots), a full client setup.
    let s = spec();
    assert_eq!(s.tls.mode(), TlsMode::VerifyFull);
    assert_eq!(s.tls.channel_binding(), ChannelBinding::Prefer);
    assert!(s.tls.ca_cert_pem().is_none());
    let mut d = draft();
    d.tls.mode = Some(TlsMode::VerifyCa);
    d.tls.ca_cert_pem = Some(format!("{CERT}\n{CERT}"));
    d.tls.client_cert_pem = Some(CERT.to_owned());
    d.tls.client_key_pem = Some(PrivateKeyPem::from(KEY));
    let (spec, secrets) = d.validate().unwrap();
    assert!(spec.tls.ca_cert_pem().is_some() && spec.tls.client_cert_pem().is_some());
    assert_eq!(secrets.client_key_pem.unwrap().expose_secret(), KEY);
    // Empty certificate fields mean "not set" (a form's empty text area).
    let mut d = draft();
    d.tls.ca_cert_pem = Some("  \n".to_owned());
    assert!(d.validate().unwrap().0.tls.ca_cert_pem().is_none());
}

#[test]
fn enum_spellings_name_their_field() {
    for bad in ["", "Require", " require", "verify_full", "ssl", "require\0"] {
        let e = bad.parse::<TlsMode>().unwrap_err();
        assert_eq!(e.field(), Some("tls.mode"));
    }
    assert_eq!("verify-ca".parse::<TlsMode>().unwrap(), TlsMode::VerifyCa);
    assert!(TlsMode::Require >= TlsMode::DEFAULT_POLICY_MINIMUM);
    assert!(TlsMode::Prefer < TlsMode::DEFAULT_POLICY_MINIMUM);
}

#[test]
fn fields_are_checked_in_a_stable_order() {
    let mut d = draft();
    d.name = String::new();
    d.host = "a,b".into();
    d.port = Some(0);
    assert_eq!(d.validate().unwrap_err().field(), Some("name"));
    let mut d = draft();
    d.host = "a,b".into();
    d.port = Some(0);
    d.password = None;
    assert_eq!(d.validate().unwrap_err().field(), Some("host"));
}

// ---- patches ----

fn apply(patch: ConnectionPatch) -> datahub_core::model::PatchOutcome {
    patch.apply(&spec()).unwrap()
}

#[test]
fn empty_patch_changes_nothing() {
    let out = apply(ConnectionPatch::default());
    assert!(out.is_unchanged());
    assert!(!out.needs_password());
    assert!(!out.password_supplied());
    assert!(out.check_password_requirement().is_ok());
    assert_eq!(out.spec, spec());
}

#[test]
fn patch_reports_changed_field_names() {
    let out = apply(ConnectionPatch {
        name: Some("orders-v2".into()),
        description: Some(Some("nightly".into())),
        username: Some("bob".into()),
        tags: Some(vec!["Prod".into()]),
        ..ConnectionPatch::default()
    });
    assert_eq!(out.changed(), ["name", "description", "username", "tags"]);
    assert!(!out.needs_password());
    assert_eq!(out.spec.name.as_str(), "orders-v2");

    // Setting a field to its current value is no change; normalisation counts.
    let out = apply(ConnectionPatch {
        host: Some("DB.Example.com".into()),
        port: Some(5432),
        ..ConnectionPatch::default()
    });
    assert!(out.is_unchanged(), "{:?}", out.changed());
    assert!(!out.needs_password());

    // Clearing.
    let mut current = spec();
    current.description = datahub_core::model::Description::parse_optional("x").unwrap();
    let out = ConnectionPatch {
        description: Some(None),
        ..ConnectionPatch::default()
    }
    .apply(&current)
    .unwrap();
    assert_eq!(out.changed(), ["description"]);
    assert!(out.spec.description.is_none());
}

#[test]
fn s11_omitted_password_keeps_and_empty_is_refused() {
    let out = apply(ConnectionPatch::default());
    assert!(out.secrets.password.is_none());
    let e = ConnectionPatch {
        password: Some(Password::from("")),
        ..ConnectionPatch::default()
    }
    .apply(&spec())
    .unwrap_err();
    assert_eq!(e.field(), Some("password"));
    let out = apply(ConnectionPatch {
        password: Some(Password::from("new secret")),
        ..ConnectionPatch::default()
    });
    assert_eq!(out.changed(), ["password"]);
    assert_eq!(out.secrets.password.unwrap().expose_secret(), "new secret");
}

#[test]
fn s12_needs_password() {
    fn needs(patch: ConnectionPatch, current: &ConnectionSpec) -> bool {
        let out = patch.apply(current).unwrap();
        let needed = out.needs_password();
        assert_eq!(out.check_password_requirement().is_err(), needed);
        needed
    }
    let base = spec();
    let p = ConnectionPatch::default;
    let tls = datahub_core::model::TlsPatch::default;
    assert!(needs(
        ConnectionPatch {
            host: Some("evil.example".into()),
            ..p()
        },
        &base
    ));
    assert!(needs(
        ConnectionPatch {
            host: Some("10.0.0.9".into()),
            ..p()
        },
        &base
    ));
    assert!(needs(
        ConnectionPatch {
            port: Some(5433),
            ..p()
        },
        &base
    ));
    assert!(needs(
        ConnectionPatch {
            database: Some("other".into()),
            ..p()
        },
        &base
    ));
    for lower in [
        TlsMode::VerifyCa,
        TlsMode::Require,
        TlsMode::Prefer,
        TlsMode::Allow,
        TlsMode::Disable,
    ] {
        let patch = ConnectionPatch {
            tls: datahub_core::model::TlsPatch {
                mode: Some(lower),
                ..tls()
            },
            ..p()
        };
        assert!(needs(patch, &base), "{lower}");
    }
    let patch = ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            channel_binding: Some(ChannelBinding::Disable),
            ..tls()
        },
        ..p()
    };
    assert!(needs(patch, &base));
    // A new trust anchor under a verifying mode lets another server pass as this one.
    let patch = ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            ca_cert_pem: Some(Some(CERT.into())),
            ..tls()
        },
        ..p()
    };
    assert!(needs(patch, &base));

    // Raising security, renaming, re-tagging or changing the user does not.
    let mut weak = base.clone();
    weak.tls = datahub_core::model::TlsSettings::new(
        TlsMode::Require,
        None,
        None,
        ChannelBinding::Disable,
    )
    .unwrap();
    let patch = ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            mode: Some(TlsMode::VerifyFull),
            channel_binding: Some(ChannelBinding::Require),
            ..tls()
        },
        ..p()
    };
    assert!(!needs(patch, &weak));
    let patch = ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            ca_cert_pem: Some(Some(CERT.into())),
            ..tls()
        },
        ..p()
    };
    assert!(!needs(patch, &weak), "the CA is unused in require mode");
    assert!(!needs(
        ConnectionPatch {
            username: Some("bob".into()),
            name: Some("x".into()),
            ..p()
        },
        &base
    ));

    // With the password, the check passes.
    let out = ConnectionPatch {
        host: Some("other.example".into()),
        password: Some(Password::from("again")),
        ..p()
    }
    .apply(&base)
    .unwrap();
    assert!(out.needs_password() && out.check_password_requirement().is_ok());
    assert_eq!(
        out.check_password_requirement().map_err(|e| e.kind()),
        Ok(())
    );
    let out = apply(ConnectionPatch {
        host: Some("other.example".into()),
        ..p()
    });
    assert_eq!(
        out.check_password_requirement().unwrap_err().field(),
        Some("password")
    );
}

#[test]
fn patch_client_certificate_pairs() {
    let tls = datahub_core::model::TlsPatch::default;
    // Adding a certificate alone is refused; with its key it is accepted.
    let e = ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            client_cert_pem: Some(Some(CERT.into())),
            ..tls()
        },
        ..ConnectionPatch::default()
    }
    .apply(&spec())
    .unwrap_err();
    assert_eq!(e.field(), Some("tls.client_key_pem"));
    let out = apply(ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            client_cert_pem: Some(Some(CERT.into())),
            client_key_pem: Some(Some(PrivateKeyPem::from(KEY))),
            ..tls()
        },
        ..ConnectionPatch::default()
    });
    assert_eq!(out.changed(), ["tls.client_cert_pem", "tls.client_key_pem"]);
    let with_cert = out.spec;

    // Removing one without the other is refused; both together is fine.
    let e = ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            client_key_pem: Some(None),
            ..tls()
        },
        ..ConnectionPatch::default()
    }
    .apply(&with_cert)
    .unwrap_err();
    assert_eq!(e.field(), Some("tls.client_key_pem"));
    let out = ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            client_cert_pem: Some(None),
            client_key_pem: Some(None),
            ..tls()
        },
        ..ConnectionPatch::default()
    }
    .apply(&with_cert)
    .unwrap();
    assert!(out.spec.tls.client_cert_pem().is_none());
    assert!(matches!(out.secrets.client_key_pem, Some(None)));
    assert_eq!(out.changed(), ["tls.client_cert_pem", "tls.client_key_pem"]);

    // A renewed certificate keeps the stored key; an empty key is an error, not "keep".
    let out = ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            client_cert_pem: Some(Some(format!("{CERT}{CERT}"))),
            ..tls()
        },
        ..ConnectionPatch::default()
    }
    .apply(&with_cert)
    .unwrap();
    assert!(out.secrets.client_key_pem.is_none());
    let e = ConnectionPatch {
        tls: datahub_core::model::TlsPatch {
            client_key_pem: Some(Some(PrivateKeyPem::from(""))),
            ..tls()
        },
        ..ConnectionPatch::default()
    }
    .apply(&with_cert)
    .unwrap_err();
    assert_eq!(e.field(), Some("tls.client_key_pem"));
}

#[test]
fn patch_refuses_hostile_input_by_field() {
    let p = ConnectionPatch::default;
    let cases: Vec<(ConnectionPatch, &str)> = vec![
        (
            ConnectionPatch {
                name: Some("Bad Name".into()),
                ..p()
            },
            "name",
        ),
        (
            ConnectionPatch {
                description: Some(Some("a\0".into())),
                ..p()
            },
            "description",
        ),
        (
            ConnectionPatch {
                host: Some("a,b".into()),
                ..p()
            },
            "host",
        ),
        (
            ConnectionPatch {
                host: Some("/tmp".into()),
                ..p()
            },
            "host",
        ),
        (
            ConnectionPatch {
                host: Some(String::new()),
                ..p()
            },
            "host",
        ),
        (
            ConnectionPatch {
                port: Some(0),
                ..p()
            },
            "port",
        ),
        (
            ConnectionPatch {
                port: Some(65536),
                ..p()
            },
            "port",
        ),
        (
            ConnectionPatch {
                database: Some(String::new()),
                ..p()
            },
            "database",
        ),
        (
            ConnectionPatch {
                username: Some("a\u{202E}".into()),
                ..p()
            },
            "username",
        ),
        (
            ConnectionPatch {
                password: Some(Password::from("a\0")),
                ..p()
            },
            "password",
        ),
        (
            ConnectionPatch {
                tags: Some(vec!["ok".into(), String::new()]),
                ..p()
            },
            "tags[1]",
        ),
        (
            ConnectionPatch {
                options: datahub_core::model::OptionsPatch {
                    connect_timeout_ms: Some(0),
                    ..Default::default()
                },
                ..p()
            },
            "options.connect_timeout_ms",
        ),
        (
            ConnectionPatch {
                options: datahub_core::model::OptionsPatch {
                    application_name: Some(Some("é".into())),
                    ..Default::default()
                },
                ..p()
            },
            "options.application_name",
        ),
        (
            ConnectionPatch {
                monitoring: datahub_core::model::MonitoringPatch {
                    interval_s: Some(9),
                    ..Default::default()
                },
                ..p()
            },
            "monitoring.interval_s",
        ),
        (
            ConnectionPatch {
                monitoring: datahub_core::model::MonitoringPatch {
                    slow_ms: Some(60_001),
                    ..Default::default()
                },
                ..p()
            },
            "monitoring.slow_ms",
        ),
        (
            ConnectionPatch {
                tls: datahub_core::model::TlsPatch {
                    ca_cert_pem: Some(Some(KEY.into())),
                    ..Default::default()
                },
                ..p()
            },
            "tls.ca_cert_pem",
        ),
        (
            ConnectionPatch {
                tls: datahub_core::model::TlsPatch {
                    mode: Some(TlsMode::Disable),
                    channel_binding: Some(ChannelBinding::Require),
                    ..Default::default()
                },
                ..p()
            },
            "tls.channel_binding",
        ),
    ];
    for (patch, field) in cases {
        let e = patch.apply(&spec()).unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
    // Monitoring changes keep the other monitoring values.
    let out = apply(ConnectionPatch {
        monitoring: datahub_core::model::MonitoringPatch {
            slow_ms: Some(250),
            ..Default::default()
        },
        ..p()
    });
    assert_eq!(out.changed(), ["monitoring.slow_ms"]);
    assert_eq!(out.spec.monitoring.interval_s(), 60);
}

#[test]
fn connection_lifecycle() {
    let owner = UserId::new();
    let t0 = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let mut c = Connection::create(spec(), owner, t0);
    assert_eq!(c.version, 1);
    assert_eq!(c.owner, owner);
    assert!(c.password_set);
    assert_eq!(c.created_at, t0);
    assert_eq!(c.health.status, HealthStatus::Unknown);
    assert!(c.health.checked_at.is_none() && c.health.error_kind.is_none());
    let out = apply(ConnectionPatch {
        name: Some("renamed".into()),
        ..ConnectionPatch::default()
    });
    let t1 = t0 + time::Duration::seconds(5);
    c.update(out.spec, t1);
    assert_eq!(c.version, 2);
    assert_eq!((c.created_at, c.updated_at), (t0, t1));
    assert_eq!(c.spec.name.as_str(), "renamed");
}

/// S30 (with S12): a saved spec lends its stored secrets to a test only of the same host, port,
/// database, user name and engine, with TLS not weaker and the CA unchanged under a verifying
/// mode; PATCH's "needs the password again" is the same rule without user name and engine.
#[test]
fn s30_stored_secrets_are_lent_only_to_the_saved_target() {
    let saved = {
        let mut d = draft();
        d.tls.mode = Some(TlsMode::VerifyFull);
        d.tls.channel_binding = Some(ChannelBinding::Require);
        d.validate().unwrap().0
    };
    let lend = |change: Setter<()>| {
        let mut d = draft();
        d.tls.mode = Some(TlsMode::VerifyFull);
        d.tls.channel_binding = Some(ChannelBinding::Require);
        change(&mut d, ());
        let to = d.validate().unwrap().0;
        (saved.may_lend_secrets_to(&to), saved.retargeted_by(&to))
    };
    // Same target, also renamed, re-described, re-tagged, or with stronger settings.
    assert_eq!(lend(|_, ()| {}), (true, false));
    assert_eq!(lend(|d, ()| d.name = "other-name".into()), (true, false));
    assert_eq!(
        lend(|d, ()| d.host = "DB.example.com".into()),
        (true, false)
    );
    assert_eq!(lend(|d, ()| d.tags = vec!["x".into()]), (true, false));
    // Another target, account or weaker TLS: refused; all but the account are S12's rule too.
    let cases: [(Setter<()>, bool); 7] = [
        (|d, ()| d.host = "127.0.0.9".into(), true),
        (|d, ()| d.port = Some(5433), true),
        (|d, ()| d.database = "other".into(), true),
        (|d, ()| d.username = "mallory".into(), false),
        (|d, ()| d.tls.mode = Some(TlsMode::Require), true),
        (
            |d, ()| d.tls.channel_binding = Some(ChannelBinding::Prefer),
            true,
        ),
        (|d, ()| d.tls.ca_cert_pem = Some(CERT.into()), true),
    ];
    for (i, (change, retargeted)) in cases.into_iter().enumerate() {
        assert_eq!(lend(change), (false, retargeted), "case {i}");
    }
}
