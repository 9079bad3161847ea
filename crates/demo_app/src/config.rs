//! Command line / environment configuration and the version presets.

use std::time::Duration;

use clap::Parser;

/// Flags; each also reads the environment variable named next to it. The
/// listening port comes from `$PORT` first, then `--port`, then 8080.
#[derive(Debug, Parser)]
#[command(name = "serin-demo-app", version, about)]
pub struct Cli {
    /// Port on 127.0.0.1 when `$PORT` is not set.
    #[arg(long)]
    pub port: Option<u16>,
    /// Version or image reference, e.g. `blue`, `bad-red`,
    /// `argoproj/rollouts-demo:slow-yellow`.
    #[arg(long = "demo-version", env = "DEMO_VERSION", default_value = "blue")]
    pub demo_version: String,
    /// Fraction of requests answered with HTTP 500 (0..1); overrides the preset.
    #[arg(long, env = "DEMO_ERROR_RATE")]
    pub error_rate: Option<f64>,
    /// Extra latency per request in milliseconds; overrides the preset.
    #[arg(long, env = "DEMO_LATENCY_MS")]
    pub latency_ms: Option<u64>,
    /// Exit with status 1 right after start.
    #[arg(long, env = "DEMO_CRASH_ON_START", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub crash_on_start: bool,
    /// Memory to leak per second, in MiB (resident: the pages are written).
    #[arg(long, env = "DEMO_LEAK_MB_PER_SEC", default_value_t = 0.0)]
    pub leak_mb_per_sec: f64,
    /// Stop leaking after this many MiB, so a demo cannot take the machine down.
    #[arg(long, env = "DEMO_LEAK_MAX_MB", default_value_t = 512)]
    pub leak_max_mb: u64,
    /// Start with readiness failing (flip it with `POST /admin/ready`).
    #[arg(long, env = "DEMO_READY_FAIL", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub ready_fail: bool,
    /// Seed for the error-rate randomness (random when unset).
    #[arg(long, env = "DEMO_SEED")]
    pub seed: Option<u64>,
    /// Drain period after SIGTERM during which requests are still served.
    #[arg(long, env = "DEMO_DRAIN_MS", default_value_t = 2000)]
    pub drain_ms: u64,
    /// Readiness stays 503 for this long after start (simulated warm-up).
    #[arg(long, env = "DEMO_WARMUP_MS", default_value_t = 0)]
    pub warmup_ms: u64,
    /// Fault: only requests above this percentile (0..100) get the extra
    /// latency, e.g. 80 slows the slowest 20 %: p95 moves, the median not.
    #[arg(long, env = "DEMO_LATENCY_PERCENTILE")]
    pub latency_percentile: Option<f64>,
    /// Fault: exit with status 1 this many milliseconds after start (a crash
    /// loop once the platform restarts it).
    #[arg(long, env = "DEMO_CRASH_AFTER_MS")]
    pub crash_after_ms: Option<u64>,
    /// Fault: readiness alternates ready / not ready every this many ms.
    #[arg(long, env = "DEMO_READY_FLAP_MS")]
    pub ready_flap_ms: Option<u64>,
    /// Fault: slow start — extra latency that starts at
    /// `DEMO_SLOW_START_LATENCY_MS` and falls linearly to zero over this many ms.
    #[arg(long, env = "DEMO_SLOW_START_MS", default_value_t = 0)]
    pub slow_start_ms: u64,
    /// Extra latency right after start when `DEMO_SLOW_START_MS` is set.
    #[arg(long, env = "DEMO_SLOW_START_LATENCY_MS", default_value_t = 500)]
    pub slow_start_latency_ms: u64,
    /// Fault: requests to this path (exact match) get HTTP 500.
    #[arg(long, env = "DEMO_FAULT_PATH")]
    pub fault_path: Option<String>,
    /// Fault: requests carrying this header, `name: value` (or only `name`
    /// for any value), get HTTP 500.
    #[arg(long, env = "DEMO_FAULT_HEADER")]
    pub fault_header: Option<String>,
}

