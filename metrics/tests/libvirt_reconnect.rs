//! Reconnect and backoff of the libvirt hypervisor wrapper, with a scripted fake connector and
//! time as input: attempts only when the backoff allows, one warn per outage, one info on
//! recovery, failed requests on a live session do not count as outages, and collection rounds
//! follow the time they are given.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gmond_metrics::hypervisor::libvirt::{
    BackoffPolicy, Connector, LinkState, Reconnecting, Session,
};
use gmond_metrics::hypervisor::{DomainInfo, DomainState, HostCapacity, Hypervisor};
use gmond_metrics::vmetrics::UtilTracker;
use gmond_metrics::Error;

/// Shared knobs of the fake "daemon".
#[derive(Default)]
struct World {
    /// Results of the next connect attempts (true = success); empty = success.
    script: Mutex<VecDeque<bool>>,
    attempts: AtomicU32,
    dead: AtomicBool,
    requests_fail: AtomicBool,
}

struct FakeConnector(Arc<World>);
struct FakeSession(Arc<World>);

impl Connector for FakeConnector {
    type Session = FakeSession;
    fn connect(&self) -> Result<FakeSession, Error> {
        self.0.attempts.fetch_add(1, Ordering::SeqCst);
        let ok = self.0.script.lock().unwrap().pop_front().unwrap_or(true);
        if ok {
            Ok(FakeSession(self.0.clone()))
        } else {
            Err(Error::Backend("connection refused".into()))
        }
    }
    fn target(&self) -> &str {
        "fake:///system"
    }
}

impl Session for FakeSession {
    fn hostname(&self) -> Result<String, Error> {
        self.check()?;
        Ok("hv1".into())
    }
    fn capacity(&self) -> Result<HostCapacity, Error> {
        self.check()?;
        Ok(HostCapacity {
            cpus: 4,
            mhz: 1000,
            mem_kib: 1 << 20,
            mem_free_kib: 1 << 19,
        })
    }
    fn domains(&self) -> Result<Vec<DomainInfo>, Error> {
        self.check()?;
        Ok(vec![DomainInfo {
            name: "vm".into(),
            uuid: "00000000-0000-4000-8000-000000000001".into(),
            state: DomainState::Running,
            vcpus_current: 1,
            vcpus_max: 1,
            mem_max_kib: 1024,
            mem_current_kib: 1024,
            mem_used_kib: 1024,
            cpu_time_ns: 0,
        }])
    }
    fn is_alive(&self) -> bool {
        !self.0.dead.load(Ordering::SeqCst)
    }
}

impl FakeSession {
    fn check(&self) -> Result<(), Error> {
        if self.0.dead.load(Ordering::SeqCst) || self.0.requests_fail.load(Ordering::SeqCst) {
            Err(Error::Backend("end of file while reading data".into()))
        } else {
            Ok(())
        }
    }
}

/// Counts log events per level, for the "log once" checks.
#[derive(Default, Clone)]
struct LogCount(Arc<Mutex<Vec<tracing::Level>>>);

impl tracing::Subscriber for LogCount {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        self.0.lock().unwrap().push(*e.metadata().level());
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl LogCount {
    fn count(&self, level: tracing::Level) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| **l == level)
            .count()
    }
}

const S: Duration = Duration::from_secs(1);

#[test]
fn outage_backoff_and_recovery() {
    let world = Arc::new(World::default());
    let hv = Reconnecting::new(FakeConnector(world.clone()), BackoffPolicy::default());
    let logs = LogCount::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let t0 = Instant::now();
    let attempts = || world.attempts.load(Ordering::SeqCst);

    // Lazy: nothing opened until the first call.
    assert!(!hv.is_connected());
    assert_eq!(attempts(), 0);
    assert_eq!(hv.domains_at(t0).unwrap().len(), 1);
    assert_eq!(hv.hostname_at(t0).unwrap(), "hv1");
    assert_eq!(hv.capacity_at(t0).unwrap().cpus, 4);
    assert_eq!(attempts(), 1);

    // The daemon goes away: the call fails, the session is dropped, an outage starts.
    world.dead.store(true, Ordering::SeqCst);
    assert!(matches!(hv.domains_at(t0 + 15 * S), Err(Error::Backend(_))));
    assert!(!hv.is_connected());
    assert_eq!(hv.outages_total(), 1);
    assert!(matches!(
        hv.link_state(),
        LinkState::Down { failures: 1, .. }
    ));

    // Before the 1 s backoff is over: no attempt, HostDown at once.
    assert!(matches!(
        hv.domains_at(t0 + 15 * S + S / 2),
        Err(Error::HostDown(uri)) if uri == "fake:///system"
    ));
    assert_eq!(attempts(), 1);

    // Two more refused attempts, spaced 1 s then 2 s apart.
    world.script.lock().unwrap().extend([false, false]);
    assert!(matches!(hv.domains_at(t0 + 16 * S), Err(Error::Backend(_))));
    assert_eq!(attempts(), 2);
    assert!(matches!(
        hv.capacity_at(t0 + 17 * S),
        Err(Error::HostDown(_))
    ));
    assert_eq!(attempts(), 2);
    assert!(matches!(hv.domains_at(t0 + 18 * S), Err(Error::Backend(_))));
    assert_eq!(attempts(), 3);
    assert!(matches!(
        hv.link_state(),
        LinkState::Down { failures: 3, next_try, .. } if next_try == t0 + 22 * S
    ));
    assert!(matches!(
        hv.domains_at(t0 + 21 * S),
        Err(Error::HostDown(_))
    ));

    // The daemon is back: the next allowed attempt reconnects.
    world.dead.store(false, Ordering::SeqCst);
    assert_eq!(hv.domains_at(t0 + 22 * S).unwrap().len(), 1);
    assert_eq!(attempts(), 4);
    assert_eq!(hv.link_state(), LinkState::Up);
    assert_eq!(hv.outages_total(), 1);

    // One outage = one warn and one info, however many rounds it lasted.
    assert_eq!(logs.count(tracing::Level::WARN), 1);
    assert_eq!(logs.count(tracing::Level::INFO), 1);
}

