//! A Service's config compiled for the hot path: header routes with
//! compiled matchers, a weighted schedule, endpoints with round-robin
//! cursors, and the counters each request lands in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use http::uri::Authority;

use crate::ConfigError;
use crate::config::{CompiledMatch, CompiledMirrorMatch, ServiceConfig, UpstreamProtocol};
use crate::stats::{RevisionStats, StatsRegistry};

/// Default time allowed until response headers.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One backend address. Shared by every compiled config that lists it, so
/// a config swap keeps its identity; when it leaves the set it is retired and,
/// after the drain grace, requests still waiting on it are cut off.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Unique for the life of the process: the index of this endpoint's
    /// idle connections in each worker's pool.
    pub(crate) id: usize,
    pub(crate) addr: SocketAddr,
    pub(crate) authority: Authority,
    /// Set once the drain grace after leaving the set has passed.
    cut: tokio::sync::watch::Sender<bool>,
    /// False while the endpoint is out of the set (grace running).
    pub(crate) live: AtomicBool,
    /// The tasks driving this endpoint's HTTP/1.1 connections, aborted when
    /// it is cut off (so requests in flight on them fail at once). Touched
    /// when a connection opens or closes, never per request.
    conns: std::sync::Mutex<HashMap<u64, tokio::task::AbortHandle>>,
    /// A second handle on each socket of this endpoint's lean HTTP/1.1
    /// connections (see `lean`), which run on no task of their own: they
    /// are shut down when it is cut off, so a read or write waiting on
    /// them fails at once. Touched when a connection opens or closes.
    sockets: std::sync::Mutex<HashMap<u64, std::net::TcpStream>>,
    next_conn: std::sync::atomic::AtomicU64,
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Result<Self, ConfigError> {
        let authority =
            Authority::try_from(addr.to_string().as_str()).map_err(|e| ConfigError {
                field: "endpoints".into(),
                message: format!("{addr}: {e}"),
            })?;
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Relaxed),
            addr,
            authority,
            cut: tokio::sync::watch::Sender::new(false),
            live: AtomicBool::new(true),
            conns: std::sync::Mutex::new(HashMap::new()),
            sockets: std::sync::Mutex::new(HashMap::new()),
            next_conn: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Resolves once the endpoint's drain grace has expired.
    pub(crate) async fn cut_off(&self) {
        let mut rx = self.cut.subscribe();
        // The sender lives as long as `self`, so this only returns on `true`.
        let _ = rx.wait_for(|cut| *cut).await;
    }

    /// Whether the endpoint's drain grace has expired.
    pub(crate) fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    pub(crate) fn cut_now(&self) {
        self.cut.send_replace(true);
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|p| p.into_inner()));
        for task in conns.into_values() {
            task.abort();
        }
        let sockets = std::mem::take(&mut *self.sockets.lock().unwrap_or_else(|p| p.into_inner()));
        for s in sockets.into_values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// An id for a new connection to this endpoint.
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Relaxed)
    }

    /// Abort connection `id`'s task when the endpoint is cut off (at once
    /// if it already is).
    pub(crate) fn track_conn(&self, id: u64, task: tokio::task::AbortHandle) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock: `cut_now` sets the flag before taking it.
        if self.is_cut() {
            task.abort();
            return;
        }
        conns.insert(id, task);
    }

    /// Shut lean connection `id`'s socket down (through `handle`, a
    /// duplicate of it) when the endpoint is cut off. False, with the
    /// socket shut down, if it already is.
    pub(crate) fn track_socket(&self, id: u64, handle: std::net::TcpStream) -> bool {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock: `cut_now` sets the flag before taking it.
        if self.is_cut() {
            let _ = handle.shutdown(std::net::Shutdown::Both);
            return false;
        }
        sockets.insert(id, handle);
        true
    }

    /// Lean connection `id` is closing.
    pub(crate) fn forget_socket(&self, id: u64) {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Connection `id` has closed.
    pub(crate) fn forget_conn(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// Endpoints by address, kept across configs (only touched when applying).
#[derive(Debug, Default)]
pub(crate) struct EndpointRegistry {
    pub(crate) by_addr: HashMap<SocketAddr, Arc<Endpoint>>,
}

impl EndpointRegistry {
    pub(crate) fn get(&mut self, addr: SocketAddr) -> Result<Arc<Endpoint>, ConfigError> {
        if let Some(e) = self.by_addr.get(&addr) {
            e.live.store(true, Relaxed);
            return Ok(e.clone());
        }
        let e = Arc::new(Endpoint::new(addr)?);
        self.by_addr.insert(addr, e.clone());
        Ok(e)
    }
}

/// One revision of a Service.
#[derive(Debug)]
pub(crate) struct Revision {
    pub(crate) endpoints: Vec<Arc<Endpoint>>,
    cursor: AtomicUsize,
    pub(crate) stats: Arc<RevisionStats>,
}

impl Revision {
    /// Round robin over the endpoints; `None` when there is none.
    pub(crate) fn next_endpoint(&self) -> Option<(usize, &Arc<Endpoint>)> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let i = self.cursor.fetch_add(1, Relaxed) % n;
        Some((i, &self.endpoints[i]))
    }
}

/// Which revision (and maybe endpoint) a request goes to, without header routes.
#[derive(Debug)]
enum Schedule {
    /// Weighted: a 100-slot schedule of revision indices produced by smooth
    /// weighted round robin, walked by an atomic counter.
    Weighted {
        slots: Vec<u16>,
        counter: AtomicUsize,
    },
    /// No weights: round robin over every (revision, endpoint) pair.
    Spread {
        pairs: Vec<(u16, u16)>,
        counter: AtomicUsize,
    },
}

/// The target of one request.
pub(crate) enum Pick<'a> {
    /// A revision; the endpoint is chosen by the caller (it may retry).
    Revision(&'a Revision),
    /// A revision and its endpoint already chosen (spread mode).
    Endpoint(&'a Revision, usize),
    /// The Service has no revision at all.
    Nothing,
}

/// A mirror route ready for the hot path.
#[derive(Debug)]
struct Mirror {
    matches: Vec<CompiledMirrorMatch>,
    percentage: u64,
    target: usize,
    /// Matching requests seen, to copy exactly `percentage` of them.
    seen: AtomicUsize,
}

/// A Service ready to serve.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) revisions: Vec<Revision>,
    header_routes: Vec<(Vec<CompiledMatch>, usize)>,
    mirrors: Vec<Mirror>,
    schedule: Schedule,
    pub(crate) timeout: Duration,
    pub(crate) protocol: UpstreamProtocol,
    /// Counters for requests to a Service without revisions.
    pub(crate) orphan_stats: Arc<RevisionStats>,
}

/// Smooth weighted round robin (nginx's algorithm) unrolled over one period
/// of `sum` picks: each revision appears exactly `weight` times, interleaved
/// as evenly as possible (90/10 gives 9 stable, 1 canary, repeated).
fn smooth_schedule(weights: &[(usize, u32)]) -> Vec<u16> {
    let total: i64 = weights.iter().map(|&(_, w)| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut slots = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, &(_, w)) in weights.iter().enumerate() {
            current[i] += i64::from(w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        slots.push(u16::try_from(weights[best].0).unwrap_or(0));
    }
    slots
}

impl Service {
    /// Compile a validated Service config.
    pub(crate) fn compile(
        s: &ServiceConfig,
        index: usize,
        endpoints: &mut EndpointRegistry,
        stats: &StatsRegistry,
    ) -> Result<Self, ConfigError> {
        let at = format!("services[{index}]");
        let mut revisions = Vec::with_capacity(s.revisions.len());
        let mut index_of = HashMap::new();
        for (j, r) in s.revisions.iter().enumerate() {
            index_of.insert(r.hash.as_str(), j);
            let eps = r
                .endpoints
                .iter()
                .map(|&a| endpoints.get(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|mut e| {
                    e.field = format!("{at}.revisions[{j}].endpoints");
                    e
                })?;
            revisions.push(Revision {
                endpoints: eps,
                cursor: AtomicUsize::new(0),
                stats: stats.get(&s.name, &s.app, &r.hash),
            });
        }
        let lookup = |h: &str, field: String| {
            index_of.get(h).copied().ok_or_else(|| ConfigError {
                field,
                message: format!("unknown revision {h:?} (not in revisions)"),
            })
        };
        let mut header_routes = Vec::with_capacity(s.header_routes.len());
        for (j, route) in s.header_routes.iter().enumerate() {
            let rat = format!("{at}.headerRoutes[{j}]");
            let target = lookup(&route.hash, format!("{rat}.hash"))?;
            let matches = route
                .matches
                .iter()
                .enumerate()
                .map(|(k, m)| m.compile(&format!("{rat}.matches[{k}]")))
                .collect::<Result<Vec<_>, _>>()?;
            header_routes.push((matches, target));
        }
        let mut mirrors = Vec::with_capacity(s.mirror_routes.len());
        for (j, route) in s.mirror_routes.iter().enumerate() {
            let rat = format!("{at}.mirrorRoutes[{j}]");
            let target = lookup(&route.hash, format!("{rat}.hash"))?;
            let matches = route.compile(&rat, &|h: &str| index_of.contains_key(h))?;
            mirrors.push(Mirror {
                matches,
                percentage: u64::from(route.percentage),
                target,
                seen: AtomicUsize::new(0),
            });
        }
        let schedule = if s.weights.is_empty() {
            let mut pairs = Vec::new();
            for (j, r) in revisions.iter().enumerate() {
                for k in 0..r.endpoints.len() {
                    pairs.push((
                        u16::try_from(j).unwrap_or(u16::MAX),
                        u16::try_from(k).unwrap_or(u16::MAX),
                    ));
                }
            }
            Schedule::Spread {
                pairs,
                counter: AtomicUsize::new(0),
            }
        } else {
            let mut ws = Vec::with_capacity(s.weights.len());
            for (j, w) in s.weights.iter().enumerate() {
                ws.push((
                    lookup(&w.hash, format!("{at}.weights[{j}].hash"))?,
                    w.weight,
                ));
            }
            Schedule::Weighted {
                slots: smooth_schedule(&ws),
                counter: AtomicUsize::new(0),
            }
        };
        Ok(Self {
            revisions,
            header_routes,
            mirrors,
            schedule,
            timeout: s
                .request_timeout_ms
                .map_or(DEFAULT_REQUEST_TIMEOUT, Duration::from_millis),
            protocol: s.upstream_protocol,
            orphan_stats: stats.get(&s.name, &s.app, ""),
        })
    }

    /// Whether requests are routed or copied by their headers (then the
    /// request needs a header map).
    pub(crate) fn reads_headers(&self) -> bool {
        !self.header_routes.is_empty() || !self.mirrors.is_empty()
    }

    /// Whether the Service copies some requests to a revision.
    pub(crate) fn has_mirrors(&self) -> bool {
        !self.mirrors.is_empty()
    }

    /// Whether a header route takes this request (it then goes to that
    /// route's revision, and is not mirrored).
    pub(crate) fn header_routed(&self, headers: &http::HeaderMap) -> bool {
        self.header_routes
            .iter()
            .any(|(matches, _)| matches.iter().all(|m| m.matches(headers)))
    }

    /// The revision a copy of this request goes to, if the first mirror
    /// route that matches it picks it: exactly `percentage` of every 100
    /// matching requests, spread evenly.
    pub(crate) fn mirror(
        &self,
        method: &http::Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Option<&Revision> {
        let m = self
            .mirrors
            .iter()
            .find(|m| m.matches.iter().any(|mm| mm.matches(method, path, headers)))?;
        let n = m.seen.fetch_add(1, Relaxed) as u64 % 100;
        // Copy request n when floor((n+1)p/100) steps past floor(np/100).
        let copy = (n + 1) * m.percentage / 100 != n * m.percentage / 100;
        copy.then(|| &self.revisions[m.target])
    }

    /// Where a request with these headers goes.
    pub(crate) fn pick(&self, headers: &http::HeaderMap) -> Pick<'_> {
        for (matches, target) in &self.header_routes {
            if matches.iter().all(|m| m.matches(headers)) {
                return Pick::Revision(&self.revisions[*target]);
            }
        }
        match &self.schedule {
            Schedule::Weighted { slots, counter } => {
                let n = counter.fetch_add(1, Relaxed);
                match slots.get(n % slots.len().max(1)) {
                    Some(&r) => Pick::Revision(&self.revisions[usize::from(r)]),
                    None => Pick::Nothing,
                }
            }
            Schedule::Spread { pairs, counter } => {
                if pairs.is_empty() {
                    return match self.revisions.first() {
                        Some(r) => Pick::Revision(r),
                        None => Pick::Nothing,
                    };
                }
                let n = counter.fetch_add(1, Relaxed);
                let (r, e) = pairs[n % pairs.len()];
                Pick::Endpoint(&self.revisions[usize::from(r)], usize::from(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::smooth_schedule;

    #[test]
    fn smooth_schedule_is_exact_and_interleaved() {
        let s = smooth_schedule(&[(0, 90), (1, 10)]);
        assert_eq!(s.len(), 100);
        assert_eq!(s.iter().filter(|&&r| r == 1).count(), 10);
        // The canary never comes twice in a row and is spread out: every
        // window of 10 consecutive picks holds exactly one canary pick.
        for w in 0..91 {
            assert_eq!(
                s[w..w + 10].iter().filter(|&&r| r == 1).count(),
                1,
                "window {w}"
            );
        }
        let s = smooth_schedule(&[(0, 0), (1, 100)]);
        assert!(s.iter().all(|&r| r == 1));
        let s = smooth_schedule(&[(2, 33), (0, 33), (1, 34)]);
        assert_eq!(s.iter().filter(|&&r| r == 2).count(), 33);
        assert_eq!(s.iter().filter(|&&r| r == 1).count(), 34);
    }
}
