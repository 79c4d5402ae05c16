//! The XML port: tokio serves every TCP accept channel, so many slow clients cost tasks, not
//! threads. A dump is rendered (and gzipped) off the async workers, once per second and store
//! generation, and shared by every client of that second. The port is bounded against
//! clients that connect and never read: a cap on clients in total and per address, a write
//! timeout on every channel, and accept errors that back off instead of spinning.
//!
//! gmond-rs.conf's query channels share those bounds: a client sends one line,
//! `METRICS <patterns>` (`ganglia_wire::filter`, at most 4 KiB, within [`QUERY_READ_TIMEOUT`]),
//! and gets the document of those metrics, every host listed. A balancer agent that only
//! elects its leader reads two metrics per host instead of the whole view.

use super::tasks::Shared;
use super::{Error, Exit, ReloadCheck};
use crate::iostats::IoStats;
use crate::store::{ClusterStore, Generation, Timestamp};
use ganglia_wire::filter::{MetricFilter, MAX_REQUEST_LEN};
use gmond_conf::{Acl, QueryChannel, TcpAcceptChannel};
use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// Serves the listeners until a signal (stand-alone) or the stop handle (embedded); `ready`
/// runs once the runtime is up.
pub(super) fn serve_until_exit(
    listeners: Vec<(std::net::TcpListener, TcpAcceptChannel)>,
    queries: Vec<(std::net::TcpListener, QueryChannel)>,
    shared: &Shared,
    limits: ClientLimits,
    embedded: bool,
    reload_check: Option<ReloadCheck>,
    ready: impl FnOnce(),
) -> Result<Exit, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if embedded { 1 } else { 2 })
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime {
            what: "tokio runtime",
            source,
        })?;
    ready();
    let waiter = shared.stop.clone();
    let stats = shared.stats.clone();
    let renderer = Arc::new(Renderer::new(shared.store.clone()));
    let admission = Admission::new(limits);
    let exit = rt.block_on(async move {
        for (listener, ch) in listeners {
            let (renderer, admission, stats) = (renderer.clone(), admission.clone(), stats.clone());
            tokio::spawn(serve_xml(listener, ch, renderer, admission, stats));
        }
        for (listener, ch) in queries {
            let (renderer, admission, stats) = (renderer.clone(), admission.clone(), stats.clone());
            tokio::spawn(serve_queries(listener, ch, renderer, admission, stats));
        }
        if embedded {
            while !waiter.is_stopped() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Exit::Stopped
        } else {
            wait_for_signal(reload_check).await
        }
    });
    if embedded {
        // Closes the XML listeners before returning, so their ports are free again.
        rt.shutdown_timeout(Duration::from_secs(1));
    }
    Ok(exit)
}

/// SIGINT/SIGTERM stop; SIGHUP reloads once the new configuration passes `reload_check`
/// (otherwise the error is logged and the daemon carries on as it is).
async fn wait_for_signal(reload_check: Option<ReloadCheck>) -> Exit {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(mut term), Ok(mut int), Ok(mut hup)) => loop {
            tokio::select! {
                _ = term.recv() => return Exit::Stopped,
                _ = int.recv() => return Exit::Stopped,
                _ = hup.recv() => {
                    let verdict = match &reload_check {
                        Some(ReloadCheck(check)) => check(),
                        None => Ok(()),
                    };
                    match verdict {
                        Ok(()) => return Exit::Reload,
                        Err(e) => tracing::error!(error = %e,
                            "SIGHUP: the new configuration is rejected; still running with the old one"),
                    }
                }
            }
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            Exit::Stopped
        }
    }
}

/// Bounds on the XML port that gmond.conf has no option for (gmond has none: any number of
/// clients, and no write timeout unless `timeout` is set). A client that connects and never
/// reads holds a descriptor until its write times out; these keep such clients from using
/// up the process's descriptors, so gmetad is still served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Clients served at once, over every XML channel; the surplus is closed at once.
    pub max_clients: usize,
    /// Clients served at once from one address: one busy or hostile poller cannot take every
    /// slot.
    pub max_per_address: usize,
    /// Write timeout of a channel without gmond.conf's `timeout`.
    pub default_timeout: Duration,
}

