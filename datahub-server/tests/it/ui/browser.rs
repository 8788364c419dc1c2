//! The WebDriver side: one chromedriver per test, browser sessions, and the page helpers the
//! scenarios share (finders by accessible name, polling waits, keys, colour scheme, screenshots).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::{Element, ElementRef};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::{Site, WAIT, target_dir};

/// Debian's browser and its driver (packages `chromium` and `chromium-driver`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C key of an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The two colour schemes a page must work in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Light,
    Dark,
}

impl Scheme {
    pub const ALL: [Scheme; 2] = [Scheme::Light, Scheme::Dark];

    pub fn name(self) -> &'static str {
        match self {
            Scheme::Light => "light",
            Scheme::Dark => "dark",
        }
    }
}

/// A chromedriver process on a free loopback port, in a process group of its own with the
/// browsers it starts: dropping it (also when a test panics) kills the whole group, then
/// removes the browsers' profile folders.
pub(crate) struct Driver {
    child: Child,
    url: String,
    profiles: Mutex<Vec<TempDir>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (`process_group(0)`): chromedriver and every
        // browser process it started, and nothing else. Spelled `-s KILL -- -<pgid>`: procps-ng
        // 4.0.2 (Debian 12) reads `kill -KILL -<pgid>` as a signal to every process.
        let group = self.child.id();
        if group > 1 {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--"])
                .arg(format!("-{group}"))
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver and waits until it accepts connections. Panics with what to install
    /// when Chromium or chromedriver is missing.
    pub async fn start() -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's `{package}` package \
                 (`apt-get install chromium chromium-driver`; ./scripts/test installs them)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("chromedriver exited at start with {status}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}/"),
            profiles: Mutex::new(Vec::new()),
        }
    }

    /// A new browser session (a fresh profile) on `site`, 1280 × 900, light scheme.
    pub async fn browser(&self, site: &Site) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        self.profiles.lock().unwrap().push(profile);
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver did not start {CHROMIUM}: {e}"));
        let browser = Browser {
            client,
            base: site.base.clone(),
            console: Mutex::new(Vec::new()),
        };
        browser.resize(1280, 900).await;
        browser
    }
}

/// One browser session on the site.
pub(crate) struct Browser {
    pub client: Client,
    base: String,
    /// Every console message read so far (the driver hands each out once).
    console: Mutex<Vec<String>>,
}

/// A chromedriver command outside the W3C set: `POST /session/{id}/<path>` with a JSON body.
#[derive(Debug)]
struct Extension {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for Extension {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.body.to_string()))
    }
}

/// Finds a control by its accessible name: `arguments = [kind, name]`, kind `field` (input,
/// select, textarea: the name from `aria-labelledby`, `aria-label` or the `<label>`s), `button`
/// (button, submit, `role=button`, `summary`), `link` (`a[href]`) or `control` (a button or a
/// link); a visible match first.
const FIND_BY_NAME: &str = r#"
const [kind, wanted] = arguments;
const norm = s => (s || '').replace(/\s+/g, ' ').trim();
const nameOf = el => {
  const by = el.getAttribute('aria-labelledby');
  if (by) return norm(by.split(/\s+/).map(id => (document.getElementById(id) || {}).textContent || '').join(' '));
  const aria = el.getAttribute('aria-label');
  if (aria) return norm(aria);
  if (el.labels && el.labels.length) return norm(Array.from(el.labels).map(l => l.textContent).join(' '));
  if (el.tagName === 'INPUT') return norm(el.value);
  return norm(el.textContent);
};
const selectors = {
  field: 'input:not([type=hidden]):not([type=submit]):not([type=button]), select, textarea',
  button: 'button, input[type=submit], input[type=button], [role=button], summary',
  link: 'a[href]',
  control: 'button, input[type=submit], input[type=button], [role=button], summary, a[href]',
};
const all = Array.from(document.querySelectorAll(selectors[kind]));
const visible = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
const hits = all.filter(el => nameOf(el) === wanted);
const hit = hits.find(visible) || hits[0] || null;
return {hit, names: all.filter(visible).map(nameOf)};
"#;

