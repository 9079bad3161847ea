//! Errors: [`ServerError`] for starting the server, [`ApiError`] for HTTP answers (always a
//! JSON body `{"errorCode": …, "errorDetails": …}`, with `key` where a flag is concerned).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::keys::KeysError;
use crate::store::StoreError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The flag file could not be loaded (the message is located: file:line:column).
    #[error(transparent)]
    Flags(#[from] serin_flags::FlagsError),
    /// The keys file was rejected.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The configuration is unsafe or inconsistent.
    #[error("{0}")]
    Config(String),
}

/// An HTTP error answer with a JSON body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (OpenFeature error codes on OFREP routes).
    pub code: &'static str,
    /// Human-readable detail.
    pub details: String,
    /// The flag concerned, if any.
    pub key: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    error_code: &'a str,
    error_details: &'a str,
}

impl ApiError {
    /// An error with the given status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, details: impl Into<String>) -> Self {
        Self {
            status,
            code,
            details: details.into(),
            key: None,
        }
    }

    /// Attaches the flag key.
    #[must_use]
    pub fn with_key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    pub(crate) fn bad_request(details: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", details)
    }

    pub(crate) fn not_found(details: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", details)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, "CONFLICT", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "store failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "STORE_UNAVAILABLE",
                    format!("the flag store failed: {other}"),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            key: self.key.as_deref(),
            error_code: self.code,
            error_details: &self.details,
        };
        crate::json_response(self.status, &body)
    }
}
