//! What the demo's threads share: the simulated cluster, its ground truth for the summary, the
//! events the live view lists and why each VM is moving.

use crate::summary::{Summary, Tracker};
use crate::Error;
use gmond_metrics::hypervisor::sim::SimCluster;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Events kept; the view shows the latest few.
const EVENTS_KEPT: usize = 200;

/// Something that happened, for the live view and the logs.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoEvent {
    /// Simulated ms.
    pub sim_ms: u64,
    /// What happened.
    pub text: String,
}

/// State shared by the clock, the balancers and the view.
pub(crate) struct Shared {
    /// The simulated hypervisors.
    pub sim: Arc<Mutex<SimCluster>>,
    /// Ground truth: host loads and migrations as the simulator has them.
    pub tracker: Mutex<Tracker>,
    events: Mutex<VecDeque<DemoEvent>>,
    /// Why each VM is moving (from the leader's plan), by VM name.
    reasons: Mutex<BTreeMap<String, String>>,
    /// Host names, index = host number.
    pub host_names: Vec<String>,
    /// Events also go to the log (when there is no live view to show them).
    log_events: bool,
}

/// Simulated time and migration counts, as the view's status line shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Figures {
    pub sim_ms: u64,
    pub done: usize,
    pub failed: usize,
    pub inflight: usize,
}

impl Shared {
    pub fn new(
        sim: SimCluster,
        tracker: Tracker,
        host_names: Vec<String>,
        log_events: bool,
    ) -> Shared {
        Shared {
            sim: Arc::new(Mutex::new(sim)),
            tracker: Mutex::new(tracker),
            events: Mutex::new(VecDeque::new()),
            reasons: Mutex::new(BTreeMap::new()),
            host_names,
            log_events,
        }
    }

    /// Name of host `h` ("" if out of range).
    pub fn host(&self, h: usize) -> String {
        self.host_names.get(h).cloned().unwrap_or_default()
    }

    pub fn event(&self, sim_ms: u64, text: String) {
        if self.log_events {
            tracing::info!(sim_s = sim_ms / 1000, "{text}");
        }
        if let Ok(mut ev) = self.events.lock() {
            ev.push_back(DemoEvent { sim_ms, text });
            while ev.len() > EVENTS_KEPT {
                ev.pop_front();
            }
        }
    }

    /// The `n` latest events up to simulated time `upto_ms`, oldest first. (Events of a
    /// migration's end are stamped with its end time, which the clock may not have reached.)
    pub fn latest_events(&self, upto_ms: u64, n: usize) -> Vec<DemoEvent> {
        let Ok(ev) = self.events.lock() else {
            return Vec::new();
        };
        let mut shown: Vec<&DemoEvent> = ev.iter().filter(|e| e.sim_ms <= upto_ms).collect();
        shown.sort_by_key(|e| e.sim_ms);
        let skip = shown.len().saturating_sub(n);
        shown[skip..].iter().map(|e| (*e).clone()).collect()
    }

    pub fn set_reason(&self, vm: &str, why: String) {
        if let Ok(mut r) = self.reasons.lock() {
            r.insert(vm.to_owned(), why);
        }
    }

    pub fn reason(&self, vm: &str) -> Option<String> {
        self.reasons.lock().ok()?.get(vm).cloned()
    }

    pub fn figures(&self, speedup: f64) -> Figures {
        self.tracker.lock().map_or(Figures::default(), |t| {
            let s = t.summary(speedup);
            Figures {
                sim_ms: t.now_ms,
                done: s.migrations_done,
                failed: s.migrations_failed,
                inflight: t.inflight(),
            }
        })
    }

    pub fn summary(&self, speedup: f64) -> Result<Summary, Error> {
        self.tracker
            .lock()
            .map(|t| t.summary(speedup))
            .map_err(|_| Error::Poisoned)
    }
}
