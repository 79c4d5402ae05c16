//! The demo's clock thread, the only reader of the wall clock besides the view: simulated time =
//! wall time x speed-up. Each step advances the simulated cluster, records its ground truth for
//! the summary, and turns the spike and migration starts, ends and failures into events.

use crate::state::Shared;
use crate::summary::{MigrationRecord, Tracker};
use crate::{cluster, Error};
use gmond_metrics::hypervisor::sim::{CompletedMigration, SimCluster};
use gmond_rs::daemon::StopHandle;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Wall time between steps.
const STEP: Duration = Duration::from_millis(100);

/// Starts the clock; it runs until either handle stops.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    wall_start: Instant,
    speedup: f64,
    spike_host: usize,
    stops: [StopHandle; 2],
) -> Result<JoinHandle<()>, Error> {
    let mut clock = Clock {
        shared,
        spike_host,
        spiked: false,
        moving: BTreeMap::new(),
    };
    std::thread::Builder::new()
        .name("demo-clock".into())
        .spawn(move || {
            while !stops.iter().any(StopHandle::is_stopped) {
                let target = (wall_start.elapsed().as_secs_f64() * speedup * 1000.0) as u64;
                if clock.step(target).is_err() {
                    return;
                }
                stops[0].sleep(STEP);
            }
        })
        .map_err(|source| Error::Thread {
            what: "demo clock",
            source,
        })
}

/// The clock's memory between steps.
struct Clock {
    shared: Arc<Shared>,
    spike_host: usize,
    spiked: bool,
    /// VM -> (from, to) of the migrations in flight at the last step.
    moving: BTreeMap<usize, (usize, usize)>,
}

impl Clock {
    /// Advances the cluster to `target_ms` (never backwards) and records what happened. Events
    /// are sent after the locks are released.
    fn step(&mut self, target_ms: u64) -> Result<(), Error> {
        let mut events: Vec<(u64, String)> = Vec::new();
        {
            let shared = self.shared.clone();
            let mut sim = shared.sim.lock().map_err(|_| Error::Poisoned)?;
            let now = target_ms.max(sim.now_ms());
            let completed = sim.advance_to(now).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "simulated clock");
                Vec::new()
            });
            let mut tracker = shared.tracker.lock().map_err(|_| Error::Poisoned)?;
            self.arrivals(&sim, &completed, &mut tracker, &mut events);
            self.departures(&sim, now, &mut tracker, &mut events);
            self.fill_reasons(&mut tracker);
            let loads = host_loads(&sim, now, &shared.host_names);
            tracker.observe(now, &loads);
            self.spike(&tracker, now, &loads, &mut events);
        }
        for (t, e) in events {
            self.shared.event(t, e);
        }
        Ok(())
    }

    /// Migrations that completed in this step.
    fn arrivals(
        &mut self,
        sim: &SimCluster,
        completed: &[CompletedMigration],
        tracker: &mut Tracker,
        events: &mut Vec<(u64, String)>,
    ) {
        let host = |h| self.shared.host(h);
        for c in completed {
            let vm = sim.domains()[c.domain].name.clone();
            self.moving.remove(&c.domain);
            tracker.ended(&vm, c.end_ms, false);
            events.push((
                c.end_ms,
                format!(
                    "{vm} arrived on {} ({:.1} s live migration from {})",
                    host(c.to),
                    (c.end_ms - c.start_ms) as f64 / 1000.0,
                    host(c.from)
                ),
            ));
        }
    }

    /// Migrations that started, and those gone from the in-flight set without completing
    /// (aborted or failed).
    fn departures(
        &mut self,
        sim: &SimCluster,
        now: u64,
        tracker: &mut Tracker,
        events: &mut Vec<(u64, String)>,
    ) {
        let host = |h| self.shared.host(h);
        for (d, dom) in sim.domains().iter().enumerate() {
            match (dom.migration, self.moving.get(&d).copied()) {
                (Some(m), None) => {
                    self.moving.insert(d, (dom.host, m.dest));
                    tracker.started(MigrationRecord {
                        vm: dom.name.clone(),
                        from: host(dom.host),
                        to: host(m.dest),
                        reason: self.shared.reason(&dom.name).unwrap_or_default(),
                        start_ms: m.start_ms,
                        end_ms: None,
                        failed: false,
                    });
                    // The reason is in the leader's "decides" event just before.
                    events.push((
                        m.start_ms,
                        format!(
                            "{} -> {}: live migration of {} started ({:.0} s expected)",
                            host(dom.host),
                            host(m.dest),
                            dom.name,
                            m.end_ms.saturating_sub(m.start_ms) as f64 / 1000.0
                        ),
                    ));
                }
                (None, Some((from, to))) => {
                    self.moving.remove(&d);
                    tracker.ended(&dom.name, now, true);
                    events.push((
                        now,
                        format!(
                            "migration of {} {} -> {} FAILED; it stays on {}",
                            dom.name,
                            host(from),
                            host(to),
                            host(dom.host)
                        ),
                    ));
                }
                _ => {}
            }
        }
    }

    /// Reasons that arrived after their migration started.
    fn fill_reasons(&self, tracker: &mut Tracker) {
        for m in tracker
            .migrations
            .iter_mut()
            .filter(|m| m.reason.is_empty())
        {
            if let Some(why) = self.shared.reason(&m.vm) {
                m.reason = why;
            }
        }
    }

    /// The spike's event, once.
    fn spike(
        &mut self,
        tracker: &Tracker,
        now: u64,
        loads: &[(String, f64)],
        events: &mut Vec<(u64, String)>,
    ) {
        if self.spiked || now < tracker.spike_at_ms {
            return;
        }
        self.spiked = true;
        let name = self.shared.host(self.spike_host);
        events.push((
            tracker.spike_at_ms,
            format!(
                "spike: the VMs of {name} jump to {:.0} % CPU ({name} now at {:.0} %)",
                cluster::SPIKE_LEVEL * 100.0,
                loads.get(self.spike_host).map_or(0.0, |l| l.1 * 100.0)
            ),
        ));
    }
}

/// Each host's CPU demand over its capacity at `now` (ground truth, not the feed's view).
fn host_loads(sim: &SimCluster, now: u64, names: &[String]) -> Vec<(String, f64)> {
    let mut demand = vec![0.0; names.len()];
    for (d, dom) in sim.domains().iter().enumerate() {
        if let Some(p) = demand.get_mut(dom.host) {
            *p += sim.demand_mhz(d, now);
        }
    }
    names
        .iter()
        .zip(demand)
        .enumerate()
        .map(|(h, (name, mhz))| {
            let cap = sim
                .hosts()
                .get(h)
                .map_or(1.0, |x| f64::from(x.cpus) * f64::from(x.mhz));
            (name.clone(), mhz / cap)
        })
        .collect()
}
