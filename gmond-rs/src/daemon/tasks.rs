//! The daemon's threads: one per receive channel (in [`crate::ingest`]), the sender, the VM
//! metrics thread and the archiver, all sharing [`Shared`] and stopping on its handle.

use super::net::Outbound;
use super::{selfmetrics, Error, StopHandle, VmSource};
use crate::iostats::IoStats;
use crate::sender::Sender;
use crate::store::{ClusterStore, Timestamp};
use crate::vmpublish::VmPublisher;
use gmond_metrics::linux::{LinuxCollector, MetricSpec};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// What every thread of a daemon shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub store: Arc<RwLock<ClusterStore>>,
    pub outbound: Arc<Outbound>,
    pub stats: Arc<IoStats>,
    pub stop: StopHandle,
    /// Longest a loop waits before checking `stop` (short for embedded daemons).
    pub max_wait: Duration,
}

/// The daemon's threads, joined when an embedded daemon stops.
#[derive(Default)]
pub(super) struct Threads(Vec<JoinHandle<()>>);

impl Threads {
    /// Starts a named thread; `what` names it in the start-up error.
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        what: &'static str,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), Error> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|source| Error::Runtime { what, source })?;
        self.0.push(handle);
        Ok(())
    }

    /// Waits for every thread (they end once the stop handle is stopped).
    pub fn join(self) {
        for t in self.0 {
            let _ = t.join();
        }
    }
}

/// This host's own metrics on schedule, and the store's cleanup ticks; wakes early for
/// metadata requests.
pub(super) fn sender_loop(
    mut sender: Sender,
    mut collector: LinuxCollector,
    requests: mpsc::Receiver<Box<[u8]>>,
    shared: &Shared,
) {
    let Shared {
        store,
        outbound,
        stats: io,
        stop,
        max_wait,
    } = shared;
    let max_wait = *max_wait;
    while !stop.is_stopped() {
        let now = Timestamp::from_system_time(SystemTime::now());
        let mut collect = |spec: &'static MetricSpec| {
            if spec.module == "gmond_rs" {
                let s = store.read().ok()?;
                return selfmetrics::value(spec.name, s.stats(), io);
            }
            match collector.collect(spec.name, SystemTime::now()) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::debug!(metric = spec.name, error = %e, "collect failed");
                    None
                }
            }
        };
        for d in sender.poll(now, &mut collect) {
            outbound.send(&d);
        }
        if let Ok(mut s) = store.write() {
            s.handle_timeout(now);
        }
        // Sleep until the next group or cleanup is due, waking early for metadata requests.
        let next = [
            sender.next_deadline(),
            store.read().ok().and_then(|s| s.next_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let wait = next
            .map(|t| t.saturating_since(Timestamp::from_system_time(SystemTime::now())))
            .unwrap_or(Duration::from_secs(20))
            .clamp(Duration::from_millis(10), max_wait);
        match requests.recv_timeout(wait) {
            Ok(name) => {
                sender.metadata_requested(&name);
                while let Ok(more) = requests.try_recv() {
                    sender.metadata_requested(&more);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // No receive thread (deaf): just keep the schedule.
                stop.sleep(wait);
            }
        }
    }
}

/// Collects the VM metrics every `every` and sends them. Sources may block (libvirt does),
/// which is why this has its own thread; an unreachable libvirtd is logged once by the
/// reconnecting hypervisor and retried with backoff while the rest of the daemon carries on.
pub(super) fn vm_loop(
    source: &mut dyn VmSource,
    mut publisher: VmPublisher,
    every: Duration,
    requests: &mpsc::Receiver<Box<[u8]>>,
    l: &Shared,
) {
    while !l.stop.is_stopped() {
        match source.collect() {
            Ok(metrics) => {
                let now = Timestamp::from_system_time(SystemTime::now());
                for d in publisher.encode_round(now, &metrics) {
                    l.outbound.send(&d);
                }
            }
            Err(e) => tracing::debug!(error = %e, "no VM metrics this round"),
        }
        let deadline = std::time::Instant::now() + every;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            if l.stop.is_stopped() {
                return;
            }
            match requests.recv_timeout(left.min(l.max_wait)) {
                Ok(name) => publisher.metadata_requested(&name),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    l.stop.sleep(left.min(l.max_wait));
                }
            }
        }
    }
}

/// Every 15 s (gmetad's step), the view as a document, into RRD files.
pub(super) fn archive_loop(archiver: &crate::archive::Archiver, shared: &Shared) {
    let Shared { store, stop, .. } = shared;
    let step = crate::archive::STEP;
    loop {
        let now = Timestamp::from_system_time(SystemTime::now());
        let next = Timestamp::from_secs((now.as_secs() / step + 1) * step);
        if stop.sleep(next.saturating_since(now)) {
            return;
        }
        let xml = match store.read() {
            Ok(s) => s.render_xml(next, Vec::new()).unwrap_or_default(),
            Err(_) => return,
        };
        match ganglia_wire::xml::read_document(&xml) {
            Ok(doc) => {
                for c in &doc.clusters {
                    let r = archiver.archive(c);
                    tracing::debug!(
                        updated = r.updated,
                        created = r.created,
                        skipped = r.skipped,
                        "rrd round"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot archive: own XML unreadable"),
        }
    }
}
