//! `FlagServer::bind` answers `POST /ofrep/v1/evaluate/flags/{key}` before the axum router
//! (for speed). These tests hold it to the router's answers — the same server state served
//! both ways over real HTTP on loopback — and check HTTP/1 keep-alive, pipelining and chunked
//! bodies on the bound server.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serin_flags_server::{FlagServer, FlagSource, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FLAGS: &str = r#"{
  "flags": {
    "geo": {"state": "ENABLED", "variants": {"eu": "euro", "world": "dollar"}, "defaultVariant": "world",
            "targeting": {"if": [{"in": [{"var": "country"}, ["DE", "FR"]]}, "eu", null]},
            "metadata": {"team": "payments"}},
    "killed": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "broken": {"state": "ENABLED", "variants": {"a": 1.5, "b": 2.5}, "defaultVariant": "a",
               "targeting": {"var": "wanted"}},
    "a b": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}
  }
}"#;

const CTX: &str = r#"{"context": {"targetingKey": "user-42", "country": "DE"}}"#;

/// One server state, served by `bind` (fast path) and by `router()` under plain
/// `axum::serve`.
async fn both() -> (Running, SocketAddr, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("serin-fast-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("flags.json");
    std::fs::write(&path, FLAGS).expect("write flags");
    let server = FlagServer::start(ServerOptions {
        source: FlagSource::File(path),
        keys: keyring(),
        environment: "production".into(),
    })
    .await
    .expect("server starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind router");
    let router_addr = listener.local_addr().expect("addr");
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let running = server
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    (running, router_addr, dir)
}

use serin_flags_server::Running;

/// Method, path, headers, body.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);

#[tokio::test]
async fn single_flag_answers_match_the_router() {
    let (fast, router, dir) = both().await;
    let bearer_srv = format!("Bearer {SERVER_PROD}");
    let bearer_lower = format!("bearer   {SERVER_PROD} ");
    let bearer_cli = format!("Bearer {CLIENT_PROD}");
    let bearer_adm = format!("Bearer {ADMIN_PROD}");
    let srv: &[(&str, &str)] = &[("authorization", &bearer_srv)];
    let cases: Vec<Case> = vec![
        // Success, reasons, errors from evaluation.
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some(CTX),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo?ignored=1",
            srv.to_vec(),
            Some(r#"{"context": {"targetingKey": "u", "country": "US"}}"#),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/killed",
            srv.to_vec(),
            Some(CTX),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/nope",
            srv.to_vec(),
            Some(CTX),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/broken",
            srv.to_vec(),
            Some(r#"{"context": {"targetingKey": "u", "wanted": "zzz"}}"#),
        ),
        // Auth: X-API-Key, Bearer in any case, missing, unknown, client and admin keys.
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            vec![("x-api-key", SERVER_PROD)],
            Some(CTX),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            vec![("authorization", &bearer_lower)],
            Some(CTX),
        ),
        ("POST", "/ofrep/v1/evaluate/flags/geo", vec![], Some(CTX)),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            vec![("x-api-key", "nope")],
            Some(CTX),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            vec![("authorization", &bearer_cli)],
            Some(CTX),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            vec![("authorization", &bearer_adm)],
            Some(CTX),
        ),
        // Bad bodies (an auth failure comes first).
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some(""),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some("{"),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some("[]"),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some("{}"),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some(r#"{"context": 3}"#),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some(r#"{"context": {"targetingKey": 7}}"#),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some(r#"{"context": {"targetingKey": "u"}} trailing"#),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some(r#"{"other": "\u12", "context": {"targetingKey": "u"}}"#),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some(
                r#"{"context": {"targetingKey": "a"}, "context": {"targetingKey": "b", "country": "DE"}}"#,
            ),
        ),
        ("POST", "/ofrep/v1/evaluate/flags/geo", vec![], Some("{")),
        // Keys the router percent-decodes or does not match; other methods.
        (
            "POST",
            "/ofrep/v1/evaluate/flags/a%20b",
            srv.to_vec(),
            Some(CTX),
        ),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/bad%ff",
            srv.to_vec(),
            Some(CTX),
        ),
        ("POST", "/ofrep/v1/evaluate/flags/", srv.to_vec(), Some(CTX)),
        (
            "POST",
            "/ofrep/v1/evaluate/flags/geo/x",
            srv.to_vec(),
            Some(CTX),
        ),
        ("GET", "/ofrep/v1/evaluate/flags/geo", srv.to_vec(), None),
        (
            "PUT",
            "/ofrep/v1/evaluate/flags/geo",
            srv.to_vec(),
            Some(CTX),
        ),
        // Everything else is the router's anyway.
        ("POST", "/ofrep/v1/evaluate/flags", srv.to_vec(), Some(CTX)),
    ];
    for (method, path, headers, body) in &cases {
        let a = send(fast.addr(), method, path, headers, *body).await;
        let b = send(router, method, path, headers, *body).await;
        let what = format!("{method} {path} {headers:?} {body:?}");
        assert_eq!(a.status, b.status, "{what}");
        assert_eq!(a.text, b.text, "{what}");
        assert!(!a.text.is_empty(), "{what}");
        for h in ["content-type", "content-length", "etag"] {
            assert_eq!(a.header(h), b.header(h), "{h} of {what}");
        }
    }
    fast.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads from `s` until `n` complete responses (headers + Content-Length body) arrived.
