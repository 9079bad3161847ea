//! `GET /sdk/v1/flags`: the flag definitions of the caller's environment, as a flagd
//! document, for server-side SDKs that evaluate locally (`serin-flags-sdk`). Server keys
//! only: definitions carry targeting rules (user lists, countries) that browsers and mobile
//! apps (client keys) must not see.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::keys::KeyKind;
use crate::state::Shared;
use crate::{ApiError, json_response};

/// Path of the SDK definitions endpoint.
pub const SDK_FLAGS_PATH: &str = "/sdk/v1/flags";

/// The ETag of a flag-configuration version: the version quoted (the SSE events' `etag` is
/// the same version unquoted, so an SDK can skip a refetch it does not need).
fn etag(version: &str) -> String {
    format!("\"{version}\"")
}

/// `GET /sdk/v1/flags`: `{"flags": {key: definition}}` with `ETag`; `If-None-Match` → 304.
pub(crate) async fn flags(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let env = match shared.authenticate(&headers) {
        Err(e) => return e.into_response(),
        Ok(None) => shared.default_environment.clone(),
        Ok(Some(k)) if k.kind == KeyKind::Server => k.environment.clone(),
        Ok(Some(k)) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                format!(
                    "a {} key cannot read flag definitions; use a server key",
                    k.kind.as_str()
                ),
            )
            .into_response();
        }
    };
    let snap = shared.snapshot(&env);
    let tag = etag(&snap.version);
    let tag_header = HeaderValue::from_str(&tag).ok();
    let env_header = HeaderValue::from_str(&env).ok();
    let mut r = if crate::ofrep::if_none_match(&headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        json_response(StatusCode::OK, &json!({ "flags": snap.defs }))
    };
    if let Some(t) = tag_header {
        r.headers_mut().insert(header::ETAG, t);
    }
    if let Some(e) = env_header {
        r.headers_mut().insert("x-serin-environment", e);
    }
    r
}
