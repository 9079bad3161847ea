//! A weighted experiment step's listener over real loopback HTTP: besides
//! the stable and the canary, each experiment template's pods are a
//! destination of their own (their pods' hash), get exactly their share,
//! and are counted apart — so an analysis can tell the baseline template
//! from the canary template by hash.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use serin_proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_templates_get_their_share_and_their_own_counters() {
    let backends = [
        ("v1", backend("stable", false).await),
        ("v2", backend("canary", false).await),
        ("xbase", backend("baseline-template", false).await),
        ("xcan", backend("canary-template", false).await),
    ];
    // Stable 50 % after the experiment's 20 + 20, canary 10 %.
    let weights = [("v1", 50), ("v2", 10), ("xbase", 20), ("xcan", 20)];
    let revisions: Vec<(&str, Vec<std::net::SocketAddr>)> =
        backends.iter().map(|(h, b)| (*h, vec![b.addr])).collect();
    let proxy = Proxy::start(
        "127.0.0.1:0".parse().expect("addr"),
        config(vec![service("web", &revisions, &weights)]),
    )
    .await
    .expect("proxy starts");
    let u = format!(
        "http://{}/",
        proxy.listen_addr("web").expect("service listens")
    );
    let seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (u, seen) = (u.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..250 {
                let g = get(&c, &u, &[]).await;
                assert_eq!(g.status, 200);
                *seen.lock().expect("counts").entry(g.body).or_default() += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let seen = seen.lock().expect("counts").clone();
    let stats = proxy.stats();
    let mut metrics_lines = Vec::new();
    for ((hash, b), (_, weight)) in backends.iter().zip(weights) {
        let got = seen.get(b.name).copied().unwrap_or(0);
        // The schedule is exact per 100 requests; ±2 points for the
        // interleaving of concurrent clients.
        let share = got as f64 / 1000.0;
        assert!(
            (share - f64::from(weight) / 100.0).abs() < 0.02,
            "{hash} ({}) got {got} of 1000, want {weight} %: {seen:?}",
            b.name
        );
        let counted = stats
            .revisions
            .iter()
            .find(|r| r.revision == *hash)
            .map_or(0, |r| r.requests);
        assert_eq!(counted, got, "{hash} counted under its own hash");
        metrics_lines.push(format!(
            "http_requests_total{{service=\"web\",app=\"web-app\",rollouts_pod_template_hash=\"{hash}\",status=\"200\",source=\"upstream\",cause=\"upstream\"}} {got}"
        ));
    }
    let m = get(
        &client(),
        &format!("http://{}/metrics", proxy.admin_addr()),
        &[],
    )
    .await;
    for line in metrics_lines {
        assert!(m.body.contains(&line), "missing {line} in\n{}", m.body);
    }
    proxy.shutdown().await;
}
