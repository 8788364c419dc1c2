//! Each bad server certificate fails a verify-full client for its own reason, and only that
//! reason: the same cluster is reachable once the one fault is taken away.

use datahub_testkit::{PgCluster, ServerCert, User, WRONG_HOST};
use rustls::{CertificateError, Error as TlsError};

use crate::support::{connect_tls, rustls_error, tls_trusting, whoami};

fn cluster_with(server_cert: ServerCert) -> PgCluster {
    PgCluster::builder()
        .tls(server_cert)
        .user(User::new("app").password("app-pw"))
        .start()
        .unwrap()
}

async fn verify_full_error(cluster: &PgCluster, ca_pem: &str) -> TlsError {
    let err = connect_tls(&cluster.config("app", "postgres"), tls_trusting(ca_pem))
        .await
        .unwrap_err();
    rustls_error(&err).unwrap_or_else(|| panic!("not a rustls error: {err:?}"))
}

#[tokio::test]
async fn other_ca_is_an_unknown_issuer() {
    let cluster = cluster_with(ServerCert::OtherCa);
    assert_eq!(cluster.server_cert(), Some(ServerCert::OtherCa));
    let err = verify_full_error(&cluster, cluster.ca_pem().unwrap()).await;
    assert!(
        matches!(
            err,
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );
    // Trusting the other CA instead succeeds: names and dates are fine.
    let client = connect_tls(
        &cluster.config("app", "postgres"),
        tls_trusting(cluster.other_ca_pem().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(whoami(&client).await, ("app".to_owned(), true));
}

#[tokio::test]
async fn wrong_host_is_a_name_mismatch() {
    let cluster = cluster_with(ServerCert::WrongHost);
    let err = verify_full_error(&cluster, cluster.ca_pem().unwrap()).await;
    assert!(
        matches!(
            err,
            TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );
    assert!(format!("{err:?}").contains(WRONG_HOST), "{err:?}");
}

#[tokio::test]
async fn expired_is_expired() {
    let cluster = cluster_with(ServerCert::Expired);
    let err = verify_full_error(&cluster, cluster.ca_pem().unwrap()).await;
    assert!(
        matches!(
            err,
            TlsError::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_key_is_private_to_the_server_user() {
    use std::os::unix::fs::MetadataExt;
    let cluster = cluster_with(ServerCert::Valid);
    let key = std::fs::metadata(cluster.root_dir().join("tls/server.key")).unwrap();
    assert_eq!(key.mode() & 0o777, 0o600);
    let data = std::fs::metadata(cluster.data_dir()).unwrap();
    assert_eq!(
        key.uid(),
        data.uid(),
        "key and data folder have the same owner"
    );
    // A plaintext-only cluster exposes no CA and issues no client certificates.
    let plain = PgCluster::builder().start().unwrap();
    assert_eq!(plain.ca_pem(), None);
    assert_eq!(
        plain.client_cert("app").unwrap_err().kind(),
        datahub_testkit::ErrorKind::InvalidInput
    );
}
