//! How [`crate::FlagServer::bind`] serves: hyper connections whose service answers
//! `POST /ofrep/v1/evaluate/flags/{key}` itself and hands every other request to the axum
//! router.
//!
//! Why: single-flag evaluation is the hot route (server SDKs call it once per flag
//! evaluation). Through the router each call also paid for path matching, a URL-parameter
//! extension, an owned key, a cloned `HeaderMap`, a boxed length-limited request body and a
//! boxed response body; answering it here does the same work without them (see
//! bench/ofrep/README.md for the instructions per request). The answer is the router's,
//! byte for byte: both call [`ofrep::evaluate_one_json`], and whatever this path does not
//! handle exactly as the router would (percent-encoded keys, bodies without a length or over
//! the limit) goes to the router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body as _, Incoming};
use tower_service::Service as _;

use crate::ofrep;
use crate::state::Shared;

/// The single-flag route up to `{key}`.
const EVAL_ONE_PREFIX: &str = "/ofrep/v1/evaluate/flags/";

/// axum's default request-body limit, which the router's `Bytes` extractor enforces (the
/// router sets no other); larger bodies go to the router for its 413.
const BODY_LIMIT: u64 = 2 * 1024 * 1024;

/// Evaluation answers are a small, fully known body; everything else is the router's.
type ResponseBody = Either<Full<Bytes>, Body>;

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

/// The connection service: the single-flag route, else the router.
#[derive(Clone)]
pub(crate) struct OfrepFirst {
    shared: Arc<Shared>,
    router: Router,
}

impl OfrepFirst {
    pub(crate) fn new(shared: Arc<Shared>, router: Router) -> Self {
        Self { shared, router }
    }
}

/// Whether this request is one the router would send to `evaluate_one` with the same key
/// and body: POST, exactly one non-empty path segment after the prefix (what `{key}`
/// matches) and no `%` in it (the router percent-decodes, and rejects bad encodings its own
/// way), and a known body length within the limit (the router would 413 larger ones).
fn is_eval_one(req: &Request<Incoming>) -> bool {
    if req.method() != Method::POST {
        return false;
    }
    let Some(key) = req.uri().path().strip_prefix(EVAL_ONE_PREFIX) else {
        return false;
    };
    !key.is_empty()
        && !key.contains(['/', '%'])
        && req
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n <= BODY_LIMIT)
}

impl hyper::service::Service<Request<Incoming>> for OfrepFirst {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if is_eval_one(&req) {
            let shared = Arc::clone(&self.shared);
            return Box::pin(async move { Ok(evaluate_one(&shared, req).await) });
        }
        // As axum::serve does: the router takes axum's body type. Its `poll_ready` is
        // always ready, so calling a clone directly is what `oneshot` would do.
        let fut = self.router.clone().call(req.map(Body::new));
        Box::pin(async move {
            let Ok(r) = fut.await;
            Ok(r.map(Either::Right))
        })
    }
}

async fn evaluate_one(shared: &Shared, req: Request<Incoming>) -> Response<ResponseBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        // What the router's `Bytes` extractor answers when reading the body fails.
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("Failed to buffer the body: {e}"),
            )
                .into_response()
                .map(Either::Right);
        }
    };
    // `is_eval_one` checked the prefix.
    let key = &parts.uri.path()[EVAL_ONE_PREFIX.len()..];
    match ofrep::evaluate_one_json(shared, key, &parts.headers, &body) {
        Ok((status, json)) => {
            let mut r = Response::new(Either::Left(Full::new(Bytes::from(json))));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => e.into_response().map(Either::Right),
    }
}

impl crate::limits::Handler for OfrepFirst {
    type Body = ResponseBody;
    fn handle(&self, req: Request<Incoming>) -> crate::limits::BoxResponse<ResponseBody> {
        let fut = hyper::service::Service::call(self, req);
        Box::pin(async move {
            let Ok(r) = fut.await;
            r
        })
    }
}