/// The accessible name of the focused element (same rules as above) and whether it shows a
/// focus indicator (an outline or a box shadow).
const FOCUSED: &str = r#"
const el = document.activeElement;
if (!el || el === document.body) return {name: '', tag: 'body', indicator: false};
const norm = s => (s || '').replace(/\s+/g, ' ').trim();
let name;
const aria = el.getAttribute('aria-label');
if (aria) name = norm(aria);
else if (el.labels && el.labels.length) name = norm(Array.from(el.labels).map(l => l.textContent).join(' '));
else if (el.tagName === 'INPUT') name = norm(el.value);
else name = norm(el.textContent);
const style = getComputedStyle(el);
const indicator = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) || style.boxShadow !== 'none';
return {name, tag: el.tagName.toLowerCase(), indicator};
"#;

/// The status words of the list row whose name link reads `arguments[0]`; null without one.
const ROW_STATUS: &str = r#"
const [name] = arguments;
for (const tr of document.querySelectorAll('table tr')) {
  const link = Array.from(tr.querySelectorAll('a[href]')).find(a => a.textContent.trim() === name);
  if (!link) continue;
  const text = (tr.innerText || tr.textContent).toLowerCase();
  return text.match(/\b(healthy|degraded|down|unknown)\b/g) || [];
}
return null;
"#;

impl Browser {
    /// The site's URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Navigates to `path` (a full page load).
    pub async fn goto(&self, path: &str) {
        self.client.goto(&self.url(path)).await.unwrap();
    }

    /// Goes to `path` inside the running app, as its own links do (History API and the
    /// router's `popstate`), without a page load. The page walk uses it: a quick series of full
    /// loads stalls on the previous pages' event streams (see `reload`).
    pub async fn visit(&self, path: &str) {
        self.js(
            "history.pushState(null, '', arguments[0]); \
             window.dispatchEvent(new PopStateEvent('popstate'));",
            vec![json!(path)],
        )
        .await;
    }

    /// The current path and query.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Runs `script` (a function body) with `args`.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.js(
            "return document.body ? document.body.innerText : '';",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn element(&self, value: &Value) -> Option<Element> {
        let id = value.get(ELEMENT_KEY)?.as_str()?;
        Some(Element::from_element_id(
            self.client.clone(),
            ElementRef::from(id.to_owned()),
        ))
    }

