//! The web provider against a real HTTPS server on a loopback port (rustls,
//! a throwaway CA): trusted through `Providers::with_ca`, refused without it.

use serde_json::{Value, json};
use serin_analysis::{Outcome, ProviderSpec, Providers};
use serin_tls::testing::TestPki;

struct Tls(serin_tls::TlsListener);

impl axum::serve::Listener for Tls {
    type Io = serin_tls::ServerTlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }
    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.0.local_addr())
    }
}

/// Serves `{"data": {"rate": 0.99}}` at `https://127.0.0.1:PORT/m`.
async fn https_server(pki: &TestPki) -> String {
    let app = axum::Router::new().route(
        "/m",
        axum::routing::get(|| async { r#"{"data": {"rate": 0.99}}"# }),
    );
    let config = serin_tls::server_config(&pki.cert, &pki.key).expect("server config");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let listener = Tls(serin_tls::TlsListener::new(tcp, config).expect("listener"));
    let addr = listener.0.local_addr();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("https://{addr}/m")
}

fn web(url: &str) -> ProviderSpec {
    let w: serin_spec::WebMetric =
        serde_json::from_value(json!({"url": url, "jsonPath": "{$.data.rate}"})).expect("web");
    ProviderSpec::Web(w)
}

#[tokio::test]
async fn web_provider_over_https_with_the_configured_ca() {
    let dir = std::env::temp_dir().join(format!("serin-analysis-https-{}", std::process::id()));
    let pki = TestPki::new(&dir, "web", &["127.0.0.1"]);
    let url = https_server(&pki).await;
    let providers = Providers::with_ca(&pki.ca).expect("providers");
    assert_eq!(
        providers.measure(&web(&url)).await,
        Outcome::Value(Value::from(0.99))
    );
    // The same providers keep speaking plain http:// too.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain_addr = plain.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/m",
        axum::routing::get(|| async { r#"{"data": {"rate": 0.5}}"# }),
    );
    tokio::spawn(async move { axum::serve(plain, app).await });
    assert_eq!(
        providers
            .measure(&web(&format!("http://{plain_addr}/m")))
            .await,
        Outcome::Value(Value::from(0.5))
    );

    // System roots only: the test CA is unknown, so the measurement is an
    // Error that says why — never a value.
    match Providers::new().measure(&web(&url)).await {
        Outcome::Error(e) => assert!(e.contains("UnknownIssuer"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_ca_file_is_an_error_naming_it() {
    let missing = std::env::temp_dir().join("serin-analysis-no-such-ca.pem");
    let err = Providers::with_ca(&missing)
        .err()
        .expect("a missing CA file is an error");
    assert!(
        err.to_string().starts_with(&missing.display().to_string()),
        "{err}"
    );
}