impl ClientLimits {
    /// Default clients per address.
    pub const MAX_PER_ADDRESS: usize = 16;
    /// Default write timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Descriptors kept for everything but XML clients (sockets, files, libvirt, threads).
    const RESERVED_FDS: u64 = 64;

    /// Limits for this process: at most half of the descriptors left after the reserve, at
    /// most 4096 and at least 8 (RLIMIT_NOFILE 1024 gives 480; the systemd unit raises it).
    pub fn for_this_process() -> ClientLimits {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        ClientLimits::for_fd_limit(soft)
    }

    /// [`ClientLimits::for_this_process`] for a given descriptor limit.
    pub fn for_fd_limit(soft: u64) -> ClientLimits {
        let max = soft.saturating_sub(Self::RESERVED_FDS) / 2;
        ClientLimits {
            max_clients: usize::try_from(max.clamp(8, 4096)).unwrap_or(8),
            max_per_address: Self::MAX_PER_ADDRESS,
            default_timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// Who is being served now: admits a client only under both limits; the ticket frees its
/// slot when the client's task ends. The map holds only addresses with a client in service,
/// so it is bounded by `max_clients`.
struct Admission {
    limits: ClientLimits,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    fn new(limits: ClientLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            state: Mutex::new((0, HashMap::new())),
        })
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Ticket> {
        let mut guard = self.state.lock().ok()?;
        let (total, per_ip) = &mut *guard;
        let mine = per_ip.get(&ip).copied().unwrap_or(0);
        if *total >= self.limits.max_clients || mine >= self.limits.max_per_address {
            return None;
        }
        *total += 1;
        per_ip.insert(ip, mine + 1);
        Some(Ticket {
            admission: self.clone(),
            ip,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.admission.state.lock() {
            let (total, per_ip) = &mut *guard;
            *total = total.saturating_sub(1);
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// Failed accepts (out of descriptors, usually) back off instead of spinning: the delay
/// doubles from 10 ms to 1 s and resets on the next success; one log line per minute says
/// how many failed meanwhile.
#[derive(Debug, Default)]
struct AcceptBackoff {
    delay: Duration,
    failures: u64,
    last_log: Option<std::time::Instant>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(60);

    /// A failure at `now`: how long to wait, and whether to log (with the count since the
    /// last line).
    fn failed(&mut self, now: std::time::Instant) -> (Duration, Option<u64>) {
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MAX);
        self.failures += 1;
        let log = self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Self::LOG_EVERY);
        if log {
            self.last_log = Some(now);
            let n = self.failures;
            self.failures = 0;
            return (self.delay, Some(n));
        }
        (self.delay, None)
    }

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }
}

/// The rendered document, shared by every client of the same second and store generation,
/// with its gzip form made the first time a gzip channel asks.
#[derive(Default)]
struct RenderCache {
    key: Option<(u64, u64)>,
    doc: Arc<Vec<u8>>,
    gz: Option<Arc<Vec<u8>>>,
}

/// Renders the store's XML for clients; blocking (called through `spawn_blocking`).
struct Renderer {
    store: Arc<RwLock<ClusterStore>>,
    generation: Generation,
    cache: Mutex<RenderCache>,
    /// Filtered documents of this second and generation, by request.
    queries: Mutex<QueryCache>,
}

type QueryCache = (Option<(u64, u64)>, Vec<(String, Arc<Vec<u8>>)>);

/// Distinct query requests remembered per second, at most.
const QUERIES_CACHED: usize = 8;

impl Renderer {
    fn new(store: Arc<RwLock<ClusterStore>>) -> Renderer {
        let generation = match store.read() {
            Ok(s) => s.generation_handle(),
            Err(p) => p.into_inner().generation_handle(),
        };
        Renderer {
            store,
            generation,
            cache: Mutex::new(RenderCache::default()),
            queries: Mutex::new((None, Vec::new())),
        }
    }

    /// The body for one client. The cache is consulted before any store lock: clients of
    /// the same second and generation cost no lock on the store at all (only the cache's,
    /// which also makes concurrent misses render once).
    fn body(&self, gzip: bool) -> Arc<Vec<u8>> {
        let now = Timestamp::from_system_time(SystemTime::now());
        let Ok(mut cache) = self.cache.lock() else {
            return Arc::new(Vec::new());
        };
        if cache.key != Some((now.as_secs(), self.generation.get())) {
            self.render_into(&mut cache, now);
        }
        if !gzip {
            return cache.doc.clone();
        }
        if let Some(gz) = &cache.gz {
            return gz.clone();
        }
        let gz = Arc::new(gzip_bytes(&cache.doc));
        cache.gz = Some(gz.clone());
        gz
    }

    /// The document of the metrics `keep` wants. Like the whole document, each distinct
    /// request is rendered at most once per second and store generation (a few requests are
    /// remembered: agents all ask the same one or two), so a client that asks in a loop does
    /// not keep the store locked.
    fn filtered(&self, keep: &MetricFilter) -> Arc<Vec<u8>> {
        let now = Timestamp::from_system_time(SystemTime::now());
        let request = keep.request_line();
        let Ok(mut cache) = self.queries.lock() else {
            return Arc::new(Vec::new());
        };
        let key = (now.as_secs(), self.generation.get());
        if cache.0 != Some(key) {
            *cache = (Some(key), Vec::new());
        }
        if let Some((_, doc)) = cache.1.iter().find(|(r, _)| *r == request) {
            return doc.clone();
        }
        // Not `prepare_xml`: that pre-renders every changed metric of the store, and keeps
        // the elements, to serve a query that wants a few of them (an agent's follower asks
        // for 2 metrics a host of 148): the kept metrics are rendered from their values
        // instead, which is what preparing them would have cost once.
        let doc = match self.store.read() {
            Ok(s) => Arc::new(
                s.render_xml_filtered(now, Some(keep), Vec::new())
                    .unwrap_or_default(),
            ),
            Err(_) => return Arc::new(Vec::new()),
        };
        if cache.1.len() < QUERIES_CACHED {
            cache.1.push((request, doc.clone()));
        }
        doc
    }

    fn render_into(&self, cache: &mut RenderCache, now: Timestamp) {
        if let Ok(mut s) = self.store.write() {
            s.prepare_xml();
        }
        let Ok(s) = self.store.read() else {
            return;
        };
        cache.key = Some((now.as_secs(), s.generation()));
        cache.doc = Arc::new(
            s.render_xml(now, Vec::with_capacity(cache.doc.len()))
                .unwrap_or_default(),
        );
        cache.gz = None;
    }
}

/// gmond's gzip_output: an RFC 1952 stream.
fn gzip_bytes(doc: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(doc);
    gz.finish().unwrap_or_default()
}

async fn serve_xml(
    listener: std::net::TcpListener,
    ch: TcpAcceptChannel,
    renderer: Arc<Renderer>,
    admission: Arc<Admission>,
    stats: Arc<IoStats>,
) {
    let timeout = ch.timeout.unwrap_or(admission.limits.default_timeout);
    let gzip = ch.gzip_output;
    let st = stats.clone();
    accept_clients(
        listener,
        ch.port,
        ch.acl,
        admission,
        stats,
        move |conn, peer| {
            let (renderer, stats) = (renderer.clone(), st.clone());
            async move { serve_one(conn, peer, &renderer, gzip, timeout, &stats).await }
        },
    )
    .await;
}

async fn serve_queries(
    listener: std::net::TcpListener,
    ch: QueryChannel,
    renderer: Arc<Renderer>,
    admission: Arc<Admission>,
    stats: Arc<IoStats>,
) {
    let timeout = admission.limits.default_timeout;
    let st = stats.clone();
    accept_clients(
        listener,
        ch.port,
        ch.acl,
        admission,
        stats,
        move |conn, peer| {
            let (renderer, stats) = (renderer.clone(), st.clone());
            async move { query_one(conn, peer, &renderer, timeout, &stats).await }
        },
    )
    .await;
}

/// Accepts clients on `listener` for as long as the runtime runs: the ACL and the client
/// limits first, then `serve` in a task of its own that holds the client's slot.
async fn accept_clients<F, Fut>(
    listener: std::net::TcpListener,
    port: u16,
    acl: Option<Acl>,
    admission: Arc<Admission>,
    stats: Arc<IoStats>,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(port, error = %e, "cannot serve this TCP channel");
            return;
        }
    };
    let mut backoff = AcceptBackoff::default();
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => {
                backoff.succeeded();
                c
            }
            Err(e) => {
                let (wait, log) = backoff.failed(std::time::Instant::now());
                stats
                    .xml_accept_errors_total
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(failed) = log {
                    tracing::warn!(port, error = %e, failed, backoff_ms = wait.as_millis() as u64,
                        "accept failed; backing off (logged once a minute)");
                }
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let allowed = match (&acl, peer.ip()) {
            (Some(acl), IpAddr::V4(ip)) => acl.allows(ip),
            _ => true,
        };
        if !allowed {
            stats.acl_denied_total.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // Over a limit: closed at once (dropping `conn`), counted; no log per client, which
        // a flood could fill.
        let Some(ticket) = admission.admit(peer.ip()) else {
            stats
                .xml_clients_refused_total
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let client = serve(conn, peer);
        tokio::spawn(async move {
            let _ticket = ticket;
            client.await;
        });
    }
}

/// One client: the body is rendered (and gzipped) off the async workers, then written within
/// the channel's timeout (gmond.conf's, else the default), so a client that never reads frees
/// its slot and descriptor.
async fn serve_one(
    mut conn: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    renderer: &Arc<Renderer>,
    gzip: bool,
    timeout: Duration,
    stats: &IoStats,
) {
    use tokio::io::AsyncWriteExt;
    let r = renderer.clone();
    let Ok(body) = tokio::task::spawn_blocking(move || r.body(gzip)).await else {
        return;
    };
    let write = async {
        conn.write_all(&body).await?;
        conn.shutdown().await
    };
    let result = tokio::time::timeout(timeout, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
    match result {
        Ok(()) => stats
            .xml_clients_served_total
            .fetch_add(1, Ordering::Relaxed),
        Err(e) => {
            tracing::debug!(peer = %peer, error = %e, "XML client failed");
            stats
                .xml_clients_failed_total
                .fetch_add(1, Ordering::Relaxed)
        }
    };
}

/// How long a query client has to send its request line.
pub const QUERY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One query client: its request line (bounded in bytes and time), then the filtered document
/// rendered off the async workers and written within `timeout`. A bad request is counted as
/// a failed client and closed without an answer.
async fn query_one(
    mut conn: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    renderer: &Arc<Renderer>,
    timeout: Duration,
    stats: &IoStats,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let failed = |why: &str| {
        tracing::debug!(peer = %peer, why, "query client failed");
        stats
            .xml_clients_failed_total
            .fetch_add(1, Ordering::Relaxed);
    };
    let mut line = Vec::new();
    let read = async {
        let mut r = tokio::io::BufReader::new((&mut conn).take(MAX_REQUEST_LEN as u64));
        r.read_until(b'\n', &mut line).await
    };
    match tokio::time::timeout(QUERY_READ_TIMEOUT, read).await {
        Ok(Ok(_)) if line.ends_with(b"\n") => {}
        _ => return failed("no request line"),
    }
    let filter = match MetricFilter::from_request(&line) {
        Ok(f) => f,
        Err(e) => return failed(&e.to_string()),
    };
    let r = renderer.clone();
    let Ok(body) = tokio::task::spawn_blocking(move || r.filtered(&filter)).await else {
        return;
    };
    let write = async {
        conn.write_all(&body).await?;
        conn.shutdown().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => {
            stats
                .xml_clients_served_total
                .fetch_add(1, Ordering::Relaxed);
        }
        _ => failed("write"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_limits_follow_the_descriptor_limit() {
        assert_eq!(ClientLimits::for_fd_limit(256).max_clients, 96);
        assert_eq!(ClientLimits::for_fd_limit(1024).max_clients, 480);
        assert_eq!(ClientLimits::for_fd_limit(10).max_clients, 8);
        assert_eq!(ClientLimits::for_fd_limit(1 << 20).max_clients, 4096);
    }

    #[test]
    fn admission_caps_each_address_and_the_total_and_frees_on_drop() {
        let a = Admission::new(ClientLimits {
            max_clients: 3,
            max_per_address: 2,
            default_timeout: Duration::from_secs(1),
        });
        let x: IpAddr = [127, 0, 0, 2].into();
        let y: IpAddr = [127, 0, 0, 3].into();
        let t1 = a.admit(x).unwrap();
        let _t2 = a.admit(x).unwrap();
        assert!(a.admit(x).is_none(), "third from one address");
        let _t3 = a.admit(y).unwrap();
        assert!(a.admit(y).is_none(), "over the total");
        drop(t1);
        assert!(a.admit(x).is_some(), "a freed slot is reused");
        assert_eq!(a.state.lock().unwrap().1.len(), 2);
    }

    #[test]
    fn accept_failures_back_off_and_log_once_a_minute() {
        let mut b = AcceptBackoff::default();
        let t0 = std::time::Instant::now();
        assert_eq!(b.failed(t0), (Duration::from_millis(10), Some(1)));
        assert_eq!(b.failed(t0), (Duration::from_millis(20), None));
        for _ in 0..20 {
            b.failed(t0);
        }
        assert_eq!(b.failed(t0).0, Duration::from_secs(1), "capped");
        let (_, log) = b.failed(t0 + Duration::from_secs(61));
        assert_eq!(log, Some(23), "the count since the last line");
        b.succeeded();
        assert_eq!(
            b.failed(t0 + Duration::from_secs(62)).0,
            Duration::from_millis(10)
        );
    }

    /// A store of `hosts` hosts with `metrics` metrics each (value, and metadata with gmond's
    /// three extras), every one just changed.
    fn filled_store(hosts: u8, metrics: usize) -> ClusterStore {
        use ganglia_wire::{encode, Extra, Message, Metadata, MetricId, Slope, Value, ValueMsg};
        let mut s = ClusterStore::new(crate::store::StoreConfig::default());
        let now = Timestamp::from_secs_f64(100.0);
        for h in 1..=hosts {
            let src = std::net::Ipv4Addr::new(10, 0, 0, h);
            for i in 0..metrics {
                let name = format!("m{i}");
                let id = MetricId {
                    host: b"",
                    name: name.as_bytes(),
                    spoof: false,
                };
                let extra = [("TITLE", "A title"), ("DESC", "What it is"), ("GROUP", "g")]
                    .iter()
                    .map(|(k, v)| Extra {
                        name: k.as_bytes(),
                        data: v.as_bytes(),
                    })
                    .collect();
                for msg in [
                    Message::Metadata(Metadata {
                        id,
                        metric_type: b"float",
                        name: name.as_bytes(),
                        units: b"u",
                        slope: Slope::BOTH,
                        tmax: 60,
                        dmax: 0,
                        extra,
                    }),
                    Message::Value(ValueMsg {
                        id,
                        fmt: b"%.1f",
                        value: Value::Float(1.5),
                    }),
                ] {
                    let mut d = Vec::new();
                    encode(&msg, &mut d);
                    s.handle_datagram(now, src, &d);
                }
            }
        }
        s
    }

    #[test]
    fn a_query_renders_what_it_keeps_and_prepares_nothing_else() {
        let store = Arc::new(RwLock::new(filled_store(4, 50)));
        let before = store.read().unwrap().stats().bytes;
        let r = Renderer::new(store.clone());
        let doc = r.filtered(&MetricFilter::parse("m7").unwrap());
        let text = String::from_utf8_lossy(&doc);
        assert_eq!(text.matches("<METRIC ").count(), 4, "{text}");
        assert!(text.contains("NAME=\"m7\""));
        // The 200 metrics it did not ask for (and the 4 it did) are not pre-rendered and
        // kept: preparing them grew the store by an element each, per query, for nothing.
        assert_eq!(store.read().unwrap().stats().bytes, before);
        // The whole document still prepares (its readers all want every metric).
        let whole = r.body(false);
        assert_eq!(
            String::from_utf8_lossy(&whole).matches("<METRIC ").count(),
            200
        );
        assert!(store.read().unwrap().stats().bytes > before);
    }
}
