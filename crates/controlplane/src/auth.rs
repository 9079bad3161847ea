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
    /// When it stops working (ms since the epoch); never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

impl TokenRecord {
    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| now_ms >= e)
    }
}

/// Longest token name, in characters.
pub const MAX_NAME: usize = 64;

/// Why `name` cannot name a token (`None`: it can): 1 to [`MAX_NAME`]
/// letters, digits, `.`, `_`, `-`, `@` — it is shown in listings, logs and
/// `403` messages, so no control characters, spaces or newlines.
pub fn bad_name(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Some(format!("token name must be 1 to {MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Some(format!(
            "token name may hold letters, digits, '.', '_', '-' and '@' only (found {c:?})"
        ));
    }
    None
}

/// The token of an `Authorization` header value: scheme `Bearer` in any case
/// (RFC 9110: schemes are case-insensitive), then the token.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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
        self.create_token_until(name, role, None)
    }

    /// Creates a token that stops working at `expires_ms` (ms since the
    /// epoch; `None`: never); returns its value (shown once).
    pub fn create_token_until(
        &self,
        name: &str,
        role: Role,
        expires_ms: Option<u64>,
    ) -> anyhow::Result<String> {
        let token = new_token()?;
        let rec = TokenRecord {
            name: name.into(),
            role,
            created_ms: serin_clock::now_ms(),
            expires_ms,
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

    /// Revokes every token named `name`; returns how many there were.
    pub fn revoke_tokens(&self, name: &str) -> anyhow::Result<usize> {
        let mut n = 0;
        for (key, rec) in self.store().scan_entries::<TokenRecord>("token/")? {
            if rec.name == name {
                self.store().delete(&key)?;
                n += 1;
            }
        }
        Ok(n)
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
        .and_then(bearer);
    let Some(token) = token else {
        return deny(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer …)",
        );
    };
    let Some(rec) = cp.token(token) else {
        return deny(StatusCode::UNAUTHORIZED, "unknown token");
    };
    if rec.expired(serin_clock::now_ms()) {
        return deny(
            StatusCode::UNAUTHORIZED,
            &format!("token {:?} has expired", rec.name),
        );
    }
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
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn token_names_are_short_and_printable() {
        assert_eq!(bad_name("ci-bot"), None);
        assert_eq!(bad_name("alice@example.com"), None);
        assert!(bad_name("").is_some());
        assert!(bad_name("a\0b").is_some());
        assert!(bad_name("a\nb").is_some());
        assert!(bad_name("a b").is_some());
        assert!(bad_name(&"x".repeat(MAX_NAME + 1)).is_some());
        assert_eq!(bad_name(&"x".repeat(MAX_NAME)), None);
    }

    #[test]
    fn expiry() {
        let rec = TokenRecord {
            name: "x".into(),
            role: Role::Viewer,
            created_ms: 0,
            expires_ms: Some(10),
        };
        assert!(!rec.expired(9));
        assert!(rec.expired(10));
        let never = TokenRecord {
            expires_ms: None,
            ..rec
        };
        assert!(!never.expired(u64::MAX));
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("srn_") && a.len() == 68);
    }
}
