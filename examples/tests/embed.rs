//! Runs the `embed` example's logic and checks what it shows: the viewer sees exactly the one
//! connection granted, the totals differ, and no password reaches the output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use datahub_examples::{BILLING_PASSWORD, ORDERS_PASSWORD, VIEWER_PASSWORD, run};

#[tokio::test]
async fn embed_shows_visibility_and_never_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("example");
    let mut out = Vec::new();
    let summary = run(&data_dir, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();

    assert_eq!(summary.admin_total, 2, "{text}");
    assert_eq!(summary.admin_names, ["billing-db", "orders-db"], "{text}");
    assert_eq!(summary.viewer_total, 1, "{text}");
    assert_eq!(summary.viewer_names, ["orders-db"], "{text}");

    for secret in [ORDERS_PASSWORD, BILLING_PASSWORD, VIEWER_PASSWORD] {
        assert!(!text.contains(secret), "a password was printed:\n{text}");
    }
    // The admin's generated password never leaves `run`; the credentials are shown redacted.
    assert!(text.contains("password  set (not shown)"), "{text}");
    assert!(
        text.contains("dsn       postgresql://orders_app:***@127.0.0.1:5432/orders?"),
        "{text}"
    );
    assert!(text.contains("as admin (2 in all)"), "{text}");
    assert!(text.contains("as vera (1 in all)"), "{text}");
    assert!(text.contains("refused"), "{text}");

    // The key file is private to its owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data_dir.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A second run on the same folder is refused rather than overwriting the key file.
    let err = run(&data_dir, &mut Vec::new()).await.unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}
