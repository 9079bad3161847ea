//! Commands that talk to a running `serin up`: get, promote, abort, …

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::output::{self, Format};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// Where to find the control plane, and the token to use.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// State directory of the `serin up` to talk to.
    #[arg(long, default_value = ".serin", global = true)]
    state_dir: PathBuf,
    /// API token (default: SERIN_TOKEN, else the local admin token that
    /// `serin up` wrote to STATE_DIR/admin.token).
    #[arg(long, env = "SERIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Control-plane URL, e.g. https://cp.example:7443 (default: the one
    /// `serin up` recorded in STATE_DIR/endpoints.json, with its scheme and
    /// the CA to trust).
    #[arg(long, env = "SERIN_API", global = true)]
    api: Option<String>,
    /// A PEM file of CA certificates to trust for an https control plane,
    /// besides the system's roots (and the CA `serin up` recorded).
    #[arg(long, env = "SERIN_CA", global = true)]
    ca: Option<PathBuf>,
    /// Kubernetes: act on the Rollouts of the cluster of this kubeconfig
    /// context, where `serin controller` runs (instead of a `serin up`).
    #[arg(long, global = true, value_name = "CTX")]
    context: Option<String>,
    /// Kubernetes: the kubeconfig file (default: $KUBECONFIG, ~/.kube/config);
    /// implies the cluster, like --context.
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubernetes: the namespace (default: the context's, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    namespace: Option<String>,
    /// The client, built on first use and reused (one connection pool).
    #[arg(skip)]
    conn: std::sync::OnceLock<Api>,
}

/// The control plane's base URL and a client that can reach it.
#[derive(Clone, Debug)]
struct Api {
    base: String,
    client: Client<serin_tls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Target {
    /// The API client: `--api` (or endpoints.json) and the CAs to trust.
    fn api(&self) -> anyhow::Result<&Api> {
        if let Some(api) = self.conn.get() {
            return Ok(api);
        }
        let (base, mut options) = match &self.api {
            Some(url) => {
                let base = url.trim_end_matches('/').to_string();
                anyhow::ensure!(
                    base.starts_with("https://") || base.starts_with("http://"),
                    "--api {url:?}: expected an https:// or http:// URL"
                );
                (base, serin_tls::ClientOptions::default())
            }
            None => {
                let ep = serin_controlplane::up::read_endpoints(&self.state_dir)?;
                let options = match &ep.api_tls {
                    Some(t) => serin_tls::ClientOptions {
                        extra_cas: vec![t.ca.clone()],
                        server_name: Some(t.server_name.clone()),
                        ..Default::default()
                    },
                    None => serin_tls::ClientOptions::default(),
                };
                (ep.api_url(), options)
            }
        };
        options.extra_cas.extend(self.ca.clone());
        let client = serin_tls::client(&options)?;
        Ok(self.conn.get_or_init(|| Api { base, client }))
    }

    fn bearer(&self) -> String {
        self.token.clone().unwrap_or_else(|| {
            std::fs::read_to_string(self.state_dir.join("admin.token"))
                .map(|t| t.trim().to_string())
                .unwrap_or_default()
        })
    }
}

/// `serin get [NAME] [-o json]`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Rollout name (all when omitted), or a kind followed by a name:
    /// `flagrollout[s] [NAME]`, `experiment[s] [NAME]`, `rollout NAME`.
    name: Option<String>,
    /// The name, when the first argument is a kind.
    #[arg(value_name = "NAME")]
    kind_name: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Redraw in place as the rollout changes (Ctrl-C to stop).
    #[arg(short = 'w', long)]
    watch: bool,
    #[command(flatten)]
    target: Target,
}

/// `serin promote|abort|retry|pause|resume|undo NAME`.
#[derive(clap::Args, Debug)]
pub struct OpArgs {
    /// Rollout name, or `flagrollout NAME` (abort and retry), or
    /// `experiment NAME` (abort: Argo's terminate).
    name: String,
    /// The FlagRollout's or Experiment's name, after the kind.
    #[arg(value_name = "NAME")]
    kind_name: Option<String>,
    /// promote: skip all remaining steps and analysis.
    #[arg(long)]
    full: bool,
    /// undo: go back to this revision number (default: the previous one).
    #[arg(long)]
    to_revision: Option<u64>,
    #[command(flatten)]
    target: Target,
}

async fn call(
    target: &Target,
    method: hyper::Method,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    if target.context.is_some() || target.kubeconfig.is_some() {
        return kube_call(target, method, path, body).await;
    }
    let api = target.api()?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", api.base))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", target.bearer()))
        .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
    let res = api.client.request(req).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach serin up at {}: {}",
            api.base,
            serin_error_chain::error_chain(&e)
        )
    })?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

