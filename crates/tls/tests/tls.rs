//! serin-tls over real loopback TLS: a hyper server behind `TlsListener`,
//! the client trusting (or not) the test CA, and the errors for bad files.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serin_tls::testing::TestPki;
use serin_tls::{ClientOptions, TlsError, TlsListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("serin-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Serves "hello over TLS" on 127.0.0.1 with the given certificate.
async fn https_server(pki: &TestPki) -> std::net::SocketAddr {
    let config = serin_tls::server_config(&pki.cert, &pki.key).expect("server config");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut listener = TlsListener::new(tcp, config).expect("listener");
    let addr = listener.local_addr();
    tokio::spawn(async move {
        loop {
            let (tls, _) = listener.accept().await;
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        "hello over TLS",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

async fn get(options: &ClientOptions, url: &str) -> Result<(u16, String), String> {
    let client = serin_tls::client::<Empty<Bytes>>(options).map_err(|e| e.to_string())?;
    let res = client
        .get(url.parse().map_err(|e| format!("{e}"))?)
        .await
        .map_err(|e| serin_error_chain::error_chain(&e))?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn https_with_the_test_ca_works_and_without_it_is_refused() {
    let dir = tmp("roundtrip");
    let pki = TestPki::new(&dir, "a", &["localhost", "127.0.0.1"]);
    let addr = https_server(&pki).await;
    let url = format!("https://{addr}/");

    let trusted = ClientOptions::with_cas([&pki.ca]);
    assert_eq!(
        get(&trusted, &url).await,
        Ok((200, "hello over TLS".to_string()))
    );
    // The same client reaches it by name too (the certificate names localhost).
    assert_eq!(
        get(&trusted, &format!("https://localhost:{}/", addr.port()))
            .await
            .map(|r| r.0),
        Ok(200)
    );

    // System roots only: the test CA is unknown.
    let err = get(&ClientOptions::default(), &url)
        .await
        .expect_err("an unknown CA must be refused");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // Another CA is not this one.
    let other = TestPki::new(&dir, "other", &["localhost"]);
    let err = get(&ClientOptions::with_cas([&other.ca]), &url)
        .await
        .expect_err("a different CA must be refused");
    assert!(err.contains("UnknownIssuer"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_server_name_is_verified_and_can_be_overridden() {
    let dir = tmp("names");
    // Valid for localhost only, not for the IP the client connects to.
    let pki = TestPki::new(&dir, "n", &["localhost"]);
    let addr = https_server(&pki).await;
    let url = format!("https://{addr}/");
    let err = get(&ClientOptions::with_cas([&pki.ca]), &url)
        .await
        .expect_err("a certificate for localhost is not valid for 127.0.0.1");
    assert!(err.contains("not valid for name"), "{err}");
    let named = ClientOptions {
        server_name: Some("localhost".into()),
        ..ClientOptions::with_cas([&pki.ca])
    };
    assert_eq!(get(&named, &url).await.map(|r| r.0), Ok(200));
    assert_eq!(
        serin_tls::cert_valid_for(&pki.cert, "localhost").ok(),
        Some(true)
    );
    assert_eq!(
        serin_tls::cert_valid_for(&pki.cert, "127.0.0.1").ok(),
        Some(false)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer_and_the_server_keeps_serving() {
    let dir = tmp("plain");
    let pki = TestPki::new(&dir, "p", &["127.0.0.1"]);
    let addr = https_server(&pki).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    // The server answers with a TLS alert (or nothing) and closes.
    let read = tokio::time::timeout(std::time::Duration::from_secs(15), s.read_to_end(&mut buf))
        .await
        .expect("the server closes a plain-HTTP connection");
    let _ = read;
    assert!(!buf.starts_with(b"HTTP/"), "got an HTTP answer: {buf:?}");
    // The plain-HTTP client did not break the listener.
    let ok = get(
        &ClientOptions::with_cas([&pki.ca]),
        &format!("https://{addr}/"),
    )
    .await;
    assert_eq!(ok.map(|r| r.0), Ok(200));
    // And the https connector still speaks plain http:// to a plain server.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain_addr = plain.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((tcp, _)) = plain.accept().await {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("plain"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        }
    });
    assert_eq!(
        get(&ClientOptions::default(), &format!("http://{plain_addr}/")).await,
        Ok((200, "plain".to_string()))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn err_text(r: Result<impl Sized, TlsError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_get_errors_naming_the_file_and_the_problem() {
    let dir = tmp("bad");
    let pki = TestPki::new(&dir, "ok", &["localhost"]);
    let other = TestPki::new(&dir, "other", &["localhost"]);
    let p = |n: &str| dir.join(n);
    let show = |p: &Path| p.display().to_string();

    let missing = p("missing.pem");
    let e = err_text(serin_tls::server_config(&missing, &pki.key));
    assert!(
        e.starts_with(&show(&missing)) && e.contains("cannot read"),
        "{e}"
    );

    let empty = p("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let e = err_text(serin_tls::server_config(&empty, &pki.key));
    assert!(
        e.starts_with(&show(&empty)) && e.contains("no PEM CERTIFICATE"),
        "{e}"
    );

    let garbage = p("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let e = err_text(serin_tls::server_config(&garbage, &pki.key));
    assert!(
        e.starts_with(&show(&garbage)) && e.contains("not a valid PEM"),
        "{e}"
    );

    let truncated = p("truncated.pem");
    let text = std::fs::read_to_string(&pki.cert).expect("read");
    std::fs::write(&truncated, &text[..text.len() / 2]).expect("write");
    let e = err_text(serin_tls::server_config(&truncated, &pki.key));
    assert!(
        e.starts_with(&show(&truncated)) && e.contains("not a valid PEM"),
        "{e}"
    );

    // Swapped: the key file given as the certificate and the other way round.
    let e = err_text(serin_tls::server_config(&pki.key, &pki.cert));
    assert!(
        e.starts_with(&show(&pki.key)) && e.contains("are cert and key swapped?"),
        "{e}"
    );
    let e = err_text(serin_tls::server_config(&pki.cert, &pki.cert));
    assert!(
        e.starts_with(&show(&pki.cert))
            && e.contains("no private key")
            && e.contains("are cert and key swapped?"),
        "{e}"
    );

    // A key that is not the certificate's.
    let e = err_text(serin_tls::server_config(&pki.cert, &other.key));
    assert!(
        e.contains(&show(&pki.cert)) && e.contains(&show(&other.key)),
        "{e}"
    );
    assert!(e.to_lowercase().contains("key"), "{e}");

    // An extra CA file that holds no certificate.
    let e = err_text(serin_tls::client_config(&ClientOptions::with_cas([&empty])));
    assert!(e.starts_with(&show(&empty)), "{e}");

    // The good pair works.
    assert!(serin_tls::server_config(&pki.cert, &pki.key).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Accepts one TLS connection at a time and reports the SNI it carried.
async fn sni_server(
    pki: &TestPki,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<Option<String>>,
) {
    let config = serin_tls::server_config(&pki.cert, &pki.key).expect("server config");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut listener = TlsListener::new(tcp, config).expect("listener");
    let addr = listener.local_addr();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let (mut tls, _) = listener.accept().await;
            let sni = tls.get_ref().1.server_name().map(str::to_string);
            let _ = tls.write_all(b"hi").await;
            let _ = tls.shutdown().await;
            if tx.send(sni).await.is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn probe_connector_accepts_any_certificate_and_sends_sni_like_the_kubelet() {
    let dir = tmp("probe");
    // A CA nobody trusts, and a certificate for a name the probe never dials.
    let pki = TestPki::new(&dir, "p", &["somewhere-else.example"]);
    let (addr, mut snis) = sni_server(&pki).await;
    let probe = serin_tls::ProbeTlsConnector::new().expect("probe connector");

    for (host, want) in [("localhost", Some("localhost")), ("127.0.0.1", None)] {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut tls = probe
            .connect(host, tcp)
            .await
            .expect("handshake without verification");
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"hi");
        assert_eq!(
            snis.recv().await.expect("sni").as_deref(),
            want,
            "host {host}"
        );
    }

    // The verifying client refuses the same server: only probes skip verification.
    let verified = get(
        &ClientOptions::with_cas([&pki.ca]),
        &format!("https://{addr}/"),
    )
    .await;
    assert!(verified.is_err(), "{verified:?}");

    // A plain TCP server is not TLS: the handshake fails.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain_addr = plain.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = plain.accept().await {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let tcp = tokio::net::TcpStream::connect(plain_addr)
        .await
        .expect("connect");
    assert!(probe.connect("localhost", tcp).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
