//! The XML port: tokio serves every TCP accept channel, so many slow clients cost tasks, not
//! threads. A dump is rendered once per second and store generation and shared by every
//! client of that second.

use super::tasks::Shared;
use super::{Error, Exit};
use crate::iostats::IoStats;
use crate::store::{ClusterStore, Timestamp};
use gmond_conf::TcpAcceptChannel;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// Serves the listeners until a signal (stand-alone) or the stop handle (embedded); `ready`
/// runs once the runtime is up.
pub(super) fn serve_until_exit(
    listeners: Vec<(std::net::TcpListener, TcpAcceptChannel)>,
    shared: &Shared,
    embedded: bool,
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
    let (store, stats) = (shared.store.clone(), shared.stats.clone());
    let exit = rt.block_on(async move {
        let cache = Arc::new(Mutex::new(RenderCache::default()));
        for (listener, ch) in listeners {
            let (store, stats, cache) = (store.clone(), stats.clone(), cache.clone());
            tokio::spawn(serve_xml(listener, ch, store, stats, cache));
        }
        if embedded {
            while !waiter.is_stopped() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Exit::Stopped
        } else {
            wait_for_signal().await
        }
    });
    if embedded {
        // Closes the XML listeners before returning, so their ports are free again.
        rt.shutdown_timeout(Duration::from_secs(1));
    }
    Ok(exit)
}

async fn wait_for_signal() -> Exit {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(mut term), Ok(mut int), Ok(mut hup)) => {
            tokio::select! {
                _ = term.recv() => Exit::Stopped,
                _ = int.recv() => Exit::Stopped,
                _ = hup.recv() => Exit::Reload,
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            Exit::Stopped
        }
    }
}

/// The last rendered document, shared by every client of the same second and generation.
#[derive(Default)]
struct RenderCache {
    key: Option<(u64, u64)>,
    doc: Arc<Vec<u8>>,
}

fn render(store: &RwLock<ClusterStore>, cache: &Mutex<RenderCache>) -> Arc<Vec<u8>> {
    let now = Timestamp::from_system_time(SystemTime::now());
    let Ok(mut cache) = cache.lock() else {
        return Arc::new(Vec::new());
    };
    if let Ok(mut s) = store.write() {
        s.prepare_xml();
    }
    let Ok(s) = store.read() else {
        return Arc::new(Vec::new());
    };
    let key = (now.as_secs(), s.generation());
    if cache.key == Some(key) {
        return cache.doc.clone();
    }
    let doc = Arc::new(
        s.render_xml(now, Vec::with_capacity(cache.doc.len()))
            .unwrap_or_default(),
    );
    cache.key = Some(key);
    cache.doc = doc.clone();
    doc
}

async fn serve_xml(
    listener: std::net::TcpListener,
    ch: TcpAcceptChannel,
    store: Arc<RwLock<ClusterStore>>,
    stats: Arc<IoStats>,
    cache: Arc<Mutex<RenderCache>>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(port = ch.port, error = %e, "cannot serve XML");
            return;
        }
    };
    let ch = Arc::new(ch);
    loop {
        let (mut conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let allowed = match (&ch.acl, peer.ip()) {
            (Some(acl), IpAddr::V4(ip)) => acl.allows(ip),
            _ => true,
        };
        if !allowed {
            stats.acl_denied_total.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (store, stats, cache, ch) = (store.clone(), stats.clone(), cache.clone(), ch.clone());
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let doc = match tokio::task::spawn_blocking(move || render(&store, &cache)).await {
                Ok(d) => d,
                Err(_) => return,
            };
            let body: Arc<Vec<u8>> = if ch.gzip_output {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                let _ = gz.write_all(&doc);
                Arc::new(gz.finish().unwrap_or_default())
            } else {
                doc
            };
            let write = async {
                conn.write_all(&body).await?;
                conn.shutdown().await
            };
            // gmond's `timeout` (µs) bounds each client; without one, a client that never
            // reads still cannot hold more than its socket buffers, and others are unaffected.
            let result = match ch.timeout {
                Some(t) => tokio::time::timeout(t, write)
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
                None => write.await,
            };
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
        });
    }
}
