//! The demo's ground truth and its summary: host loads from the simulated hypervisor (not from
//! the feed, so the figures do not depend on monitoring delays), migrations as they start and
//! end, time to balance after the spike and the peak overload.

use std::fmt;

/// A migration the demo saw.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationRecord {
    /// VM name.
    pub vm: String,
    /// Source host.
    pub from: String,
    /// Destination host.
    pub to: String,
    /// Why the balancer moved it ("" if unknown).
    pub reason: String,
    /// Start, simulated ms.
    pub start_ms: u64,
    /// End, simulated ms, once finished.
    pub end_ms: Option<u64>,
    /// The migration failed (the VM stayed on its source).
    pub failed: bool,
}

/// Running figures of one demo run.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracker {
    /// CPU utilisation (demand / capacity) above which a host counts as overloaded.
    pub threshold: f64,
    /// When the spike starts, simulated ms.
    pub spike_at_ms: u64,
    /// Highest host CPU utilisation seen, and where and when.
    pub peak: Option<(f64, String, u64)>,
    /// Since when no host has been overloaded (after the spike), simulated ms.
    balanced_since: Option<u64>,
    /// First time a host was overloaded after the spike.
    overloaded_at: Option<u64>,
    /// Every migration seen, in start order.
    pub migrations: Vec<MigrationRecord>,
    /// Latest simulated time observed.
    pub now_ms: u64,
}

impl Tracker {
    /// A tracker for a spike at `spike_at_ms`, counting hosts above `threshold` as overloaded.
    pub fn new(threshold: f64, spike_at_ms: u64) -> Tracker {
        Tracker {
            threshold,
            spike_at_ms,
            peak: None,
            balanced_since: None,
            overloaded_at: None,
            migrations: Vec::new(),
            now_ms: 0,
        }
    }

    /// Host loads at simulated time `t_ms`: (host name, CPU utilisation).
    pub fn observe(&mut self, t_ms: u64, loads: &[(String, f64)]) {
        self.now_ms = self.now_ms.max(t_ms);
        for (h, u) in loads {
            if self.peak.as_ref().is_none_or(|(p, _, _)| u > p) {
                self.peak = Some((*u, h.clone(), t_ms));
            }
        }
        if t_ms < self.spike_at_ms {
            return;
        }
        let over = loads.iter().any(|(_, u)| *u > self.threshold);
        if over {
            self.overloaded_at.get_or_insert(t_ms);
            self.balanced_since = None;
        } else if self.overloaded_at.is_some() {
            self.balanced_since.get_or_insert(t_ms);
        }
    }

    /// A migration started.
    pub fn started(&mut self, rec: MigrationRecord) {
        self.migrations.push(rec);
    }

    /// The migration of `vm` in flight ended at `end_ms` (failed or not); returns it.
    pub fn ended(&mut self, vm: &str, end_ms: u64, failed: bool) -> Option<&MigrationRecord> {
        let rec = self
            .migrations
            .iter_mut()
            .rev()
            .find(|m| m.vm == vm && m.end_ms.is_none())?;
        rec.end_ms = Some(end_ms);
        rec.failed = failed;
        Some(rec)
    }

    /// Migrations in flight.
    pub fn inflight(&self) -> usize {
        self.migrations
            .iter()
            .filter(|m| m.end_ms.is_none())
            .count()
    }

    /// The figures so far.
    pub fn summary(&self, speedup: f64) -> Summary {
        let done = self
            .migrations
            .iter()
            .filter(|m| m.end_ms.is_some() && !m.failed)
            .count();
        let failed = self.migrations.iter().filter(|m| m.failed).count();
        Summary {
            migrations_started: self.migrations.len(),
            migrations_done: done,
            migrations_failed: failed,
            spike_seen: self.overloaded_at.is_some(),
            time_to_balance_ms: match (self.overloaded_at, self.balanced_since) {
                (Some(_), Some(b)) => Some(b.saturating_sub(self.spike_at_ms)),
                _ => None,
            },
            peak: self.peak.clone(),
            sim_ms: self.now_ms,
            speedup,
            moves: self.migrations.clone(),
        }
    }
}

