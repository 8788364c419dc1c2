//! One TLS cluster with one user per `pg_hba.conf` method and transport, checked as a table:
//! who gets in, over which transport, and which SQLSTATE refuses the rest.

use datahub_testkit::{AuthMethod, PgCluster, ServerCert, Transport, User};
use tokio_postgres::config::ChannelBinding;

use crate::support::{
    connect_plain, connect_tls, sqlstate, tls_trusting, tls_with_client_cert, whoami,
};

/// SQLSTATE 28000: no `pg_hba.conf` line matched.
const NO_HBA_LINE: &str = "28000";
/// SQLSTATE 28P01: wrong password.
const BAD_PASSWORD: &str = "28P01";

#[derive(Debug, Clone, Copy)]
enum Via {
    Plain,
    Tls,
    TlsWithClientCert,
}

/// (user, password override, transport, expected: `Ok(TLS as seen by the server)` or
/// `Err(SQLSTATE)`).
type Case = (
    &'static str,
    Option<&'static str>,
    Via,
    Result<bool, &'static str>,
);

fn auth_cluster() -> PgCluster {
    PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(
            User::new("scram_user")
                .password("scram-pw")
                .auth(AuthMethod::ScramSha256),
        )
        .user(
            User::new("md5_user")
                .password("md5-pw")
                .auth(AuthMethod::Md5),
        )
        .user(
            User::new("clear_user")
                .password("clear-pw")
                .auth(AuthMethod::Password),
        )
        .user(User::new("trust_user").auth(AuthMethod::Trust))
        .user(User::new("cert_user").auth(AuthMethod::Cert))
        .user(
            User::new("ssl_only")
                .password("ssl-pw")
                .transport(Transport::SslOnly),
        )
        .user(
            User::new("no_ssl")
                .password("nossl-pw")
                .transport(Transport::NoSsl),
        )
        .database("appdb", "scram_user")
        .start()
        .unwrap()
}

#[tokio::test]
async fn each_auth_method_admits_its_user_and_refuses_the_rest() {
    let cluster = auth_cluster();
    let ca = cluster.ca_pem().unwrap().to_owned();
    let (cert_pem, key_pem) = cluster.client_cert("cert_user").unwrap();

    let cases: &[Case] = &[
        ("scram_user", None, Via::Tls, Ok(true)),
        ("scram_user", None, Via::Plain, Ok(false)),
        ("scram_user", Some("wrong"), Via::Tls, Err(BAD_PASSWORD)),
        ("md5_user", None, Via::Plain, Ok(false)),
        ("md5_user", Some("wrong"), Via::Plain, Err(BAD_PASSWORD)),
        ("clear_user", None, Via::Plain, Ok(false)),
        ("clear_user", Some("wrong"), Via::Plain, Err(BAD_PASSWORD)),
        ("trust_user", None, Via::Plain, Ok(false)),
        ("trust_user", None, Via::Tls, Ok(true)),
        ("cert_user", None, Via::TlsWithClientCert, Ok(true)),
        ("cert_user", None, Via::Plain, Err(NO_HBA_LINE)),
        ("ssl_only", None, Via::Tls, Ok(true)),
        ("ssl_only", None, Via::Plain, Err(NO_HBA_LINE)),
        ("no_ssl", None, Via::Plain, Ok(false)),
        ("no_ssl", None, Via::Tls, Err(NO_HBA_LINE)),
        ("nobody", Some("x"), Via::Plain, Err(NO_HBA_LINE)),
    ];
    for &(user, password, via, expected) in cases {
        let mut config = cluster.config(user, "postgres");
        if let Some(password) = password {
            config.password(password);
        }
        let result = match via {
            Via::Plain => connect_plain(&config).await,
            Via::Tls => connect_tls(&config, tls_trusting(&ca)).await,
            Via::TlsWithClientCert => {
                connect_tls(&config, tls_with_client_cert(&ca, &cert_pem, &key_pem)).await
            }
        };
        let case = format!("{user} {password:?} {via:?}");
        match (result, expected) {
            (Ok(client), Ok(tls)) => {
                assert_eq!(whoami(&client).await, (user.to_owned(), tls), "{case}")
            }
            (Err(err), Err(code)) => {
                assert_eq!(sqlstate(&err).as_deref(), Some(code), "{case}: {err}")
            }
            (Ok(_), Err(code)) => panic!("{case}: connected, expected SQLSTATE {code}"),
            (Err(err), Ok(_)) => panic!("{case}: refused: {err:?}"),
        }
    }
}

#[tokio::test]
async fn passwords_are_stored_as_the_method_needs_and_scram_over_tls_binds_the_channel() {
    let cluster = auth_cluster();
    let stored = cluster
        .psql(
            "postgres",
            "SELECT rolname || ':' || CASE WHEN rolpassword LIKE 'md5%' THEN 'md5' \
             WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram' END FROM pg_authid \
             WHERE rolname IN ('md5_user', 'scram_user') ORDER BY rolname",
        )
        .unwrap();
    // md5 users really hold an md5 hash (so the server runs md5, not SCRAM); others SCRAM.
    assert_eq!(stored.trim(), "md5_user:md5\nscram_user:scram");

    // SCRAM-SHA-256-PLUS: TLS channel binding works end to end (verify-full, by IP SAN).
    let mut config = cluster.config("scram_user", "appdb");
    config.channel_binding(ChannelBinding::Require);
    let client = connect_tls(&config, tls_trusting(cluster.ca_pem().unwrap()))
        .await
        .unwrap();
    let row = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "appdb");
    // The database owner can create tables in it.
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();

    // verify-full by DNS name: dial 127.0.0.1 while checking the certificate for `localhost`.
    let mut by_name = tokio_postgres::Config::new();
    by_name
        .host("localhost")
        .hostaddr(std::net::IpAddr::from([127, 0, 0, 1]))
        .port(cluster.port())
        .user("scram_user")
        .password(cluster.password("scram_user").unwrap())
        .dbname("appdb");
    let client = connect_tls(&by_name, tls_trusting(cluster.ca_pem().unwrap()))
        .await
        .unwrap();
    assert_eq!(whoami(&client).await, ("scram_user".to_owned(), true));
}

#[tokio::test]
async fn url_and_config_carry_the_users_credentials() {
    let cluster = PgCluster::builder()
        .user(User::new("url_user").password("p@ss word/é"))
        .start()
        .unwrap();
    let url = cluster.url("url_user", "postgres");
    assert_eq!(
        url,
        format!(
            "postgres://url_user:p%40ss%20word%2F%C3%A9@127.0.0.1:{}/postgres",
            cluster.port()
        )
    );
    let config: tokio_postgres::Config = url.parse().unwrap();
    let client = connect_plain(&config).await.unwrap();
    assert_eq!(whoami(&client).await, ("url_user".to_owned(), false));

    // The superuser reaches the server over the unix socket only.
    let (client, connection) = cluster
        .superuser_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT current_setting('listen_addresses')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "127.0.0.1");
    let err = connect_plain(&cluster.config("postgres", "postgres"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some(NO_HBA_LINE));
}
