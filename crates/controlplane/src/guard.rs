//! The API's promise that every error is JSON, and checks of request fields
//! that reach the file system. axum's own rejections (a body over 2 MB → 413,
//! a wrong content type → 415, bad JSON → 400/422) answer `text/plain`; the
//! layer here rewrites any non-JSON error into `{"error": "…"}` with the same
//! status.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Error bodies larger than this are passed on as they are (axum's are a
/// line of text).
const MAX_REWRITE: usize = 64 * 1024;

/// Longest file name `/v1/apply` accepts, in bytes: the file system's 255
/// less room for the temporary name written first (`.NAME.serin-apply`).
pub const MAX_FILE_NAME: usize = 240;

/// Wraps `router` (the API and the flag server on its address) with
/// [`json_errors`].
pub fn layer(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(json_errors))
}

/// Rewrites a 4xx/5xx answer whose body is not JSON into `{"error": TEXT}`.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
    if is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REWRITE).await else {
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(format!("{{\"error\":\"{status}\"}}")));
    };
    let text = String::from_utf8_lossy(&bytes);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.trim().to_string()
    };
    let json = serde_json::json!({ "error": message }).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json))
}

/// Why `name` cannot be the file `/v1/apply` writes (`None`: it can). Only
/// its last component is used; it must be a plain, printable name the file
/// system accepts.
pub fn bad_file_name(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or_default();
    if base.is_empty() || base == "." || base == ".." {
        return Some("name must end in a file name".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Some(format!(
            "name must not contain control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    if base.len() > MAX_FILE_NAME {
        return Some(format!(
            "file name is {} bytes long; at most {MAX_FILE_NAME} are allowed",
            base.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(bad_file_name("app.yaml"), None);
        assert_eq!(bad_file_name("dir/app.yaml"), None);
        assert!(bad_file_name("a\0b.yaml").is_some());
        assert!(bad_file_name("a\nb.yaml").is_some());
        assert!(bad_file_name(&"x".repeat(300)).is_some());
        assert_eq!(bad_file_name(&"x".repeat(MAX_FILE_NAME)), None);
        assert!(bad_file_name("dir/").is_some());
        assert!(bad_file_name("..").is_some());
    }
}