/// Colours the rollouts-demo image ships.
const COLORS: [&str; 6] = ["red", "orange", "yellow", "green", "blue", "purple"];
/// Error rate of the `bad-*` tags.
pub const BAD_ERROR_RATE: f64 = 0.5;
/// Extra latency of the `slow-*` tags.
pub const SLOW_LATENCY: Duration = Duration::from_millis(200);

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub version: String,
    pub color: String,
    pub error_rate: f64,
    pub latency: Duration,
    pub crash_on_start: bool,
    pub leak_mb_per_sec: f64,
    pub leak_max_mb: u64,
    pub ready_fail: bool,
    pub seed: Option<u64>,
    pub drain: Duration,
    pub warmup: Duration,
    /// Share of requests (0..1] that get `latency`: 1 − percentile / 100.
    pub latency_share: f64,
    pub crash_after: Option<Duration>,
    pub ready_flap: Option<Duration>,
    pub slow_start: Duration,
    pub slow_start_latency: Duration,
    pub fault_path: Option<String>,
    /// Lower-case header name and the value it must have (`None`: any).
    pub fault_header: Option<(String, Option<String>)>,
}

/// `name: value` or `name` → (lower-case name, value).
fn parse_fault_header(s: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match s.split_once(':') {
        Some((n, v)) => (n.trim(), Some(v.trim().to_owned())),
        None => (s.trim(), None),
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "DEMO_FAULT_HEADER must be `name: value` or `name`, got {s:?}"
        ));
    }
    Ok((name.to_ascii_lowercase(), value))
}

/// Behaviour a version tag implies before explicit overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub version: String,
    pub color: String,
    pub error_rate: f64,
    pub latency: Duration,
}

/// `argoproj/rollouts-demo:bad-red` → version `bad-red`, colour `red`, 50 %
/// errors. Unknown colours are accepted (any version string works) as `gray`.
pub fn preset(version_or_image: &str) -> Preset {
    let s = version_or_image.trim();
    // The tag follows the last ':' only when it comes after the last '/'
    // (`localhost:5000/demo` has a registry port, not a tag).
    let tag = match (s.rfind(':'), s.rfind('/')) {
        (Some(c), Some(sl)) if c > sl => &s[c + 1..],
        (Some(c), None) => &s[c + 1..],
        _ => s,
    };
    let (base, error_rate, latency) = if let Some(b) = tag.strip_prefix("bad-") {
        (b, BAD_ERROR_RATE, Duration::ZERO)
    } else if let Some(b) = tag.strip_prefix("slow-") {
        (b, 0.0, SLOW_LATENCY)
    } else {
        (tag, 0.0, Duration::ZERO)
    };
    let color = if COLORS.contains(&base) { base } else { "gray" };
    Preset {
        version: tag.to_owned(),
        color: color.to_owned(),
        error_rate,
        latency,
    }
}

/// Checks an error rate is a probability.
pub fn validate_error_rate(rate: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("error rate must be within 0..1, got {rate}"))
    }
}

