//! CPU percentages from /proc/stat jiffy counters, as gmond's cpu module computes them.
//!
//! Each percentage metric keeps its own previous (field, total) pair, exactly like the
//! per-function statics in gmond: the value is the share of the metric's jiffies in all
//! jiffies since that metric was last computed. The previous pair starts at zero, so the
//! **first sample is the average since boot** (what real gmond reports right after start).

use super::procfs::{CpuField, StatSnapshot};

/// The CPU percentage metrics that need a previous sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPercent {
    /// `cpu_user`.
    User,
    /// `cpu_nice`.
    Nice,
    /// `cpu_system` (includes irq and softirq time on 2.6+ kernels).
    System,
    /// `cpu_idle`.
    Idle,
    /// `cpu_wio`.
    Wio,
    /// `cpu_intr`.
    Intr,
    /// `cpu_sintr`.
    Sintr,
    /// `cpu_steal`.
    Steal,
}

impl CpuPercent {
    const ALL: [CpuPercent; 8] = [
        CpuPercent::User,
        CpuPercent::Nice,
        CpuPercent::System,
        CpuPercent::Idle,
        CpuPercent::Wio,
        CpuPercent::Intr,
        CpuPercent::Sintr,
        CpuPercent::Steal,
    ];

    /// The metric this percentage is reported as.
    pub fn from_metric(name: &str) -> Option<Self> {
        Some(match name {
            "cpu_user" => CpuPercent::User,
            "cpu_nice" => CpuPercent::Nice,
            "cpu_system" => CpuPercent::System,
            "cpu_idle" => CpuPercent::Idle,
            "cpu_wio" => CpuPercent::Wio,
            "cpu_intr" => CpuPercent::Intr,
            "cpu_sintr" => CpuPercent::Sintr,
            "cpu_steal" => CpuPercent::Steal,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }

    /// The jiffies counted for this metric in one snapshot.
    fn jiffies(self, s: &StatSnapshot) -> u64 {
        match self {
            CpuPercent::User => s.get(CpuField::User),
            CpuPercent::Nice => s.get(CpuField::Nice),
            CpuPercent::System if s.has_26_states() => s
                .get(CpuField::System)
                .wrapping_add(s.get(CpuField::Irq))
                .wrapping_add(s.get(CpuField::Softirq)),
            CpuPercent::System => s.get(CpuField::System),
            CpuPercent::Idle => s.get(CpuField::Idle),
            CpuPercent::Wio => s.get(CpuField::Iowait),
            CpuPercent::Intr => s.get(CpuField::Irq),
            CpuPercent::Sintr => s.get(CpuField::Softirq),
            CpuPercent::Steal => s.get(CpuField::Steal),
        }
    }

    /// 2.4 kernels have no iowait/irq/softirq columns; gmond reports 0 without state.
    fn needs_26_states(self) -> bool {
        matches!(self, CpuPercent::Wio | CpuPercent::Intr | CpuPercent::Sintr)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Previous {
    field: u64,
    total: u64,
    value: f32,
    /// Which /proc/stat read the value was computed from.
    read_seq: Option<u64>,
}

/// Previous samples for all CPU percentage metrics.
#[derive(Debug, Clone, Default)]
pub struct CpuRates {
    prev: [Previous; 8],
}

impl CpuRates {
    /// A fresh state: the next value of every metric is its average since boot.
    pub fn new() -> Self {
        Self::default()
    }

    /// The percentage for `which` given the snapshot from /proc/stat read number
    /// `read_seq`. Calling again with the same `read_seq` returns the same value without
    /// consuming the sample (gmond only recomputes after its 1-second file cache refreshed).
    pub fn percent(&mut self, which: CpuPercent, snap: &StatSnapshot, read_seq: u64) -> f32 {
        if which.needs_26_states() && !snap.has_26_states() {
            return 0.0;
        }
        let prev = &mut self.prev[which.index()];
        if prev.read_seq == Some(read_seq) {
            return prev.value;
        }
        let field = which.jiffies(snap);
        let total = snap.total();
        prev.value = if which == CpuPercent::Steal {
            steal_percent(field, total, prev.field, prev.total)
        } else {
            clamped_percent(field, total, prev.field, prev.total)
        };
        prev.field = field;
        prev.total = total;
        prev.read_seq = Some(read_seq);
        prev.value
    }
}

/// gmond works in unsigned 64-bit jiffies: a counter that went backwards wraps to a huge
/// difference and the result is then clamped to 0..=100 (its `sanityCheck`).
fn clamped_percent(field: u64, total: u64, last_field: u64, last_total: u64) -> f32 {
    let diff = field.wrapping_sub(last_field);
    if diff == 0 {
        return 0.0;
    }
    let dt = total.wrapping_sub(last_total);
    // Stored in a C float before the range check, like gmond. Never NaN: diff != 0, and a
    // zero dt gives +inf, which clamps to 100.
    ((diff as f64 / dt as f64 * 100.0) as f32).clamp(0.0, 100.0)
}

/// gmond computes steal in doubles and does not range-check it (a decreasing counter gives
/// a negative value). Deviation: a zero total delta gives 0 here where gmond yields inf/nan.
fn steal_percent(field: u64, total: u64, last_field: u64, last_total: u64) -> f32 {
    let diff = field as f64 - last_field as f64;
    if diff == 0.0 {
        return 0.0;
    }
    let v = (diff / (total as f64 - last_total as f64) * 100.0) as f32;
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// `cpu_aidle`: idle share of all jiffies since boot, clamped to 0..=100.
pub fn aidle_percent(snap: &StatSnapshot) -> f32 {
    let total = snap.total();
    let idle = snap.get(CpuField::Idle);
    let v = (idle as f64 / total as f64 * 100.0) as f32;
    if v > 100.0 {
        100.0
    } else if v >= 0.0 {
        v
    } else {
        // Also catches NaN (0/0 on an all-zero line): gmond's check passes NaN through;
        // reporting 0 keeps the value printable.
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::super::procfs::parse_stat;
    use super::*;

    fn snap(line: &str) -> StatSnapshot {
        parse_stat(line).unwrap()
    }

    #[test]
    fn first_sample_is_since_boot_then_deltas() {
        let mut r = CpuRates::new();
        let a = snap("cpu 100 0 50 800 50 0 0 0 0 0\n");
        assert_eq!(r.percent(CpuPercent::User, &a, 1), 10.0);
        assert_eq!(r.percent(CpuPercent::Idle, &a, 1), 80.0);
        assert_eq!(r.percent(CpuPercent::System, &a, 1), 5.0);
        assert_eq!(r.percent(CpuPercent::Intr, &a, 1), 0.0);
        assert_eq!(r.percent(CpuPercent::Wio, &a, 1), 5.0);
        // user +30, system +10, irq +5, softirq +5, idle +50 => total +100
        let b = snap("cpu 130 0 60 850 50 5 5 0 0 0\n");
        assert_eq!(r.percent(CpuPercent::User, &b, 2), 30.0);
        assert_eq!(r.percent(CpuPercent::System, &b, 2), 20.0);
        assert_eq!(r.percent(CpuPercent::Idle, &b, 2), 50.0);
        assert_eq!(r.percent(CpuPercent::Intr, &b, 2), 5.0);
        assert_eq!(r.percent(CpuPercent::Wio, &b, 2), 0.0);
        // Same read again: cached, not recomputed against itself.
        assert_eq!(r.percent(CpuPercent::User, &b, 2), 30.0);
    }

    #[test]
    fn per_metric_state_like_gmond_statics() {
        let mut r = CpuRates::new();
        let a = snap("cpu 100 0 0 900 0 0 0 0 0 0\n");
        let b = snap("cpu 200 0 0 1000 0 0 0 0 0 0\n");
        let c = snap("cpu 300 0 0 1100 0 0 0 0 0 0\n");
        r.percent(CpuPercent::User, &a, 1);
        r.percent(CpuPercent::User, &b, 2);
        // Idle was never computed: its first value still covers everything since boot.
        assert_eq!(r.percent(CpuPercent::Idle, &c, 3), 1100.0 / 1400.0 * 100.0);
        assert_eq!(r.percent(CpuPercent::User, &c, 3), 50.0);
    }

    #[test]
    fn counter_going_backwards_clamps_to_100() {
        let mut r = CpuRates::new();
        r.percent(CpuPercent::User, &snap("cpu 500 0 0 500 0 0 0 0 0 0\n"), 1);
        // Aggregate counters can shrink when a CPU goes offline.
        let v = r.percent(CpuPercent::User, &snap("cpu 400 0 0 700 0 0 0 0 0 0\n"), 2);
        assert_eq!(v, 100.0);
        let v = r.percent(CpuPercent::User, &snap("cpu 450 0 0 750 0 0 0 0 0 0\n"), 3);
        assert_eq!(v, 50.0);
    }

    #[test]
    fn steal_is_not_clamped_and_old_kernels_report_zero() {
        let mut r = CpuRates::new();
        r.percent(CpuPercent::Steal, &snap("cpu 0 0 0 100 0 0 0 50 0 0\n"), 1);
        let v = r.percent(CpuPercent::Steal, &snap("cpu 0 0 0 200 0 0 0 40 0 0\n"), 2);
        assert_eq!(v, (-10.0_f64 / 90.0 * 100.0) as f32);
        let old = snap("cpu 10 20 30 40\n");
        assert_eq!(r.percent(CpuPercent::Wio, &old, 3), 0.0);
        assert_eq!(r.percent(CpuPercent::System, &old, 3), 30.0);
    }

    #[test]
    fn aidle_is_since_boot() {
        assert_eq!(aidle_percent(&snap("cpu 25 0 0 75 0 0 0 0 0 0\n")), 75.0);
        assert_eq!(aidle_percent(&snap("cpu 0 0 0 0 0 0 0 0 0 0\n")), 0.0);
    }
}
