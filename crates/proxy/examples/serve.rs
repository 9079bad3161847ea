//! `serve --admin ADDR --config FILE [--admin-token-file FILE]`: the proxy on a multi-threaded tokio
//! runtime, like `serin proxy`, without building the whole CLI (for quick
//! profiling: `cargo build --release -p serin-proxy --example serve`).

/// The serin binary's allocator (crates/serin/src/main.rs), so that profiles
/// of this example are profiles of `serin proxy`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut admin = "127.0.0.1:0".to_string();
    let mut config = None;
    let mut token_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--admin" => admin = args.next().expect("--admin ADDR"),
            "--config" => config = args.next(),
            "--admin-token-file" => token_file = args.next(),
            "proxy" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let initial = match config {
        Some(p) => serin_proxy::ProxyConfig::from_json(&std::fs::read(p).expect("config"))
            .expect("valid config"),
        None => serin_proxy::ProxyConfig::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let admin_token = match token_file {
        Some(p) => serin_proxy::AdminToken::from_file_or_create(std::path::Path::new(&p))
            .expect("admin token file"),
        None => serin_proxy::AdminToken::random().expect("admin token"),
    };
    let options = serin_proxy::ProxyOptions {
        admin: admin.parse().expect("admin addr"),
        admin_token,
        allow_non_loopback: false,
    };
    rt.block_on(async {
        let proxy = serin_proxy::Proxy::start_with(options, initial)
            .await
            .expect("start");
        println!("admin {}", proxy.admin_addr());
        let _ = tokio::signal::ctrl_c().await;
        proxy.shutdown().await;
    });
}