#[test]
fn failed_request_on_live_session_is_not_an_outage() {
    let world = Arc::new(World::default());
    let hv = Reconnecting::new(FakeConnector(world.clone()), BackoffPolicy::default());
    let t0 = Instant::now();
    hv.domains_at(t0).unwrap();
    world.requests_fail.store(true, Ordering::SeqCst);
    assert!(hv.domains_at(t0 + S).is_err());
    assert!(hv.is_connected());
    assert_eq!(hv.outages_total(), 0);
    world.requests_fail.store(false, Ordering::SeqCst);
    assert!(hv.domains_at(t0 + 2 * S).is_ok());
    assert_eq!(world.attempts.load(Ordering::SeqCst), 1);
}

#[test]
fn never_reachable_counts_one_outage_and_caps_the_delay() {
    let world = Arc::new(World::default());
    world.script.lock().unwrap().extend([false; 20]);
    let policy = BackoffPolicy {
        initial: S,
        max: 8 * S,
    };
    let hv = Reconnecting::new(FakeConnector(world.clone()), policy);
    let t0 = Instant::now();
    // Poll every second for 60 s: attempts at 0, 1, 3, 7, 15, 23, ... (delays 1, 2, 4, 8, 8, ...).
    let mut at = Vec::new();
    for s in 0..60 {
        let before = world.attempts.load(Ordering::SeqCst);
        let _ = hv.domains_at(t0 + s * S);
        if world.attempts.load(Ordering::SeqCst) > before {
            at.push(s);
        }
    }
    assert_eq!(at, [0, 1, 3, 7, 15, 23, 31, 39, 47, 55]);
    assert_eq!(hv.outages_total(), 1);
}

#[test]
fn collection_rounds_follow_the_time_they_are_given() {
    // The wrapper never reads the clock: rounds "seconds" apart run back to back, and whether
    // a reconnect is tried depends only on the `now` passed in.
    let world = Arc::new(World::default());
    world.script.lock().unwrap().extend([false, false]);
    let hv = Reconnecting::new(FakeConnector(world.clone()), BackoffPolicy::default());
    let attempts = || world.attempts.load(Ordering::SeqCst);
    let mut tracker = UtilTracker::new();
    let clock_reads = AtomicU32::new(0);
    let clock = || u64::from(clock_reads.fetch_add(1, Ordering::SeqCst)) * 1_000_000_000;
    let t0 = Instant::now();

    assert!(matches!(
        hv.collect_round(t0, &mut tracker, clock),
        Err(Error::Backend(_))
    ));
    assert_eq!(attempts(), 1);
    // Inside the 1 s backoff: refused at once, no attempt, and no listing to time.
    for now in [t0, t0 + S / 2, t0 + S - Duration::from_nanos(1)] {
        assert!(matches!(
            hv.collect_round(now, &mut tracker, clock),
            Err(Error::HostDown(_))
        ));
        // The same instant through the Hypervisor trait.
        let dyn_hv: &dyn Hypervisor = &hv.at(now);
        assert!(matches!(dyn_hv.domains(), Err(Error::HostDown(_))));
    }
    assert_eq!((attempts(), clock_reads.load(Ordering::SeqCst)), (1, 0));
    // At exactly 1 s: the second attempt (refused), then a 2 s wait.
    assert!(hv.collect_round(t0 + S, &mut tracker, clock).is_err());
    assert_eq!(attempts(), 2);
    assert!(matches!(
        hv.collect_round(t0 + 2 * S, &mut tracker, clock),
        Err(Error::HostDown(_))
    ));
    assert_eq!(attempts(), 2);
    // At 3 s the third attempt connects and the round runs, timed by the given clock alone.
    let metrics = hv.collect_round(t0 + 3 * S, &mut tracker, clock).unwrap();
    assert_eq!(attempts(), 3);
    assert_eq!(clock_reads.load(Ordering::SeqCst), 2);
    assert!(metrics.iter().any(|m| m.name == "vm.vcpu_num"));
    assert_eq!(hv.link_state(), LinkState::Up);
    assert_eq!(hv.outages_total(), 1);
}
