//! How the simulator tells its caller how far a run got. The core only reports; drawing a bar
//! or printing lines is the `balancer` binary's business, so the simulator stays free of I/O.

/// Where a run stands after one accounted tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickProgress {
    /// Index of the tick just accounted, from 0.
    pub tick: u64,
    /// Ticks in the run.
    pub ticks: u64,
    /// Simulated second at the start of the tick.
    pub t_s: u64,
    /// Migrations counted so far.
    pub migrations: u64,
    /// CPU utilisation sigma over the hosts that count at this tick.
    pub sigma: f64,
}

impl TickProgress {
    /// True for the run's last tick.
    pub fn is_last(&self) -> bool {
        self.tick + 1 == self.ticks
    }
}

/// Receives a run's progress, once after every accounted tick (the CloudSim world accounts no
/// tick 0: its first update is one interval after start).
pub trait Progress {
    /// Called after each accounted tick.
    fn tick(&mut self, at: &TickProgress);

    /// A decision round explained (only when [`crate::sim::SimOptions::explain`] is set):
    /// `text` is the plan's verbose explanation, as `plan --explain` prints it.
    fn explain(&mut self, _t_s: u64, _text: &str) {}
}

/// Any closure taking a [`TickProgress`] is a [`Progress`].
impl<F: FnMut(&TickProgress)> Progress for F {
    fn tick(&mut self, at: &TickProgress) {
        self(at)
    }
}

/// Ignores the progress (what [`crate::sim::simulate`] uses).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn tick(&mut self, _: &TickProgress) {}
}