impl Config {
    /// Applies the preset, then explicit overrides; `port_env` is `$PORT`.
    pub fn from_cli(cli: Cli, port_env: Option<String>) -> Result<Self, String> {
        let port = match port_env.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            Some(p) => {
                let port: u16 = p.parse().map_err(|e| format!("invalid PORT {p:?}: {e}"))?;
                if cli.port.is_some_and(|f| f != port) {
                    tracing::warn!(port, "both $PORT and --port given: $PORT wins");
                }
                port
            }
            None => cli.port.unwrap_or(8080),
        };
        if cli.demo_version.trim().is_empty() {
            return Err("DEMO_VERSION / --demo-version must not be empty".to_owned());
        }
        let p = preset(&cli.demo_version);
        let error_rate = validate_error_rate(cli.error_rate.unwrap_or(p.error_rate))
            .map_err(|e| format!("DEMO_ERROR_RATE / --error-rate: {e}"))?;
        if !(cli.leak_mb_per_sec.is_finite() && cli.leak_mb_per_sec >= 0.0) {
            return Err(format!(
                "DEMO_LEAK_MB_PER_SEC must be a non-negative number, got {}",
                cli.leak_mb_per_sec
            ));
        }
        let latency_share = match cli.latency_percentile {
            None => 1.0,
            Some(p) if (0.0..100.0).contains(&p) => 1.0 - p / 100.0,
            Some(p) => {
                return Err(format!(
                    "DEMO_LATENCY_PERCENTILE must be within 0..100 (exclusive of 100), got {p}"
                ));
            }
        };
        if cli.ready_flap_ms == Some(0) {
            return Err("DEMO_READY_FLAP_MS must be at least 1".to_owned());
        }
        let fault_header = cli
            .fault_header
            .as_deref()
            .map(parse_fault_header)
            .transpose()?;
        if let Some(p) = &cli.fault_path
            && !p.starts_with('/')
        {
            return Err(format!("DEMO_FAULT_PATH must start with '/', got {p:?}"));
        }
        Ok(Self {
            port,
            version: p.version,
            color: p.color,
            error_rate,
            latency: cli
                .latency_ms
                .map(Duration::from_millis)
                .unwrap_or(p.latency),
            crash_on_start: cli.crash_on_start,
            leak_mb_per_sec: cli.leak_mb_per_sec,
            leak_max_mb: cli.leak_max_mb,
            ready_fail: cli.ready_fail,
            seed: cli.seed,
            drain: Duration::from_millis(cli.drain_ms),
            warmup: Duration::from_millis(cli.warmup_ms),
            latency_share,
            crash_after: cli.crash_after_ms.map(Duration::from_millis),
            ready_flap: cli.ready_flap_ms.map(Duration::from_millis),
            slow_start: Duration::from_millis(cli.slow_start_ms),
            slow_start_latency: Duration::from_millis(cli.slow_start_latency_ms),
            fault_path: cli.fault_path,
            fault_header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_rollouts_demo_tags() {
        let p = preset("argoproj/rollouts-demo:bad-red");
        assert_eq!((p.version.as_str(), p.color.as_str()), ("bad-red", "red"));
        assert_eq!(p.error_rate, BAD_ERROR_RATE);
        let p = preset("slow-yellow");
        assert_eq!(p.color, "yellow");
        assert_eq!(p.latency, SLOW_LATENCY);
        assert_eq!(p.error_rate, 0.0);
        let p = preset("localhost:5000/rollouts-demo");
        assert_eq!(p.version, "localhost:5000/rollouts-demo");
        assert_eq!(p.color, "gray");
        let p = preset("blue");
        assert_eq!(
            (p.color.as_str(), p.error_rate, p.latency),
            ("blue", 0.0, Duration::ZERO)
        );
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("serin-demo-app").chain(args.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn fault_settings_are_validated() {
        let c = Config::from_cli(cli(&["--latency-percentile", "80"]), None).expect("valid");
        assert!((c.latency_share - 0.2).abs() < 1e-9);
        assert!(Config::from_cli(cli(&["--latency-percentile", "100"]), None).is_err());
        assert!(Config::from_cli(cli(&["--ready-flap-ms", "0"]), None).is_err());
        assert!(Config::from_cli(cli(&["--fault-path", "checkout"]), None).is_err());
        let c = Config::from_cli(cli(&["--fault-header", "X-Tier: premium"]), None).expect("valid");
        assert_eq!(
            c.fault_header,
            Some(("x-tier".to_owned(), Some("premium".to_owned())))
        );
        let c = Config::from_cli(cli(&["--fault-header", "x-canary"]), None).expect("valid");
        assert_eq!(c.fault_header, Some(("x-canary".to_owned(), None)));
        assert!(Config::from_cli(cli(&["--fault-header", ": v"]), None).is_err());
    }

    #[test]
    fn error_rate_must_be_a_probability() {
        assert!(validate_error_rate(1.5).is_err());
        assert!(validate_error_rate(-0.1).is_err());
        assert!(validate_error_rate(f64::NAN).is_err());
        assert_eq!(validate_error_rate(0.25), Ok(0.25));
    }
}
