//! API tokens and roles. Tokens are random 32-byte values shown once; only
//! their SHA-256 is stored (in the control plane's redb store). No token
//! value is ever logged.
//!
//! Roles: `viewer` (read), `deployer` (operations and apply), `admin`
//! (tokens too). The flag server's routes (`/ofrep/…`, `/api/v1/…`,
//! `/sdk/…`) carry their own keys and are not checked here; `/healthz` is
//! open.

use std::io::Read;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::reconciler::ControlPlane;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read rollouts, history, metrics.
    Viewer,
    /// Also promote, abort, undo, apply, …
    Deployer,
    /// Also manage tokens.
    Admin,
}

/// A stored token (hash only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Who it is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was made (ms since the epoch).
    pub created_ms: u64,
}

/// A new random token (hex of 32 bytes from the OS).
pub fn new_token() -> std::io::Result<String> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(format!(
        "srn_{}",
        buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

impl ControlPlane {
    /// Creates a token; returns its value (shown once).
    pub fn create_token(&self, name: &str, role: Role) -> anyhow::Result<String> {
        let token = new_token()?;
        let rec = TokenRecord {
            name: name.into(),
            role,
            created_ms: crate::reconciler::now_ms(),
        };
        self.store().put_json(
            &format!("token/{}", serin_flags_server::hash_key(&token)),
            &rec,
        )?;
        Ok(token)
    }

    /// The token's record, if it is one.
    pub fn token(&self, token: &str) -> Option<TokenRecord> {
        self.store()
            .get_json(&format!("token/{}", serin_flags_server::hash_key(token)))
            .ok()
            .flatten()
    }

    /// All tokens (names and roles only).
    pub fn tokens(&self) -> Vec<TokenRecord> {
        self.store().scan_json("token/").unwrap_or_default()
    }
}

fn deny(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": message}))).into_response()
}

/// The role a request needs.
fn needed(method: &Method, path: &str) -> Option<Role> {
    if path == "/healthz"
        || path.starts_with("/ofrep/")
        || path.starts_with("/api/v1/")
        || path.starts_with("/sdk/")
    {
        return None;
    }
    if path.starts_with("/v1/tokens") {
        return Some(Role::Admin);
    }
    if method == Method::GET || method == Method::HEAD {
        Some(Role::Viewer)
    } else {
        Some(Role::Deployer)
    }
}

/// Axum middleware: 401 without a valid bearer token, 403 without the role.
pub async fn require(State(cp): State<Arc<ControlPlane>>, req: Request, next: Next) -> Response {
    let Some(role) = needed(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return deny(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer …)",
        );
    };
    let Some(rec) = cp.token(token) else {
        return deny(StatusCode::UNAUTHORIZED, "unknown token");
    };
    if rec.role < role {
        return deny(
            StatusCode::FORBIDDEN,
            &format!(
                "token {:?} is a {:?}; this needs {:?}",
                rec.name, rec.role, role
            ),
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_route() {
        assert_eq!(needed(&Method::GET, "/v1/rollouts"), Some(Role::Viewer));
        assert_eq!(
            needed(&Method::POST, "/v1/rollouts/x/promote"),
            Some(Role::Deployer)
        );
        assert_eq!(needed(&Method::POST, "/v1/tokens"), Some(Role::Admin));
        assert_eq!(needed(&Method::GET, "/v1/tokens"), Some(Role::Admin));
        assert_eq!(needed(&Method::GET, "/healthz"), None);
        assert_eq!(needed(&Method::POST, "/ofrep/v1/evaluate/flags/x"), None);
        assert!(Role::Admin > Role::Deployer && Role::Deployer > Role::Viewer);
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("srn_") && a.len() == 68);
    }
}
