//! axe-core in the page: fetched at test time from the npm registry with `npm pack` (never
//! committed), checked against a pinned SHA-512 of the tarball, cached under the target folder,
//! injected through WebDriver (a script run by the driver is not subject to the page's CSP) and
//! run against WCAG 2.0/2.1 A and AA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

use super::{Browser, target_dir};

/// The pinned release and the SRI integrity of its npm tarball (`npm view axe-core@4.14.1
/// dist.integrity`).
const VERSION: &str = "4.14.1";
const INTEGRITY: &str = "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==";

/// Runs axe on the document and hands back the violations, trimmed to what a report needs.
const RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, {
  runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
  resultTypes: ['violations'],
}).then(r => done(r.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.map(n => ({target: n.target, impact: n.impact})),
})))).catch(e => done({error: String(e)}));
"#;

/// The source of `axe.min.js`, fetched once per test process.
fn source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let dir = target_dir()
            .join("ui-test")
            .join(format!("axe-core-{VERSION}"));
        let file = dir.join("axe.min.js");
        if !file.exists() {
            fetch(&dir, &file);
        }
        std::fs::read_to_string(&file).unwrap()
    })
}

/// `npm pack` into a temporary folder beside `dir`, the integrity check, then `tar` extracts
/// `package/axe.min.js`, renamed into place (so a concurrent run never reads half a file).
fn fetch(dir: &Path, file: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let work = tempfile::tempdir_in(dir).unwrap();
    let npm = Command::new("npm")
        .args(["pack", &format!("axe-core@{VERSION}"), "--silent"])
        .arg("--pack-destination")
        .arg(work.path())
        .output()
        .unwrap_or_else(|e| panic!("axe-core is fetched with `npm pack`, which cannot run: {e}"));
    assert!(
        npm.status.success(),
        "npm pack axe-core@{VERSION} failed ({}): {}",
        npm.status,
        String::from_utf8_lossy(&npm.stderr)
    );
    let tarball: PathBuf = work.path().join(format!("axe-core-{VERSION}.tgz"));
    let bytes = std::fs::read(&tarball)
        .unwrap_or_else(|e| panic!("npm pack wrote no {}: {e}", tarball.display()));
    let got = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes))
    );
    assert_eq!(
        got, INTEGRITY,
        "the axe-core {VERSION} tarball from the registry does not match the pinned integrity: \
         refusing to run it"
    );
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(work.path())
        .arg("package/axe.min.js")
        .status()
        .unwrap();
    assert!(tar.success(), "tar could not extract axe.min.js");
    std::fs::rename(work.path().join("package/axe.min.js"), file).unwrap();
}

/// Serious and critical violations of WCAG 2.0/2.1 A and AA on the current page, one line each
/// (rule, impact, help, the offending elements' selectors).
pub(crate) async fn serious_violations(browser: &Browser) -> Vec<String> {
    let loaded = browser
        .js("return typeof window.axe === 'object';", vec![])
        .await;
    if loaded != json!(true) {
        browser
            .js(&format!("{}\nreturn typeof window.axe;", source()), vec![])
            .await;
    }
    let result = browser
        .client
        .execute_async(RUN, vec![])
        .await
        .unwrap_or_else(|e| panic!("axe did not run: {e}"));
    let Value::Array(violations) = result else {
        panic!("axe failed: {result}");
    };
    violations
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| {
            let targets: Vec<String> = v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| n["target"].to_string())
                .collect();
            format!(
                "{} ({}): {} at {}",
                v["id"].as_str().unwrap_or("?"),
                v["impact"].as_str().unwrap_or("?"),
                v["help"].as_str().unwrap_or("?"),
                targets.join(", ")
            )
        })
        .collect()
}