/// The API of `serin up` answered from a cluster's Rollout objects (and
/// commands carried out by `serin controller` through the
/// `serin.dev/command` annotation), so every command prints the same.
async fn kube_call(
    target: &Target,
    method: hyper::Method,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use serde_json::json;
    let client =
        serin_platform_kube::connect(target.kubeconfig.as_deref(), target.context.as_deref())
            .await?;
    let ns = target
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let fail = |code: u16, e: &dyn std::fmt::Display| (code, json!({"error": e.to_string()}));
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let parts: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    Ok(match (method, parts.as_slice()) {
        (hyper::Method::GET, ["v1", "report"]) => {
            let since = query.split('&').find_map(|kv| kv.strip_prefix("since="));
            match serin_platform_kube::report(&client, &ns, since).await {
                Ok(r) => (200, r),
                Err(e @ serin_platform_kube::Error::Invalid(_)) => fail(400, &e),
                Err(e) => fail(502, &e),
            }
        }
        (hyper::Method::GET, ["v1", "rollouts"]) => {
            match serin_platform_kube::describe_all(&client, &ns).await {
                Ok(all) => (200, json!(all)),
                Err(e) => fail(502, &e),
            }
        }
        (hyper::Method::GET, ["v1", "flagrollouts"]) => {
            match serin_platform_kube::describe_flag_rollouts(&client, &ns).await {
                Ok(all) => (200, json!(all)),
                Err(e) => fail(502, &e),
            }
        }
        (hyper::Method::GET, ["v1", "flagrollouts", name]) => {
            match serin_platform_kube::describe_flag_rollout(&client, &ns, name).await {
                Ok(v) => (200, v),
                Err(e) => fail(404, &e),
            }
        }
        (hyper::Method::GET, ["v1", "rollouts", name]) => {
            match serin_platform_kube::describe(&client, &ns, name).await {
                Ok(v) => (200, v),
                Err(e) => fail(404, &e),
            }
        }
        (hyper::Method::POST, ["v1", "rollouts", name, "restart"]) => {
            // As `serin up` reads the body: `in` (a Go duration) or `at`.
            let now = serin_clock::now_ms();
            let at = match (body["in"].as_str(), body["at"].as_str()) {
                (Some(_), Some(_)) => Err("give either \"in\" or \"at\", not both".to_string()),
                (Some(d), None) => serin_spec::values::parse_go_duration(d)
                    .map(|d| {
                        Some(now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
                    })
                    .map_err(|e| format!("in: {e}")),
                (None, Some(t)) => serin_clock::parse_rfc3339(t)
                    .map(Some)
                    .map_err(|e| format!("at: {e}")),
                (None, None) => Ok(None),
            };
            match at {
                Err(e) => fail(400, &e),
                Ok(at) => {
                    let cmd =
                        serin_platform_kube::restart(&client, &ns, name, at, KUBE_COMMAND_WAIT);
                    match cmd.await {
                        Ok(at) => (
                            200,
                            json!({"restartAt": serin_clock::format_rfc3339_seconds(at), "restartAtMs": at}),
                        ),
                        Err(e) => fail(409, &e),
                    }
                }
            }
        }
        (hyper::Method::POST, ["v1", "rollouts", name, "set-image"]) => {
            let (Some(container), Some(image)) =
                (body["container"].as_str(), body["image"].as_str())
            else {
                return Ok(fail(400, &"expected container and image"));
            };
            match serin_platform_kube::set_image(&client, &ns, name, container, image).await {
                Ok(()) => (
                    200,
                    json!({"applied": format!("rollout {name} in namespace {ns}")}),
                ),
                Err(e) => fail(404, &e),
            }
        }
        (hyper::Method::POST, ["v1", "rollouts", name, "undo"]) => {
            let to = body["toRevision"].as_u64();
            match serin_platform_kube::undo(&client, &ns, name, to).await {
                Ok(n) => (200, json!({"revision": n})),
                Err(e) => fail(409, &e),
            }
        }
        (
            hyper::Method::POST,
            [
                "v1",
                "rollouts",
                name,
                op @ ("promote" | "promote-full" | "abort" | "retry" | "pause" | "resume"),
            ],
        ) => match serin_platform_kube::command(&client, &ns, name, op, KUBE_COMMAND_WAIT).await {
            Ok(()) => (200, json!({})),
            Err(e) => fail(409, &e),
        },
        (hyper::Method::POST, ["v1", "flagrollouts", name, op @ ("abort" | "retry")]) => {
            let cmd = serin_platform_kube::flag_rollout_command(
                &client,
                &ns,
                name,
                op,
                KUBE_COMMAND_WAIT,
            );
            match cmd.await {
                Ok(()) => (200, json!({})),
                Err(e) => fail(409, &e),
            }
        }
        (_, _) => fail(
            501,
            &format!("{path} is not available on a cluster (--context/--kubeconfig) yet"),
        ),
    })
}

/// How long a command on a cluster waits for the controller to take it.
const KUBE_COMMAND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// GET `path`; on a non-200 answer prints the API's error and returns `None`.
async fn get_ok(target: &Target, path: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let (status, body) = call(target, hyper::Method::GET, path, serde_json::Value::Null).await?;
    if status != 200 {
        eprintln!(
            "error: {}",
            body["error"].as_str().unwrap_or("request failed")
        );
        return Ok(None);
    }
    Ok(Some(body))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn print_rollout(v: &serde_json::Value) {
    let s = &v["status"];
    let step = s["currentStepIndex"]
        .as_u64()
        .or_else(|| s["current_step_index"].as_u64());
    println!("Name:      {}", v["name"].as_str().unwrap_or("?"));
    println!("Strategy:  {}", v["strategy"].as_str().unwrap_or("?"));
    if v["steps"].as_u64().unwrap_or(0) > 0 {
        println!("Step:      {}/{}", step.unwrap_or(0), v["steps"]);
    }
    println!(
        "Status:    {} {}",
        s["phase"].as_str().unwrap_or("?"),
        s["message"].as_str().unwrap_or("")
    );
    if let Some(message) = v["driverError"]["message"].as_str() {
        // The driver cannot act (e.g. an image with no `images:` entry) and
        // retries with backoff.
        let retry = v["driverError"]["retryAt"]
            .as_u64()
            .map_or(String::new(), |at| {
                let now = serin_clock::now_ms();
                format!(" (retrying in {} s)", at.saturating_sub(now).div_ceil(1000))
            });
        println!("Error:     {message}{retry}");
    }
    print_restart(v);
    if let Some(ws) = v["route"]["weights"].as_array().filter(|w| !w.is_empty()) {
        let w: Vec<String> = ws
            .iter()
            .map(|w| format!("{} {}%", w["revision"].as_str().unwrap_or("?"), w["weight"]))
            .collect();
        println!("Weights:   {}", w.join(", "));
    }
    for run in v["analysisRuns"].as_array().into_iter().flatten() {
        println!(
            "  analysis {}  {}",
            run["name"].as_str().unwrap_or("?"),
            run["phase"].as_str().unwrap_or("?")
        );
        for m in run["metricResults"].as_array().into_iter().flatten() {
            let last = m["measurements"]
                .as_array()
                .and_then(|ms| ms.last())
                .cloned()
                .unwrap_or_default();
            println!(
                "    {:<24} {:<12} last: {} {}",
                m["name"].as_str().unwrap_or("?"),
                m["phase"].as_str().unwrap_or("?"),
                last["value"],
                last["message"].as_str().unwrap_or("")
            );
        }
    }
    for r in v["revisions"].as_array().into_iter().flatten() {
        let pods = r["pods"].as_array().cloned().unwrap_or_default();
        if pods.is_empty() && r["desired"].as_u64() == Some(0) {
            continue;
        }
        // A cluster's revisions carry the ReplicaSet's ready count, not pods.
        let ready = r["ready"].as_u64().unwrap_or_else(|| {
            pods.iter()
                .filter(|p| p["ready"].as_bool() == Some(true))
                .count() as u64
        });
        println!(
            "  revision:{} {} {}  {}/{} ready",
            r["revision"],
            r["hash"].as_str().unwrap_or("?"),
            if r["stable"].as_bool() == Some(true) {
                "stable"
            } else {
                ""
            },
            ready,
            r["desired"]
        );
        for p in pods {
            println!(
                "    {:<36} {:<16} ready={:<5} restarts={} age={}s {}{}",
                p["name"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or("?"),
                p["ready"],
                p["restarts"],
                p["ageSeconds"],
                p["addr"].as_str().unwrap_or(""),
                p["replaces"]
                    .as_str()
                    .map(|o| format!("  (replaces {o})"))
                    .unwrap_or_default()
            );
        }
    }
}

/// `serin get`.
pub fn get(args: &GetArgs) -> anyhow::Result<ExitCode> {
    if args.watch {
        return watch(args);
    }
    runtime()?.block_on(async {
        let (path, kind) = get_path(args)?;
        let Some(body) = get_ok(&args.target, &path).await? else {
            return Ok(ExitCode::FAILURE);
        };
        if output::print(&body, args.output)? {
            return Ok(ExitCode::SUCCESS);
        }
        match kind {
            GetKind::FlagRollout => match body.as_array() {
                Some(all) => crate::flag_rollouts::print_table(all),
                None => crate::flag_rollouts::print(&body),
            },
            GetKind::Experiment => match body.as_array() {
                Some(all) => crate::experiments::print_table(all),
                None => crate::experiments::print(&body),
            },
            GetKind::Rollout => match body.as_array() {
                Some(all) => all.iter().for_each(|v| {
                    print_rollout(v);
                    println!();
                }),
                None => print_rollout(&body),
            },
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Which kind `serin get` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GetKind {
    Rollout,
    FlagRollout,
    Experiment,
}

/// What `serin get` asks for: `(API path, kind)`.
/// `serin get NAME` stays a rollout; a kind comes first when there are two
/// arguments, and `flagrollout[s]` or `experiment[s]` alone lists them.
fn get_path(args: &GetArgs) -> anyhow::Result<(String, GetKind)> {
    let is_flag_kind = |k: &str| matches!(k, "flagrollout" | "flagrollouts" | "fr");
    let is_experiment_kind = |k: &str| matches!(k, "experiment" | "experiments" | "exp");
    Ok(match (args.name.as_deref(), args.kind_name.as_deref()) {
        (None, _) => ("/v1/rollouts".into(), GetKind::Rollout),
        (Some("flagrollout" | "flagrollouts"), None) => {
            ("/v1/flagrollouts".into(), GetKind::FlagRollout)
        }
        (Some("experiment" | "experiments"), None) => {
            ("/v1/experiments".into(), GetKind::Experiment)
        }
        (Some(n), None) => (format!("/v1/rollouts/{n}"), GetKind::Rollout),
        (Some(k), Some(n)) if is_flag_kind(k) => {
            (format!("/v1/flagrollouts/{n}"), GetKind::FlagRollout)
        }
        (Some(k), Some(n)) if is_experiment_kind(k) => {
            (format!("/v1/experiments/{n}"), GetKind::Experiment)
        }
        (Some("rollout" | "rollouts" | "ro"), Some(n)) => {
            (format!("/v1/rollouts/{n}"), GetKind::Rollout)
        }
        (Some(k), Some(n)) => anyhow::bail!(
            "serin get {k} {n}: {k:?} is not a kind (rollout, flagrollout, experiment)"
        ),
    })
}

/// Runs one operation (`op` is the API's name: promote, promote-full, …).
pub fn operate(op: &str, args: &OpArgs) -> anyhow::Result<ExitCode> {
    let op = if op == "promote" && args.full {
        "promote-full"
    } else {
        op
    };
    let path = match (args.name.as_str(), &args.kind_name) {
        (_, None) => format!("/v1/rollouts/{}/{op}", args.name),
        ("flagrollout" | "flagrollouts" | "fr", Some(n)) if matches!(op, "abort" | "retry") => {
            format!("/v1/flagrollouts/{n}/{op}")
        }
        ("flagrollout" | "flagrollouts" | "fr", Some(_)) => {
            anyhow::bail!("only abort and retry apply to a FlagRollout")
        }
        // Argo's `kubectl argo rollouts terminate`: the experiment ends.
        ("experiment" | "experiments" | "exp", Some(n)) if op == "abort" => {
            format!("/v1/experiments/{n}/terminate")
        }
        ("experiment" | "experiments" | "exp", Some(_)) => {
            anyhow::bail!("only abort (Argo's terminate) applies to an Experiment")
        }
        (k, Some(n)) => {
            anyhow::bail!("serin {op} {k} {n}: {k:?} is not a kind (flagrollout, experiment)")
        }
    };
    let shown = args.kind_name.as_deref().unwrap_or(&args.name);
    runtime()?.block_on(async {
        let body = serde_json::json!({"toRevision": args.to_revision});
        let (status, body) = call(&args.target, hyper::Method::POST, &path, body).await?;
        if status == 200 {
            println!("{op}: {shown} ok");
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!(
                "error: {}",
                body["error"].as_str().unwrap_or("request failed")
            );
            Ok(ExitCode::FAILURE)
        }
    })
}

/// `serin restart NAME [--in DURATION | --at TIME]`.
#[derive(clap::Args, Debug)]
pub struct RestartArgs {
    /// Rollout name.
    name: String,
    /// Restart this long from now (`30s`, `5m`, `1h`), like
    /// `kubectl argo rollouts restart --in`.
    #[arg(long = "in", value_name = "DURATION", conflicts_with = "at")]
    after: Option<String>,
    /// Restart at this RFC 3339 time (`2030-01-01T02:00:00Z`).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// Sets the rollout's `restartAt` through the API.
pub fn restart(args: &RestartArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut body = serde_json::Map::new();
        if let Some(d) = &args.after {
            body.insert("in".into(), d.clone().into());
        }
        if let Some(t) = &args.at {
            body.insert("at".into(), t.clone().into());
        }
        let (status, body) = call(
            &args.target,
            hyper::Method::POST,
            &format!("/v1/rollouts/{}/restart", args.name),
            serde_json::Value::Object(body),
        )
        .await?;
        if status == 200 {
            println!(
                "restart: {} at {} (each pod replaced once its replacement is available)",
                args.name,
                body["restartAt"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!(
                "error: {}",
                body["error"].as_str().unwrap_or("request failed")
            );
            Ok(ExitCode::FAILURE)
        }
    })
}

/// The restart lines of `serin get`: in progress, scheduled, or last done.
fn print_restart(v: &serde_json::Value) {
    let s = &v["status"];
    let fmt = |ms: u64| serin_clock::format_rfc3339_seconds(ms);
    let restarted = s["restarted_at"].as_u64();
    if let Some(at) = s["restarting"].as_u64() {
        println!(
            "Restart:   in progress (replacing pods created before {})",
            fmt(at)
        );
    } else if let Some(at) = v["restartAt"]
        .as_u64()
        .filter(|at| restarted.is_none_or(|r| r < *at))
    {
        let now = serin_clock::now_ms();
        if at > now {
            println!("Restart:   scheduled at {}", fmt(at));
        } else {
            println!(
                "Restart:   pending since {} (waits until every revision is available)",
                fmt(at)
            );
        }
    }
    if let Some(at) = restarted {
        println!("Restarted: {}", fmt(at));
    }
}

/// `serin apply -f FILE`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Manifest file to apply (written into the watched folder if valid).
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    #[command(flatten)]
    target: Target,
}

/// `serin logs NAME [--pod POD] [--tail N]`.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Rollout name.
    name: String,
    /// Only this pod.
    #[arg(long)]
    pod: Option<String>,
    /// Lines per pod.
    #[arg(long, default_value_t = 50)]
    tail: usize,
    #[command(flatten)]
    target: Target,
}

/// Validates and applies a manifest file through the running control plane.
pub fn apply(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let limit = serin_controlplane::api::MAX_BODY;
    let too_large = |size: u64| {
        anyhow::anyhow!(
            "{}: too large: the request would be {size} bytes; serin apply takes up to {limit} bytes (the API's body limit), so split it into several files",
            args.file.display()
        )
    };
    // Checked before reading: a huge file is refused without loading it.
    let size = std::fs::metadata(&args.file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?
        .len();
    if size > limit as u64 {
        return Err(too_large(size));
    }
    let content = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let body = serde_json::json!({"name": args.file.display().to_string(), "content": content});
    // JSON escaping can make the request larger than the file.
    let encoded = serde_json::to_vec(&body)?.len();
    if encoded > limit {
        return Err(too_large(encoded as u64));
    }
    runtime()?.block_on(async {
        let (status, body) = call(&args.target, hyper::Method::POST, "/v1/apply", body).await?;
        let located = |d: &serde_json::Value| {
            format!(
                "{}:{}:{}: {} (at {})",
                args.file.display(),
                d["line"],
                d["column"],
                d["message"].as_str().unwrap_or(""),
                d["path"].as_str().unwrap_or("")
            )
        };
        if status == 200 {
            println!("applied: {}", body["applied"].as_str().unwrap_or("?"));
            for d in body["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", located(d));
            }
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "error: {}",
            body["error"].as_str().unwrap_or("request failed")
        );
        for d in body["diagnostics"].as_array().into_iter().flatten() {
            eprintln!("  {}", located(d));
        }
        Ok(ExitCode::FAILURE)
    })
}

/// Prints the last lines of a rollout's pod logs.
pub fn logs(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut path = format!("/v1/rollouts/{}/logs?tail={}", args.name, args.tail);
        if let Some(p) = &args.pod {
            path.push_str(&format!("&pod={p}"));
        }
        let Some(body) = get_ok(&args.target, &path).await? else {
            return Ok(ExitCode::FAILURE);
        };
        for pod in body.as_array().into_iter().flatten() {
            println!("==> {} <==", pod["pod"].as_str().unwrap_or("?"));
            for l in pod["lines"].as_array().into_iter().flatten() {
                println!("{}", l.as_str().unwrap_or(""));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `serin report [--since 30d]`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Only deployments that started within this period (e.g. 30d, 12h).
    #[arg(long)]
    since: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    output: Format,
    #[command(flatten)]
    target: Target,
}

/// `serin status NAME [--watch] [--timeout 10m]`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Rollout name.
    name: String,
    /// Keep watching until Healthy, Degraded or the timeout.
    #[arg(long)]
    watch: bool,
    /// Give up after this long (Go duration), exit code 2.
    #[arg(long, default_value = "10m")]
    timeout: String,
    /// Never ask at a manual gate, even on a terminal (by default `--watch`
    /// on a terminal asks "Promote now? [y/N]" when the rollout waits for a
    /// promote, as the seed's deploy script did).
    #[arg(long)]
    no_prompt: bool,
    /// With --watch: also stop, with exit code 4, when the rollout waits at a
    /// manual gate (for scripts that smoke-test a preview, then promote).
    #[arg(long)]
    until_gate: bool,
    #[command(flatten)]
    target: Target,
}

/// Prints the deployment report.
pub fn report(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let path = match &args.since {
            Some(s) => format!("/v1/report?since={s}"),
            None => "/v1/report".into(),
        };
        let Some(body) = get_ok(&args.target, &path).await? else {
            return Ok(ExitCode::FAILURE);
        };
        if !output::print(&body["report"], args.output)? {
            print!("{}", body["text"].as_str().unwrap_or(""));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Exit 0 when Healthy, 1 when Degraded (aborted, deadline), 2 on timeout,
/// 3 still progressing (without --watch), 4 at a manual gate (with
/// --until-gate) — so a deploy script is
/// `serin apply -f x.yaml && serin status app --watch`.
pub fn status(args: &StatusArgs) -> anyhow::Result<i32> {
    let timeout = serin_spec::parse_go_duration(&args.timeout)
        .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    runtime()?.block_on(async {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = String::new();
        let prompt = args.watch
            && !args.no_prompt
            && std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal();
        let mut asked: Option<String> = None;
        loop {
            let (code, body) = call(
                &args.target,
                hyper::Method::GET,
                &format!("/v1/rollouts/{}", args.name),
                serde_json::Value::Null,
            )
            .await?;
            if code != 200 {
                eprintln!(
                    "error: {}",
                    body["error"].as_str().unwrap_or("request failed")
                );
                return Ok(1);
            }
            let s = &body["status"];
            let mut phase = s["phase"].as_str().unwrap_or("?").to_string();
            // Just after an apply the status may still be the previous
            // revision's Healthy: only the desired revision being stable counts.
            if phase == "Healthy"
                && body["desiredHash"].is_string()
                && s["stable_hash"] != body["desiredHash"]
            {
                phase = "Progressing".into();
            }
            let line = format!(
                "{} {}{}",
                phase,
                s["message"].as_str().unwrap_or(""),
                s["current_step_index"]
                    .as_u64()
                    .map(|i| format!(" (step {i}/{})", body["steps"]))
                    .unwrap_or_default()
            );
            if line != last {
                println!("{}: {line}", args.name);
                last = line.clone();
            }
            if args.until_gate && body["awaitingPromotion"].is_string() {
                println!("{}: waiting for promotion", args.name);
                return Ok(4);
            }
            if let Some(gate) = body["awaitingPromotion"].as_str()
                && prompt
                && asked.as_deref() != Some(line.as_str())
            {
                // Ask once per gate; a "no" keeps watching.
                asked = Some(line.clone());
                if ask(&format!(
                    "{}: waiting at a manual gate ({gate}). Promote now? [y/N] ",
                    args.name
                ))? {
                    let (code, body) = call(
                        &args.target,
                        hyper::Method::POST,
                        &format!("/v1/rollouts/{}/promote", args.name),
                        serde_json::json!({}),
                    )
                    .await?;
                    if code == 200 {
                        println!("{}: promoted", args.name);
                    } else {
                        eprintln!(
                            "error: promote: {}",
                            body["error"].as_str().unwrap_or("request failed")
                        );
                    }
                } else {
                    println!(
                        "{}: not promoted; still watching (serin promote {} to go on)",
                        args.name, args.name
                    );
                }
            }
            match phase.as_str() {
                "Healthy" => return Ok(0),
                "Degraded" => return Ok(1),
                _ if !args.watch => return Ok(3),
                _ => {}
            }
            if std::time::Instant::now() > deadline {
                eprintln!("{}: timed out after {}", args.name, args.timeout);
                return Ok(2);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
}

/// Asks a yes/no question on the terminal; only "y"/"yes" is a yes.
fn ask(question: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    let mut err = std::io::stderr();
    err.write_all(question.as_bytes())?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// `serin emergency-rollback NAME`.
#[derive(clap::Args, Debug)]
pub struct EmergencyArgs {
    /// Rollout name.
    name: String,
    /// Flags carrying this tag are disabled (kill switch) when `serin up`
    /// serves flags.
    #[arg(long, default_value = "experimental")]
    flag_tag: String,
    /// Flag environment.
    #[arg(long, default_value = "production")]
    environment: String,
    /// Admin token of the flag server (or SERIN_ADMIN_TOKEN); without one the
    /// kill switch step is skipped and says so.
    #[arg(long, env = "SERIN_ADMIN_TOKEN", hide_env_values = true)]
    flags_token: Option<String>,
    /// Give up waiting for stable traffic after this long.
    #[arg(long, default_value = "60s")]
    timeout: String,
    #[command(flatten)]
    target: Target,
}

/// The seed's emergency playbook in one command: abort (rollout in
/// progress) or undo (already promoted), wait until all traffic is on the
/// stable revision, kill-switch the experimental flags, notify. The server
/// runs it (`POST /v1/rollouts/{name}/emergency-rollback`); this prints each
/// step as it streams back. Running it twice is harmless.
pub fn emergency_rollback(args: &EmergencyArgs) -> anyhow::Result<ExitCode> {
    let timeout = serin_spec::parse_go_duration(&args.timeout)
        .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    runtime()?.block_on(async {
        let api = args.target.api()?;
        let body = serde_json::json!({
            "flagTag": args.flag_tag,
            "environment": args.environment,
            "flagsToken": args.flags_token,
            "timeoutMs": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
        let req = hyper::Request::post(format!(
            "{}/v1/rollouts/{}/emergency-rollback",
            api.base, args.name
        ))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", args.target.bearer()))
        .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
        let res = api.client.request(req).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach serin up at {}: {}",
                api.base,
                serin_error_chain::error_chain(&e)
            )
        })?;
        let status = res.status().as_u16();
        let mut body = res.into_body();
        if status != 200 {
            let bytes = body.collect().await?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            eprintln!("error: {}", v["error"].as_str().unwrap_or("request failed"));
            return Ok(ExitCode::FAILURE);
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                    continue;
                };
                let at = v["at"].as_f64().unwrap_or(0.0);
                if let Some(step) = v["step"].as_str() {
                    println!("[{at:>7.3}s] {step} ({} ms)", v["ms"].as_u64().unwrap_or(0));
                } else if let Some(note) = v["note"].as_str() {
                    println!("[{at:>7.3}s] {note}");
                } else if v["done"] == serde_json::json!(true) {
                    let seconds = v["seconds"].as_f64().unwrap_or(0.0);
                    if v["ok"] == serde_json::json!(true) {
                        println!("emergency rollback of {} done in {seconds:.3} s", args.name);
                        return Ok(ExitCode::SUCCESS);
                    }
                    eprintln!("error: {}", v["error"].as_str().unwrap_or("failed"));
                    return Ok(ExitCode::from(2));
                }
            }
        }
        eprintln!("error: the control plane closed the stream before the playbook finished");
        Ok(ExitCode::FAILURE)
    })
}

/// `serin token create NAME --role viewer|deployer|admin`.
#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// Who the token is for (1-64 letters, digits, `.`, `_`, `-`, `@`).
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// What it may do.
    #[arg(long, default_value = "viewer")]
    role: String,
    /// The token stops working after this Go duration (`720h`).
    #[arg(long, conflicts_with_all = ["revoke", "list"])]
    expires_in: Option<String>,
    /// Revoke the token with this name instead: it stops working at once.
    #[arg(long, conflicts_with = "list")]
    revoke: bool,
    /// List tokens (names, roles, creation and expiry; never values).
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    target: Target,
}

/// Creates an API token and prints it once; or revokes or lists tokens.
pub fn token(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let name = args.name.clone().unwrap_or_default();
        let (method, path, body, ok) = if args.list {
            (
                hyper::Method::GET,
                "/v1/tokens".to_string(),
                serde_json::Value::Null,
                200,
            )
        } else if args.revoke {
            (
                hyper::Method::DELETE,
                format!("/v1/tokens/{}", percent_path(&name)),
                serde_json::Value::Null,
                200,
            )
        } else {
            (
                hyper::Method::POST,
                "/v1/tokens".to_string(),
                serde_json::json!({"name": name, "role": args.role, "expiresIn": args.expires_in}),
                201,
            )
        };
        let (status, body) = call(&args.target, method, &path, body).await?;
        if status != ok {
            eprintln!(
                "error: {}",
                body["error"].as_str().unwrap_or("request failed")
            );
            return Ok(ExitCode::FAILURE);
        }
        if args.list {
            println!("{:<32} {:<9} {:<24} EXPIRES", "NAME", "ROLE", "CREATED");
            for t in body.as_array().into_iter().flatten() {
                let time = |v: &serde_json::Value| {
                    v.as_u64()
                        .map_or("never".to_string(), serin_clock::format_rfc3339_seconds)
                };
                println!(
                    "{:<32} {:<9} {:<24} {}",
                    t["name"].as_str().unwrap_or("?"),
                    t["role"].as_str().unwrap_or("?"),
                    time(&t["created_ms"]),
                    time(&t["expires_ms"])
                );
            }
        } else if args.revoke {
            println!("revoked {name}");
        } else {
            println!("{}", body["token"].as_str().unwrap_or(""));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `s` as one URL path segment.
fn percent_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `serin get --watch`: redraws the tree in place whenever it changes.
fn watch(args: &GetArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    runtime()?.block_on(async {
        let (path, kind) = get_path(args)?;
        let mut last = serde_json::Value::Null;
        loop {
            let (status, body) = call(
                &args.target,
                hyper::Method::GET,
                &path,
                serde_json::Value::Null,
            )
            .await?;
            if status != 200 {
                eprintln!(
                    "error: {}",
                    body["error"].as_str().unwrap_or("request failed")
                );
                return Ok(ExitCode::FAILURE);
            }
            // Ages tick every second; redraw on real changes only.
            let mut key = body.clone();
            strip_ages(&mut key);
            if key != last && args.output != Format::Text {
                // Scripts get one document per change, as `kubectl get -w -o json` does.
                output::print(&body, args.output)?;
                last = key;
            } else if key != last {
                print!("\x1b[2J\x1b[H");
                match body.as_array() {
                    Some(all) if kind == GetKind::FlagRollout => {
                        crate::flag_rollouts::print_table(all)
                    }
                    None if kind == GetKind::FlagRollout => crate::flag_rollouts::print(&body),
                    Some(all) if kind == GetKind::Experiment => {
                        crate::experiments::print_table(all)
                    }
                    None if kind == GetKind::Experiment => crate::experiments::print(&body),
                    Some(all) => all.iter().for_each(|v| {
                        print_rollout(v);
                        println!();
                    }),
                    None => print_rollout(&body),
                }
                let _ = std::io::stdout().flush();
                last = key;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
}

fn strip_ages(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("ageSeconds");
            m.values_mut().for_each(strip_ages);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_ages),
        _ => {}
    }
}

/// `serin set image NAME CONTAINER=IMAGE`.
#[derive(clap::Args, Debug)]
pub struct SetImageArgs {
    /// Rollout name.
    name: String,
    /// `container=image`, e.g. `app=argoproj/rollouts-demo:yellow`.
    assignment: String,
    #[command(flatten)]
    target: Target,
}

/// Sets a container image in the rollout's manifest and applies it.
pub fn set_image(args: &SetImageArgs) -> anyhow::Result<ExitCode> {
    let Some((container, image)) = args.assignment.split_once('=') else {
        anyhow::bail!("expected CONTAINER=IMAGE, got {:?}", args.assignment);
    };
    runtime()?.block_on(async {
        let body = serde_json::json!({"container": container, "image": image});
        let (status, body) = call(
            &args.target,
            hyper::Method::POST,
            &format!("/v1/rollouts/{}/set-image", args.name),
            body,
        )
        .await?;
        if status == 200 {
            println!(
                "{}: {container} → {image} ({})",
                args.name,
                body["applied"].as_str().unwrap_or("?")
            );
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "error: {}",
            body["error"].as_str().unwrap_or("request failed")
        );
        for d in body["diagnostics"].as_array().into_iter().flatten() {
            eprintln!(
                "  {}:{}:{}: {}",
                d["file"].as_str().unwrap_or("?"),
                d["line"],
                d["column"],
                d["message"].as_str().unwrap_or("")
            );
        }
        Ok(ExitCode::FAILURE)
    })
}
