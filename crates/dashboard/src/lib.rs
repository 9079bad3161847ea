//! `serin-dashboard`: the web dashboard, as static assets compiled into the
//! binary (no Node toolchain, nothing to install, works offline).
//!
//! The page holds no data and no secret: it asks for a Serin token, keeps it
//! in the tab's `sessionStorage` (never in a URL, a cookie or the HTML) and
//! calls the control plane's public API with `Authorization: Bearer …`, like
//! the CLI — so what the page can do, a script can do, and the API's roles
//! (viewer, deployer, admin) decide what is allowed. Live updates read
//! `/v1/events` (Server-Sent Events) through `fetch`, which can carry the
//! header (`EventSource` cannot).
//!
//! Charts are drawn as inline SVG by `app.js` itself: a line of points
//! against a threshold is a few dozen lines, less than a vendored charting
//! library would weigh.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The page.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The application script.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// The style sheet (light and dark).
pub const APP_CSS: &str = include_str!("../assets/app.css");

/// Where the dashboard is served.
pub const PATH: &str = "/ui/";

/// Bytes a first visit downloads (before compression): page, script, styles.
pub fn page_weight() -> usize {
    INDEX_HTML.len() + APP_JS.len() + APP_CSS.len()
}

/// Only this origin's script and styles; no inline script, no framing, no
/// referrer (the API address never leaks to links).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The assets change with the binary; revalidation is cheap on loopback.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// The dashboard's routes: `/` and `/ui` redirect to `/ui/`, which serves the
/// page; `/ui/app.js` and `/ui/app.css` its assets. Generic over the state so
/// that it merges into any router.
pub fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to(PATH) }))
        .route("/ui", get(|| async { Redirect::to(PATH) }))
        .route(
            PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_weighs_under_200_kb() {
        let w = page_weight();
        assert!(w > 1000, "assets are embedded ({w} bytes)");
        assert!(w < 200 * 1024, "page weight {w} bytes exceeds 200 KB");
    }

    #[test]
    fn the_page_has_no_inline_script_and_no_token() {
        // The CSP forbids inline script; the page must not depend on one.
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(INDEX_HTML.contains(r#"<script src="app.js""#));
        assert!(!INDEX_HTML.contains("srn_"));
        // Nor inline style attributes (style-src 'self' drops them).
        assert!(!INDEX_HTML.contains("style=") && !APP_JS.contains("style="));
        // The token lives in sessionStorage, never in a URL or cookie.
        assert!(APP_JS.contains("sessionStorage"));
        assert!(!APP_JS.contains("document.cookie"));
    }
}
