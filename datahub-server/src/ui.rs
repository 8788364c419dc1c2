//! The bundled web UI: the files of `datahub-server/ui/` compiled into the binary and served.
//!
//! - `GET /ui/<build>/<file>`: one of the UI's files. `<build>` is a hash over every file's
//!   content, so a file's URL changes whenever any file does, and the answer may be cached for
//!   a year (`immutable`); an ETag (the file's SHA-256) answers revalidation with 304. A request
//!   naming another build (a page loaded before an upgrade) still gets today's file, but with
//!   `no-cache`, so no cache keeps today's bytes under yesterday's name.
//! - Every browser navigation to a path that is not the API's ([`is_page`]): `index.html`, with
//!   `%ASSETS%` replaced by `/ui/<build>`, revalidated on every load (`no-cache` + ETag). The
//!   page's own script routes the path (History API), so a reload or a pasted deep link shows the
//!   same page.
//!
//! Compression (gzip, brotli) and the security headers (the strict CSP among them) are layers of
//! [`crate::app`]. The UI reaches the server only through the public `/api/v1`.
//!
//! It must never: read the UI from the disk at run time, serve a file outside the embedded set,
//! or answer an API path (`/api/…`) with the page.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The UI's files, compiled in (in debug builds too).
#[derive(Embed)]
#[folder = "ui/"]
struct Files;

/// The path prefix of the UI's files.
pub const PREFIX: &str = "/ui";

/// What [`PREFIX`] pages name: the build hash and the page with it filled in.
#[derive(Debug)]
struct Build {
    /// Hex of the first 12 bytes of SHA-256 over every file's path and hash.
    id: String,
    /// `index.html` with `%ASSETS%` replaced by `/ui/<id>`.
    index: Vec<u8>,
    /// The index page's ETag.
    index_etag: HeaderValue,
}

static BUILD: LazyLock<Build> = LazyLock::new(|| {
    let mut names: Vec<Cow<'static, str>> = Files::iter().collect();
    names.sort();
    let mut all = Sha256::new();
    for name in &names {
        if let Some(file) = Files::get(name) {
            all.update(name.as_bytes());
            all.update([0]);
            all.update(file.metadata.sha256_hash());
        }
    }
    let id = hex(&all.finalize()[..12]);
    let assets = format!("{PREFIX}/{id}");
    let index = Files::get("index.html")
        .map(|f| String::from_utf8_lossy(&f.data).replace("%ASSETS%", &assets))
        .unwrap_or_default()
        .into_bytes();
    let index_etag = etag(&Sha256::digest(&index));
    Build {
        id,
        index,
        index_etag,
    }
});

/// The router of the UI's files (`/ui/{build}/{*file}`).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(&format!("{PREFIX}/{{build}}/{{*file}}"), get(asset))
}

/// The id of this build's files, as in their URLs.
pub fn build_id() -> &'static str {
    &BUILD.id
}

/// Whether a request is a browser's navigation to a page of the UI: `GET`/`HEAD`, asking for
/// HTML, and not for the API, the UI's files or the operational endpoints.
pub fn is_page(request: &Request) -> bool {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let path = request.uri().path();
    let reserved = ["/api/", "/ui/", "/healthz", "/readyz", "/metrics"];
    if path == "/api" || reserved.iter().any(|prefix| path.starts_with(prefix)) {
        return false;
    }
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// `index.html` for a page navigation.
pub fn page(headers: &HeaderMap) -> Response {
    let build = &*BUILD;
    if build.index.is_empty() {
        // Only a build without `ui/index.html` gets here; tests keep that from shipping.
        return ApiError::not_found().into_response();
    }
    respond(
        headers,
        &build.index_etag,
        "text/html; charset=utf-8",
        "no-cache",
        build.index.clone(),
    )
}

/// One of the UI's files.
async fn asset(Path((build, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some(found) = Files::get(&file) else {
        return ApiError::not_found().into_response();
    };
    let Some(content_type) = content_type(&file) else {
        return ApiError::not_found().into_response();
    };
    let cache = if build == BUILD.id {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let tag = etag(&found.metadata.sha256_hash());
    if file == "index.html" {
        // The page is served at its paths, with its placeholders filled in.
        return page(&headers);
    }
    respond(&headers, &tag, content_type, cache, found.data.into_owned())
}

/// A 200 with the body, or a 304 when the client holds this ETag already.
fn respond(
    headers: &HeaderMap,
    tag: &HeaderValue,
    content_type: &'static str,
    cache: &'static str,
    body: Vec<u8>,
) -> Response {
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|held| {
            held.split(',')
                .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == tag)
        });
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Body::from(body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, tag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// The content type of a UI file by its extension; `None` for a kind the UI does not serve.
fn content_type(file: &str) -> Option<&'static str> {
    let ext = file.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => return None,
    })
}

/// A strong ETag from a digest.
fn etag(digest: &[u8]) -> HeaderValue {
    let value = format!("\"{}\"", hex(&digest[..digest.len().min(16)]));
    // Hex digits and quotes are always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Every embedded file with its size in bytes, for the page-weight test and notes.
pub fn files() -> Vec<(String, usize)> {
    let mut all: Vec<(String, usize)> = Files::iter()
        .filter_map(|name| Files::get(&name).map(|f| (name.into_owned(), f.data.len())))
        .collect();
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_a_closed_set() {
        assert_eq!(
            content_type("app.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            content_type("pages/list.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(content_type("style.css"), Some("text/css; charset=utf-8"));
        assert_eq!(content_type("README"), None);
        assert_eq!(content_type("x.exe"), None);
    }

    #[test]
    fn pages_exclude_the_api_and_assets() {
        let req = |method: Method, path: &str, accept: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .header(header::ACCEPT, accept)
                .body(Body::empty())
                .unwrap()
        };
        let html = "text/html,application/xhtml+xml,*/*;q=0.8";
        assert!(is_page(&req(Method::GET, "/", html)));
        assert!(is_page(&req(Method::GET, "/connections/abc/edit", html)));
        assert!(is_page(&req(Method::HEAD, "/audit?page=2", html)));
        assert!(!is_page(&req(Method::POST, "/connections", html)));
        assert!(!is_page(&req(
            Method::GET,
            "/connections",
            "application/json"
        )));
        assert!(!is_page(&req(Method::GET, "/api/v1/nothing", html)));
        assert!(!is_page(&req(Method::GET, "/api", html)));
        assert!(!is_page(&req(Method::GET, "/ui/x/app.js", html)));
        assert!(!is_page(&req(Method::GET, "/metrics", html)));
    }
}
