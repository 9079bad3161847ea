//! Load generator for `bench/flags-grpc.sh`: flagd gRPC evaluation vs OFREP single-flag
//! evaluation against one `serin flags serve`, alternated in one run with the same client
//! (one thread, the same number of requests in flight), and the latency from a management
//! write to a provider's `configuration_change` event.
//!
//! ```text
//! flags-load throughput ADDR FLAG SECONDS IN_FLIGHT ROUNDS
//! flags-load events ADDR ADMIN_TOKEN SERVER_KEY ENV FLAG CHANGES
//! ```
//! Loopback only; prints one line per measurement and a summary.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serin_flags_grpc::evaluation_v2::service_client::ServiceClient;
use serin_flags_grpc::evaluation_v2::{EventStreamRequest, ResolveBooleanRequest};
use serin_flags_grpc::struct_from_json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("throughput") if args.len() == 6 => rt.block_on(throughput(
            &args[1],
            &args[2],
            Duration::from_secs(args[3].parse()?),
            args[4].parse()?,
            args[5].parse()?,
        )),
        Some("events") if args.len() == 7 => rt.block_on(events(
            &args[1],
            &args[2],
            &args[3],
            &args[4],
            &args[5],
            args[6].parse()?,
        )),
        _ => anyhow::bail!(
            "usage: flags-load throughput ADDR FLAG SECONDS IN_FLIGHT ROUNDS | \
             flags-load events ADDR ADMIN_TOKEN SERVER_KEY ENV FLAG CHANGES"
        ),
    }
}

fn context() -> serde_json::Map<String, serde_json::Value> {
    let serde_json::Value::Object(m) =
        serde_json::json!({"targetingKey": "user-42", "country": "DE"})
    else {
        unreachable!("an object literal")
    };
    m
}

/// Requests completed in `secs` with `in_flight` concurrent callers, each looping.
async fn run<F, Fut>(secs: Duration, in_flight: usize, call: F) -> anyhow::Result<u64>
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + 'static,
{
    let end = Instant::now() + secs;
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let call = call.clone();
        tasks.push(local.spawn_local(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                call().await?;
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        }));
    }
    local
        .run_until(async move {
            let mut total = 0;
            for t in tasks {
                total += t.await??;
            }
            Ok(total)
        })
        .await
}

async fn throughput(
    addr: &str,
    flag: &str,
    secs: Duration,
    in_flight: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    // OFREP: HTTP/1.1 keep-alive connections from a pooled client.
    let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(in_flight)
        .build_http();
    let uri: hyper::Uri = format!("http://{addr}/ofrep/v1/evaluate/flags/{flag}").parse()?;
    let body = Bytes::from(serde_json::json!({ "context": context() }).to_string());
    let ofrep = move || {
        let (http, uri, body) = (http.clone(), uri.clone(), body.clone());
        async move {
            let req = hyper::Request::post(uri)
                .header("content-type", "application/json")
                .body(Full::new(body))?;
            let res = http.request(req).await?;
            anyhow::ensure!(res.status() == 200, "OFREP answered {}", res.status());
            res.into_body().collect().await?;
            Ok(())
        }
    };
    // gRPC: one HTTP/2 connection, requests multiplexed on it (what providers do).
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let grpc = ServiceClient::new(channel);
    let ctx = struct_from_json(&context());
    let flag_owned = flag.to_owned();
    let rpc = move || {
        let mut c = grpc.clone();
        let req = ResolveBooleanRequest {
            flag_key: flag_owned.clone(),
            context: Some(ctx.clone()),
        };
        async move {
            c.resolve_boolean(req).await?;
            Ok(())
        }
    };
    // Warm-up, then alternate so machine noise hits both alike.
    run(Duration::from_secs(1), in_flight, ofrep.clone()).await?;
    run(Duration::from_secs(1), in_flight, rpc.clone()).await?;
    let (mut o, mut g) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let n = run(secs, in_flight, ofrep.clone()).await?;
        let of = n as f64 / secs.as_secs_f64();
        let n = run(secs, in_flight, rpc.clone()).await?;
        let gr = n as f64 / secs.as_secs_f64();
        println!(
            "round {round}: OFREP {of:>9.0} rps   gRPC {gr:>9.0} rps   gRPC/OFREP {:.2}",
            gr / of
        );
        o.push(of);
        g.push(gr);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mo, mg) = (median(&mut o), median(&mut g));
    println!(
        "median: OFREP {mo:.0} rps, gRPC {mg:.0} rps, gRPC/OFREP {:.2} ({in_flight} in flight, {rounds} rounds of {}s)",
        mg / mo,
        secs.as_secs()
    );
    Ok(())
}

async fn events(
    addr: &str,
    admin: &str,
    server_key: &str,
    env: &str,
    flag: &str,
    changes: usize,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = ServiceClient::new(channel);
    let mut req = tonic::Request::new(EventStreamRequest {});
    req.metadata_mut()
        .insert("authorization", format!("Bearer {server_key}").parse()?);
    let mut stream = client.event_stream(req).await?.into_inner();
    let first = stream
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
    anyhow::ensure!(
        first.r#type == "provider_ready",
        "first event {:?}",
        first.r#type
    );
    let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut lat = Vec::new();
    for i in 0..changes {
        let def = serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": if i % 2 == 0 { "on" } else { "off" }});
        let req = hyper::Request::put(format!(
            "http://{addr}/api/v1/environments/{env}/flags/{flag}"
        ))
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(def.to_string())))?;
        let start = Instant::now();
        let res = http.request(req).await?;
        anyhow::ensure!(res.status().is_success(), "PUT answered {}", res.status());
        let acked = start.elapsed();
        loop {
            let e = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await??
                .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
            if e.r#type == "configuration_change" {
                break;
            }
        }
        let seen = start.elapsed();
        println!(
            "change {}: PUT acknowledged after {:.2} ms, configuration_change after {:.2} ms",
            i + 1,
            acked.as_secs_f64() * 1e3,
            seen.as_secs_f64() * 1e3
        );
        lat.push(seen.as_secs_f64() * 1e3);
        res.into_body().collect().await?;
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "write -> gRPC configuration_change: median {:.2} ms, max {:.2} ms over {changes} changes",
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    Ok(())
}