/// What the demo prints when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Migrations started.
    pub migrations_started: usize,
    /// Migrations finished successfully.
    pub migrations_done: usize,
    /// Migrations that failed.
    pub migrations_failed: usize,
    /// A host was overloaded after the spike.
    pub spike_seen: bool,
    /// From the spike to the moment no host was overloaded any more (and stayed so), simulated ms.
    pub time_to_balance_ms: Option<u64>,
    /// Peak host CPU utilisation, host, simulated ms.
    pub peak: Option<(f64, String, u64)>,
    /// Simulated time covered.
    pub sim_ms: u64,
    /// Simulated seconds per wall second.
    pub speedup: f64,
    /// Every migration.
    pub moves: Vec<MigrationRecord>,
}

/// Simulated ms as "123.4 s sim (12.3 s wall)".
fn both(ms: u64, speedup: f64) -> String {
    let s = ms as f64 / 1000.0;
    format!("{s:.1} s simulated ({:.1} s wall)", s / speedup.max(1e-9))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== gmond-rs demo summary ==")?;
        writeln!(f, "ran for:          {}", both(self.sim_ms, self.speedup))?;
        writeln!(
            f,
            "migrations:       {} started, {} done, {} failed",
            self.migrations_started, self.migrations_done, self.migrations_failed
        )?;
        for m in &self.moves {
            let end = match (m.end_ms, m.failed) {
                (Some(_), true) => "FAILED".to_string(),
                (Some(e), false) => format!("{:.1} s", (e - m.start_ms) as f64 / 1000.0),
                (None, _) => "in flight".to_string(),
            };
            writeln!(
                f,
                "  {} {} -> {} at t={:.0} s ({end}){}",
                m.vm,
                m.from,
                m.to,
                m.start_ms as f64 / 1000.0,
                if m.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", m.reason)
                }
            )?;
        }
        match self.time_to_balance_ms {
            Some(ms) => writeln!(f, "time to balance:  {}", both(ms, self.speedup))?,
            None if self.spike_seen => writeln!(f, "time to balance:  not balanced yet")?,
            None => writeln!(f, "time to balance:  no overload seen")?,
        }
        match &self.peak {
            Some((u, h, t)) => writeln!(
                f,
                "peak overload:    {:.0} % CPU on {h} at t={:.0} s",
                u * 100.0,
                *t as f64 / 1000.0
            ),
            None => writeln!(f, "peak overload:    none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(v: &[f64]) -> Vec<(String, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, u)| (format!("hv{:02}", i + 1), *u))
            .collect()
    }

    #[test]
    fn balance_time_counts_from_spike_to_last_recovery() {
        let mut t = Tracker::new(0.85, 10_000);
        t.observe(5_000, &loads(&[0.2, 0.3]));
        t.observe(10_000, &loads(&[0.2, 1.8]));
        t.observe(20_000, &loads(&[0.6, 0.7]));
        // A relapse resets the clock.
        t.observe(25_000, &loads(&[0.6, 0.9]));
        t.observe(30_000, &loads(&[0.6, 0.7]));
        t.observe(40_000, &loads(&[0.6, 0.7]));
        let s = t.summary(10.0);
        assert_eq!(s.time_to_balance_ms, Some(20_000));
        assert_eq!(s.peak, Some((1.8, "hv02".into(), 10_000)));
        let text = s.to_string();
        assert!(
            text.contains("time to balance:  20.0 s simulated (2.0 s wall)"),
            "{text}"
        );
        assert!(
            text.contains("peak overload:    180 % CPU on hv02"),
            "{text}"
        );
    }

    #[test]
    fn migrations_start_and_end() {
        let mut t = Tracker::new(0.85, 0);
        let rec = |vm: &str| MigrationRecord {
            vm: vm.into(),
            from: "hv02".into(),
            to: "hv03".into(),
            reason: "hotspot".into(),
            start_ms: 1_000,
            end_ms: None,
            failed: false,
        };
        t.started(rec("vm02"));
        t.started(rec("vm06"));
        assert_eq!(t.inflight(), 2);
        assert_eq!(t.ended("vm02", 35_000, false).unwrap().to, "hv03");
        assert!(t.ended("vm02", 36_000, false).is_none());
        t.ended("vm06", 2_000, true);
        let s = t.summary(10.0);
        assert_eq!(
            (s.migrations_started, s.migrations_done, s.migrations_failed),
            (2, 1, 1)
        );
        let text = s.to_string();
        assert!(
            text.contains("vm02 hv02 -> hv03 at t=1 s (34.0 s): hotspot"),
            "{text}"
        );
        assert!(text.contains("FAILED"), "{text}");
        assert!(text.contains("no overload seen"), "{text}");
    }
}
