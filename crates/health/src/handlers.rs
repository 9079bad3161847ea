//! axum handlers and a ready-made router for `/health` and `/ready`.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{HealthChecker, ProbeResponse};

impl IntoResponse for ProbeResponse {
    fn into_response(self) -> Response {
        self.into_http_response().into_response()
    }
}

/// `GET /health` handler (liveness); state is the [`HealthChecker`].
pub async fn liveness_handler(State(checker): State<HealthChecker>) -> ProbeResponse {
    checker.liveness()
}

/// `GET /ready` handler (readiness); state is the [`HealthChecker`].
pub async fn readiness_handler(State(checker): State<HealthChecker>) -> ProbeResponse {
    checker.readiness().await
}

/// A router serving liveness on `/health` and readiness on `/ready`
/// (`HEAD` too). Merge it into the service's router with `Router::merge`; as
/// an axum `Router` it is also a plain tower `Service`.
pub fn router(checker: HealthChecker) -> Router {
    router_at(checker, "/health", "/ready")
}

/// Like [`router`] with custom paths (e.g. `/livez`, `/readyz`).
pub fn router_at(checker: HealthChecker, liveness_path: &str, readiness_path: &str) -> Router {
    Router::new()
        .route(liveness_path, get(liveness_handler))
        .route(readiness_path, get(readiness_handler))
        .with_state(checker)
}