    /// The control of `kind` named `name` now, if any (a visible one first).
    pub async fn find_named(&self, kind: &str, name: &str) -> (Option<Element>, Vec<String>) {
        let found = self.js(FIND_BY_NAME, vec![json!(kind), json!(name)]).await;
        let names = found["names"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (self.element(&found["hit"]), names)
    }

    /// Whether a visible control of `kind` named `name` exists now.
    pub async fn has(&self, kind: &str, name: &str) -> bool {
        let (hit, names) = self.find_named(kind, name).await;
        hit.is_some() && names.iter().any(|n| n == name)
    }

    /// Waits for the control of `kind` named `name`.
    pub async fn named(&self, kind: &str, name: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            let (hit, names) = self.find_named(kind, name).await;
            if let Some(hit) = hit {
                return hit;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {kind} named {name:?} on {} after {WAIT:?}; visible {kind}s: {names:?}\npage text:\n{}",
                    self.path().await,
                    self.text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The form field labelled `label`.
    pub async fn field(&self, label: &str) -> Element {
        self.named("field", label).await
    }

    /// Clicks the button named `name`.
    pub async fn click_button(&self, name: &str) {
        self.named("button", name).await.click().await.unwrap();
    }

    /// Clicks the link named `name`.
    pub async fn click_link(&self, name: &str) {
        self.named("link", name).await.click().await.unwrap();
    }

    /// Replaces the value of the field labelled `label` by typing `text`.
    pub async fn fill(&self, label: &str, text: &str) {
        let field = self.field(label).await;
        field.clear().await.unwrap();
        if !text.is_empty() {
            field.send_keys(text).await.unwrap();
        }
    }

    /// The current value of the field labelled `label`.
    pub async fn value(&self, label: &str) -> String {
        self.field(label)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// Polls `check` every 100 ms until it gives a value; panics after `timeout` with `what`,
    /// the path and the page's text.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                let main = self
                    .js(
                        "const m = document.querySelector('main'); \
                         return m ? m.outerHTML.slice(0, 3000) : 'no <main>';",
                        vec![],
                    )
                    .await;
                panic!(
                    "timed out after {timeout:?} waiting for {what} on {}\npage text:\n{}\n\
                     main: {}\nconsole:\n{}",
                    self.path().await,
                    self.text().await,
                    main.as_str().unwrap_or_default(),
                    self.console().await.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's visible text contains `needle`.
    pub async fn wait_text(&self, needle: &str) {
        self.wait_for(&format!("the text {needle:?}"), WAIT, async || {
            self.text().await.contains(needle).then_some(())
        })
        .await;
    }

    /// Waits until the path (without query) is `path`.
    pub async fn wait_path(&self, path: &str) {
        self.wait_for(&format!("the path {path}"), WAIT, async || {
            let now = self.path().await;
            (now.split('?').next() == Some(path)).then_some(())
        })
        .await;
    }

    /// Waits until the page has settled: an `<h1>` with text, and the DOM unchanged over two
    /// polls 150 ms apart (lists and panels filled from the API).
    pub async fn settle(&self) {
        let snapshot = async || {
            self.js(
                "const h = document.querySelector('h1'); \
                 return (h && h.textContent.trim() ? 'h1:' : 'no h1:') + document.body.innerHTML.length + ':' + document.body.innerText;",
                vec![],
            )
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
        };
        let mut last = String::new();
        self.wait_for("the page to settle", WAIT, async || {
            let now = snapshot().await;
            let settled = now.starts_with("h1:") && now == last;
            last = now;
            if !settled {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            settled.then_some(())
        })
        .await;
    }

    /// Signs in through the sign-in page and waits to leave it.
    pub async fn sign_in(&self, username: &str, password: &str) {
        if !self.path().await.starts_with("/sign-in") {
            self.goto("/sign-in").await;
        }
        self.fill("Username", username).await;
        self.fill("Password", password).await;
        self.click_button("Sign in").await;
        self.wait_for("the sign-in to finish", WAIT, async || {
            (!self.path().await.starts_with("/sign-in")).then_some(())
        })
        .await;
    }

    /// Signs out by forgetting the session cookie (the UI's own button is tested in `sign_in`).
    pub async fn forget_session(&self) {
        self.client.delete_all_cookies().await.unwrap();
    }

    /// The status words shown in the list row of the connection named `name`; `None` when no
    /// row shows it.
    pub async fn row_status(&self, name: &str) -> Option<Vec<String>> {
        let words = self.js(ROW_STATUS, vec![json!(name)]).await;
        words.as_array().map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(str::to_owned))
                .collect()
        })
    }

    /// Waits until the list row of `name` shows exactly the status word `status`.
    pub async fn wait_row_status(&self, name: &str, status: &str, timeout: Duration) {
        self.wait_for(
            &format!("the row {name:?} to show {status:?}"),
            timeout,
            async || {
                let words = self.row_status(name).await?;
                (words.iter().all(|w| w == status) && !words.is_empty()).then_some(())
            },
        )
        .await;
    }

    /// Puts a marker on `window`, which only a full page load removes.
    pub async fn set_reload_marker(&self) {
        self.js("window.__uiTestMarker = 'kept';", vec![]).await;
    }

    /// Whether the marker set by [`Self::set_reload_marker`] is still there (no reload since).
    pub async fn reload_marker_kept(&self) -> bool {
        self.js("return window.__uiTestMarker === 'kept';", vec![])
            .await
            .as_bool()
            .unwrap_or(false)
    }

    /// Every browser console message so far (level and text).
    pub async fn console(&self) -> Vec<String> {
        let fresh = self
            .client
            .issue_cmd(Extension {
                path: "se/log",
                body: json!({"type": "browser"}),
            })
            .await
            .unwrap_or(Value::Null);
        let mut console = self.console.lock().unwrap();
        for entry in fresh.as_array().into_iter().flatten() {
            console.push(format!(
                "{} {}",
                entry["level"].as_str().unwrap_or("?"),
                entry["message"].as_str().unwrap_or("")
            ));
        }
        console.clone()
    }

    /// Console messages of level SEVERE (script errors, CSP refusals, server errors), except
    /// Chrome's note of each 4xx answer to a request (a signed-out `auth/me` is a 401 by design).
    pub async fn console_errors(&self) -> Vec<String> {
        self.console()
            .await
            .into_iter()
            .filter(|m| {
                m.starts_with("SEVERE")
                    && !m.contains(
                        "Failed to load resource: the server responded with a status of 4",
                    )
            })
            .collect()
    }

    /// Runs a Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.client
            .issue_cmd(Extension {
                path: "goog/cdp/execute",
                body: json!({"cmd": cmd, "params": params}),
            })
            .await
            .unwrap_or_else(|e| panic!("CDP {cmd} failed: {e}"))
    }

    /// Emulates `prefers-color-scheme: <scheme>` (kept across navigations in this tab).
    pub async fn scheme(&self, scheme: Scheme) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"media": "", "features": [{"name": "prefers-color-scheme", "value": scheme.name()}]}),
        )
        .await;
        let dark = self
            .js(
                "return matchMedia('(prefers-color-scheme: dark)').matches;",
                vec![],
            )
            .await;
        assert_eq!(dark, json!(scheme == Scheme::Dark), "emulation not applied");
    }

    /// Makes the viewport (not the window) `width` × `height` CSS pixels.
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
        let inner = self
            .js("return [window.innerWidth, window.innerHeight];", vec![])
            .await;
        let (w, h) = (
            inner[0].as_u64().unwrap() as u32,
            inner[1].as_u64().unwrap() as u32,
        );
        if (w, h) != (width, height) {
            self.client
                .set_window_size(
                    width + (width - w.min(width)),
                    height + (height - h.min(height)),
                )
                .await
                .unwrap();
        }
        let inner = self.js("return window.innerWidth;", vec![]).await;
        assert_eq!(inner, json!(width), "viewport width");
    }

    /// When the page scrolls sideways: `scrollWidth`, `innerWidth`, and the innermost elements
    /// reaching past the right edge (tag, classes, right edge), to say what to fix.
    pub async fn horizontal_overflow(&self) -> Option<(u64, u64, Vec<String>)> {
        let sizes = self
            .js(
                "const w = window.innerWidth; \
                 const out = Array.from(document.querySelectorAll('body *')).filter(e => { \
                   const r = e.getBoundingClientRect(); return r.width > 0 && r.right > w + 0.5; }); \
                 const inner = out.filter(e => !out.some(o => o !== e && e.contains(o))); \
                 return [document.documentElement.scrollWidth, w, inner.slice(0, 5).map(e => \
                   e.tagName.toLowerCase() + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : '') \
                   + ' right=' + Math.round(e.getBoundingClientRect().right))];",
                vec![],
            )
            .await;
        let (scroll, inner) = (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap());
        let culprits = sizes[2]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        (scroll > inner).then_some((scroll, inner, culprits))
    }

    /// Writes a screenshot of the whole page (beyond the viewport, at the viewport's width) to
    /// `<target>/ui-screenshots/<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = target_dir().join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let size = self
            .js(
                "return [window.innerWidth, Math.max(document.documentElement.scrollHeight, window.innerHeight)];",
                vec![],
            )
            .await;
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Presses each key in turn (down and up) through WebDriver key actions.
    pub async fn keys(&self, keys: &[char]) {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for &key in keys {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client.perform_actions(actions).await.unwrap();
    }

    /// Types `text` through key actions (a newline is Enter).
    pub async fn type_text(&self, text: &str) {
        let keys: Vec<char> = text
            .chars()
            .map(|c| if c == '\n' { Key::Enter.into() } else { c })
            .collect();
        for chunk in keys.chunks(200) {
            self.keys(chunk).await;
        }
    }

    /// The accessible name and tag of the focused element, and whether it shows a focus ring.
    pub async fn focused(&self) -> (String, String, bool) {
        let f = self.js(FOCUSED, vec![]).await;
        (
            f["name"].as_str().unwrap_or_default().to_owned(),
            f["tag"].as_str().unwrap_or_default().to_owned(),
            f["indicator"].as_bool().unwrap_or(false),
        )
    }

    /// Presses Tab until the focused element is named `name` (at most 60 times); returns the
    /// names of elements focused on the way that showed no focus indicator.
    pub async fn tab_to(&self, name: &str) -> Vec<String> {
        let mut unmarked = Vec::new();
        let mut passed = Vec::new();
        for _ in 0..60 {
            self.keys(&[Key::Tab.into()]).await;
            let (now, tag, indicator) = self.focused().await;
            if !indicator && tag != "body" {
                unmarked.push(format!("{tag} {now:?}"));
            }
            if now == name {
                return unmarked;
            }
            passed.push(now);
        }
        panic!(
            "Tab never reached {name:?} on {}; focus went through {passed:?}",
            self.path().await
        );
    }
}