async fn read_responses(s: &mut tokio::net::TcpStream, n: usize) -> Vec<(String, String)> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut out = Vec::new();
        let mut rest = &buf[..];
        while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rest[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().expect("length"))
                })
                .expect("content-length");
            if rest.len() < end + 4 + len {
                break;
            }
            let body = String::from_utf8_lossy(&rest[end + 4..end + 4 + len]).into_owned();
            out.push((head.lines().next().unwrap_or_default().to_owned(), body));
            rest = &rest[end + 4 + len..];
        }
        if out.len() >= n {
            return out;
        }
        let mut chunk = [0u8; 4096];
        let got = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("responses within 10 s")
            .expect("read");
        assert!(got > 0, "connection closed after {} responses", out.len());
        buf.extend_from_slice(&chunk[..got]);
    }
}

fn post_request(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SERVER_PROD}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn keep_alive_pipelining_and_chunked_bodies() {
    let (fast, _, dir) = both().await;
    let mut s = tokio::net::TcpStream::connect(fast.addr())
        .await
        .expect("connect");
    // Three pipelined requests in one write — fast path, router, fast path — answered in
    // order on the same connection.
    let pipelined = [
        post_request("/ofrep/v1/evaluate/flags/geo", CTX),
        post_request("/ofrep/v1/evaluate/flags", CTX),
        post_request("/ofrep/v1/evaluate/flags/nope", CTX),
    ]
    .concat();
    s.write_all(pipelined.as_bytes()).await.expect("write");
    let r = read_responses(&mut s, 3).await;
    assert_eq!(r[0].0, "HTTP/1.1 200 OK");
    assert!(r[0].1.contains(r#""value":"euro""#), "{}", r[0].1);
    assert_eq!(r[1].0, "HTTP/1.1 200 OK");
    assert!(r[1].1.contains(r#""flags":["#), "{}", r[1].1);
    assert_eq!(r[2].0, "HTTP/1.1 404 Not Found");
    assert!(r[2].1.contains("FLAG_NOT_FOUND"), "{}", r[2].1);

    // Keep-alive: the same connection serves another request, this one with a chunked body
    // (no length known up front, so the router answers it).
    let chunked = format!(
        "POST /ofrep/v1/evaluate/flags/geo HTTP/1.1\r\nHost: x\r\nX-API-Key: {SERVER_PROD}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{CTX}\r\n0\r\n\r\n",
        CTX.len()
    );
    s.write_all(chunked.as_bytes()).await.expect("write");
    let r = read_responses(&mut s, 1).await;
    assert_eq!(r[0].0, "HTTP/1.1 200 OK");
    assert!(r[0].1.contains(r#""value":"euro""#), "{}", r[0].1);

    // Graceful stop closes the idle keep-alive connection and returns.
    tokio::time::timeout(Duration::from_secs(10), fast.stop())
        .await
        .expect("stops within 10 s");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("closed within 10 s")
        .expect("read");
    assert_eq!(n, 0, "nothing after the answers: {rest:?}");
    let _ = std::fs::remove_dir_all(dir);
}
