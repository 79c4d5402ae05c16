//! Per-host and per-VM load histories with smoothing (EWMA), a least-squares trend and its
//! forecast, sustained-condition tests (k of the last n over a threshold) and robust spread
//! statistics (IQR, MAD) for Beloglazov's detectors.
//!
//! History lives in memory; [`TrendStore`] is the boundary where an RRD-backed store plugs in.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use statrs::statistics::{Data, OrderStatistics, Statistics};

use crate::error::Result;
use crate::snapshot::Snapshot;

/// A bounded time series of one quantity (a utilisation in 0..=1, usually), one sample per
/// step of `step` seconds whatever the observation rate (a step of 1 s keeps every
/// observation): observations inside one step are averaged, and the steps between two
/// observations further apart hold the earlier value.
/// Windows counted in samples of a series are therefore time: `n` samples are `n x step`
/// seconds at a 10 s or a 300 s observation period alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    cap: usize,
    alpha: f64,
    /// Seconds per sample; 0 keeps every observation as its own sample.
    #[serde(default)]
    step: u64,
    /// (start of the step, value), oldest first, one per step.
    samples: VecDeque<(u64, f64)>,
    /// The newest observation (time, value) and how many are averaged into the newest sample.
    #[serde(default)]
    last_obs: Option<(u64, f64, u32)>,
    ewma: Option<f64>,
}

impl Series {
    /// An empty series keeping `cap` samples, one per observation, smoothing with EWMA weight
    /// `alpha` (0..=1).
    pub fn new(cap: usize, alpha: f64) -> Series {
        Series::with_step(cap, alpha, 0)
    }

    /// An empty series keeping `cap` samples of `step_s` seconds each (0: one per
    /// observation).
    pub fn with_step(cap: usize, alpha: f64, step_s: u64) -> Series {
        Series {
            cap: cap.max(1),
            alpha: alpha.clamp(0.0, 1.0),
            step: step_s,
            samples: VecDeque::with_capacity(cap.max(1)),
            last_obs: None,
            ewma: None,
        }
    }

    /// Seconds per sample (0: one per observation).
    pub fn step_s(&self) -> u64 {
        self.step
    }

    /// Adds an observation at `t`, dropping the oldest samples beyond capacity. Another
    /// observation at the same time replaces it (a re-read of the same feed must not count
    /// twice); one older than the newest is ignored.
    pub fn push(&mut self, t: u64, v: f64) {
        let v = if v.is_finite() { v } else { 0.0 };
        if self.step == 0 {
            if let Some(last) = self.samples.back_mut() {
                if last.0 == t {
                    last.1 = v;
                    return;
                }
            }
            self.append(t, v);
            self.smooth(v);
            return;
        }
        let key = t - t % self.step;
        match (self.last_obs, self.samples.back_mut()) {
            (Some((lt, lv, n)), Some(last)) if lt == t => {
                // Replace the newest observation's share of the newest sample.
                last.1 += (v - lv) / f64::from(n.max(1));
                self.last_obs = Some((t, v, n));
                return;
            }
            (Some((lt, _, _)), _) if t < lt => return,
            (Some((_, _, n)), Some(last)) if last.0 == key => {
                let n = n.saturating_add(1);
                last.1 += (v - last.1) / f64::from(n);
                self.last_obs = Some((t, v, n));
                self.smooth(v);
                return;
            }
            _ => {}
        }
        // The steps skipped since the newest sample (at most a full history of them) hold its
        // value: an observation is a point sample, known to stand only from its own time on. A
        // new value therefore needs its own steps to pass a sustained test, at any period.
        if let Some(&(last_key, held)) = self.samples.back() {
            let gap = (key.saturating_sub(last_key) / self.step).saturating_sub(1);
            let fill = gap.min(self.cap as u64);
            for i in (1..=fill).rev() {
                self.append(key - i * self.step, held);
            }
        }
        self.append(key, v);
        self.last_obs = Some((t, v, 1));
        self.smooth(v);
    }

    fn append(&mut self, key: u64, v: f64) {
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back((key, v));
    }

    fn smooth(&mut self, v: f64) {
        self.ewma = Some(match self.ewma {
            None => v,
            Some(e) => self.alpha * v + (1.0 - self.alpha) * e,
        });
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The newest value.
    pub fn last(&self) -> Option<f64> {
        self.samples.back().map(|s| s.1)
    }

    /// Exponentially weighted moving average.
    pub fn ewma(&self) -> Option<f64> {
        self.ewma
    }

    /// The newest `n` values, oldest first.
    pub fn recent(&self, n: usize) -> impl Iterator<Item = f64> + '_ {
        let skip = self.samples.len().saturating_sub(n);
        self.samples.iter().skip(skip).map(|s| s.1)
    }

    /// Mean of the newest `n` values.
    pub fn mean(&self, n: usize) -> Option<f64> {
        let v: Vec<f64> = self.recent(n).collect();
        (!v.is_empty()).then(|| v.iter().mean())
    }

    /// Least-squares line through the newest `n` values against their index 0..n-1:
    /// (intercept, slope). None with fewer than 2 samples.
    pub fn linear_trend(&self, n: usize) -> Option<(f64, f64)> {
        let y: Vec<f64> = self.recent(n).collect();
        linear_fit(&y)
    }

    /// Value the trend predicts `ahead` samples after the newest one (the newest value itself
    /// when there is no trend yet).
    pub fn forecast(&self, n: usize, ahead: usize) -> Option<f64> {
        let len = self.recent(n).count();
        match self.linear_trend(n) {
            Some((a, b)) => Some(a + b * ((len - 1 + ahead) as f64)),
            None => self.last(),
        }
    }

    /// True when at least `k` of the newest `n` values exceed `threshold` (Sandpiper's test).
    pub fn sustained_above(&self, k: usize, n: usize, threshold: f64) -> bool {
        k > 0 && self.recent(n).filter(|v| *v > threshold).count() >= k
    }

    /// True when at least `k` of the newest `n` values are below `threshold`.
    pub fn sustained_below(&self, k: usize, n: usize, threshold: f64) -> bool {
        k > 0 && self.recent(n).filter(|v| *v < threshold).count() >= k
    }

    /// Median absolute deviation of the newest `n` values.
    pub fn mad(&self, n: usize) -> Option<f64> {
        let v: Vec<f64> = self.recent(n).collect();
        mad(&v)
    }
}

/// The weighted sum of `parts` (series, weight) at every sample time any of them has, the
/// newest `cap` times kept; a part without a sample at a time adds nothing then. The history
/// of a set of VMs as one load: what a host holding them now would have carried.
pub fn weighted_sum(parts: &[(&Series, f64)], cap: usize) -> Series {
    let alpha = parts.first().map_or(1.0, |p| p.0.alpha);
    let step = parts.first().map_or(0, |p| p.0.step);
    let mut out = Series::with_step(cap, alpha, step);
    fn newest(s: &Series, cap: usize) -> impl Iterator<Item = u64> + '_ {
        s.samples.iter().rev().take(cap).map(|x| x.0)
    }
    let cap = out.cap;
    // Usually every series has the same sample times (one observation a round): sum by index.
    if let Some((first, _)) = parts.first() {
        let n = first.samples.len().min(out.cap);
        if parts
            .iter()
            .all(|(s, _)| s.samples.len() >= n && newest(s, cap).take(n).eq(newest(first, cap)))
        {
            let skip = first.samples.len() - n;
            for (i, &(t, _)) in first.samples.iter().enumerate().skip(skip) {
                let back = first.samples.len() - i;
                let v = parts
                    .iter()
                    .map(|(s, w)| w * s.samples[s.samples.len() - back].1)
                    .sum();
                out.push(t, v);
            }
            return out;
        }
    }
    // A sample older than its own series' newest `cap` is older than `cap` distinct times of
    // the sum, so only those are read: hotspot runs this for every host every round.
    let mut at: Vec<(u64, f64)> = Vec::with_capacity(parts.len() * out.cap);
    for (series, w) in parts {
        at.extend(
            series
                .samples
                .iter()
                .rev()
                .take(out.cap)
                .map(|&(t, v)| (t, w * v)),
        );
    }
    at.sort_unstable_by_key(|x| x.0);
    let mut merged: Vec<(u64, f64)> = Vec::with_capacity(at.len());
    for (t, v) in at {
        match merged.last_mut() {
            Some(last) if last.0 == t => last.1 += v,
            _ => merged.push((t, v)),
        }
    }
    let skip = merged.len().saturating_sub(out.cap);
    for (t, v) in merged.into_iter().skip(skip) {
        out.push(t, v);
    }
    out
}

/// Least-squares fit y = a + b x with x = 0, 1, ...: (a, b).
pub fn linear_fit(y: &[f64]) -> Option<(f64, f64)> {
    let n = y.len();
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mx = (nf - 1.0) / 2.0;
    let my = y.iter().mean();
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (v - my);
        sxx += dx * dx;
    }
    let b = sxy / sxx;
    Some((my - b * mx, b))
}

/// Median absolute deviation (statrs medians).
pub fn mad(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let med = Data::new(v.to_vec()).median();
    let dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    Some(Data::new(dev).median())
}

/// Percentile `p` (0..=100) with Apache commons-math's default estimator (position
/// p(n+1)/100, linear interpolation, clamped to the ends), which CloudSim's IQR detector uses;
/// statrs' estimator differs on small samples, and fidelity needs the same numbers.
pub fn percentile_commons(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let pos = p * (n + 1.0) / 100.0;
    if pos < 1.0 {
        return Some(s[0]);
    }
    if pos >= n {
        return Some(s[s.len() - 1]);
    }
    let lo = pos.floor();
    let d = pos - lo;
    let i = lo as usize - 1;
    Some(s[i] + d * (s[i + 1] - s[i]))
}

/// Interquartile range with [`percentile_commons`].
pub fn iqr(v: &[f64]) -> Option<f64> {
    Some(percentile_commons(v, 75.0)? - percentile_commons(v, 25.0)?)
}

/// Interquartile range as CloudSim 3.0.3's `MathUtil.iqr` computes it (the code the paper's
/// numbers come from): sort, then take the values at positions round(0.25 (n + 1)) and
/// round(0.75 (n + 1)) (1-based, halves rounded up), without interpolation.
pub fn iqr_cloudsim(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    // Detectors call this for every candidate host: stay on the stack for their 30 samples.
    let mut buf = [0.0f64; 32];
    let mut heap = Vec::new();
    let s: &mut [f64] = if v.len() <= buf.len() {
        buf[..v.len()].copy_from_slice(v);
        &mut buf[..v.len()]
    } else {
        heap.extend_from_slice(v);
        &mut heap
    };
    let n = s.len() as f64;
    let pos = |q: f64| {
        let i = ((q * (n + 1.0)) + 0.5).floor() as usize;
        i.saturating_sub(1).min(s.len() - 1)
    };
    let (lo, hi) = (pos(0.25), pos(0.75));
    // Two selections instead of a sort: q3 first, then q1 among the values at or below it.
    let q3 = kth_smallest(s, hi);
    let q1 = if lo == hi {
        q3
    } else {
        kth_smallest(&mut s[..hi], lo)
    };
    Some(q3 - q1)
}

/// The `k`-th smallest value of `v` (0-based), reordering `v`: quickselect with a
/// median-of-three pivot. For the 30-sample histories the detectors use, this is several times
/// cheaper than the standard library's selection, which falls back to insertion sort on short
/// slices.
pub fn kth_smallest(v: &mut [f64], k: usize) -> f64 {
    let (mut lo, mut hi) = (0usize, v.len() - 1);
    loop {
        if lo >= hi {
            return v[lo];
        }
        let mid = lo + (hi - lo) / 2;
        // Median of three to v[hi] as the pivot.
        if v[mid] < v[lo] {
            v.swap(mid, lo);
        }
        if v[hi] < v[lo] {
            v.swap(hi, lo);
        }
        if v[mid] < v[hi] {
            v.swap(mid, hi);
        }
        let pivot = v[hi];
        let mut store = lo;
        for i in lo..hi {
            if v[i] < pivot {
                v.swap(i, store);
                store += 1;
            }
        }
        v.swap(store, hi);
        match k.cmp(&store) {
            std::cmp::Ordering::Equal => return v[store],
            std::cmp::Ordering::Less => hi = store - 1,
            std::cmp::Ordering::Greater => lo = store + 1,
        }
    }
}

/// Population standard deviation (statrs).
pub fn population_std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        0.0
    } else {
        v.iter().population_std_dev()
    }
}

/// Settings of the in-memory history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrendConfig {
    /// Samples kept per series (default 30, as CloudSim's VM history).
    pub capacity: usize,
    /// EWMA weight of the newest sample (default 0.3).
    pub alpha: f64,
    /// Seconds per sample, whatever the observation period; 0 (the default) keeps every
    /// observation as a sample and measures the period between them instead, so windows in
    /// seconds still hold for a caller that does not know the policy (a policy's own step
    /// comes from `PolicySpec::trend_config`).
    #[serde(default)]
    pub step_s: u64,
}

impl Default for TrendConfig {
    fn default() -> Self {
        TrendConfig {
            capacity: 30,
            alpha: 0.3,
            step_s: 0,
        }
    }
}

/// Histories for every host (CPU and memory utilisation) and VM (CPU demand as a fraction of
/// its capacity), keyed by name so they survive reordering and host changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trends {
    cfg: TrendConfig,
    host_cpu: BTreeMap<String, Series>,
    host_mem: BTreeMap<String, Series>,
    vm_cpu: BTreeMap<String, Series>,
    /// The newest distinct observation times, oldest first (the period when `step_s` is 0).
    times: VecDeque<u64>,
}

/// Observation times kept to measure the period.
const PERIOD_TIMES: usize = 9;

/// The period assumed before two observations were seen, seconds.
const UNKNOWN_PERIOD_S: u64 = 60;

impl Trends {
    /// Empty histories.
    pub fn new(cfg: TrendConfig) -> Trends {
        Trends {
            cfg,
            ..Default::default()
        }
    }

    /// Records one snapshot. VMs and hosts that disappeared keep their (frozen) history.
    pub fn observe(&mut self, s: &Snapshot) {
        if self.times.back().is_none_or(|&t| s.time > t) {
            if self.times.len() == PERIOD_TIMES {
                self.times.pop_front();
            }
            self.times.push_back(s.time);
        }
        let loads = s.host_loads();
        let (cap, alpha, step) = (self.cfg.capacity, self.cfg.alpha, self.cfg.step_s);
        for (h, (cpu, mem, _)) in s.hosts.iter().zip(loads) {
            if !h.up {
                continue;
            }
            self.host_cpu
                .entry(h.name.clone())
                .or_insert_with(|| Series::with_step(cap, alpha, step))
                .push(s.time, cpu / h.cpu_mhz());
            self.host_mem
                .entry(h.name.clone())
                .or_insert_with(|| Series::with_step(cap, alpha, step))
                .push(s.time, mem as f64 / h.mem_kb as f64);
        }
        for vm in &s.vms {
            match self.vm_cpu.get_mut(&vm.name) {
                Some(series) => series.push(s.time, vm.cpu_frac()),
                None => {
                    let mut series = Series::with_step(cap, alpha, step);
                    series.push(s.time, vm.cpu_frac());
                    self.vm_cpu.insert(vm.name.clone(), series);
                }
            }
        }
    }

    /// Seconds per sample of every series: the configured step, else the median period between
    /// the recent observations (60 s until there are two).
    pub fn step_s(&self) -> u64 {
        if self.cfg.step_s > 0 {
            return self.cfg.step_s;
        }
        let mut gaps: Vec<u64> = self
            .times
            .iter()
            .zip(self.times.iter().skip(1))
            .map(|(a, b)| b - a)
            .collect();
        if gaps.is_empty() {
            return UNKNOWN_PERIOD_S;
        }
        gaps.sort_unstable();
        gaps[gaps.len() / 2].max(1)
    }

    /// Samples covering `window_s` seconds, rounded up, at least 1: how a policy turns a
    /// window in seconds into a count.
    pub fn samples_in(&self, window_s: u64) -> usize {
        usize::try_from(window_s.div_ceil(self.step_s()).max(1)).unwrap_or(usize::MAX)
    }

    /// CPU utilisation history of a host.
    pub fn host_cpu(&self, host: &str) -> Option<&Series> {
        self.host_cpu.get(host)
    }

    /// Memory utilisation history of a host.
    pub fn host_mem(&self, host: &str) -> Option<&Series> {
        self.host_mem.get(host)
    }

    /// CPU history of a VM (fraction of its capacity).
    pub fn vm_cpu(&self, vm: &str) -> Option<&Series> {
        self.vm_cpu.get(vm)
    }

    /// Writes the newest sample of every series to a store.
    pub fn persist(&self, store: &mut dyn TrendStore) -> Result<()> {
        for (prefix, map) in [
            ("host_cpu", &self.host_cpu),
            ("host_mem", &self.host_mem),
            ("vm_cpu", &self.vm_cpu),
        ] {
            for (name, s) in map {
                if let Some(&(t, v)) = s.samples.back() {
                    store.append(&format!("{prefix}/{name}"), t, v)?;
                }
            }
        }
        Ok(())
    }

    /// Rebuilds the histories of the named hosts and VMs from a store (after a restart).
    pub fn restore(&mut self, store: &dyn TrendStore, hosts: &[&str], vms: &[&str]) -> Result<()> {
        let (cap, alpha, step) = (self.cfg.capacity, self.cfg.alpha, self.cfg.step_s);
        let load = |prefix: &str, name: &str| -> Result<Series> {
            let mut s = Series::with_step(cap, alpha, step);
            for (t, v) in store.recent(&format!("{prefix}/{name}"), cap)? {
                s.push(t, v);
            }
            Ok(s)
        };
        for h in hosts {
            let c = load("host_cpu", h)?;
            let m = load("host_mem", h)?;
            self.host_cpu.insert((*h).to_string(), c);
            self.host_mem.insert((*h).to_string(), m);
        }
        for v in vms {
            let s = load("vm_cpu", v)?;
            self.vm_cpu.insert((*v).to_string(), s);
        }
        Ok(())
    }
}

/// Persistent history backend (an RRD directory later; memory for now and in tests).
pub trait TrendStore {
    /// Appends one sample to the series `key` (e.g. `vm_cpu/web1`).
    fn append(&mut self, key: &str, t: u64, value: f64) -> Result<()>;
    /// The newest `n` samples of `key`, oldest first (empty if unknown).
    fn recent(&self, key: &str, n: usize) -> Result<Vec<(u64, f64)>>;
}

/// A [`TrendStore`] in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    series: BTreeMap<String, Vec<(u64, f64)>>,
}

impl TrendStore for MemoryStore {
    fn append(&mut self, key: &str, t: u64, value: f64) -> Result<()> {
        self.series
            .entry(key.to_string())
            .or_default()
            .push((t, value));
        Ok(())
    }

    fn recent(&self, key: &str, n: usize) -> Result<Vec<(u64, f64)>> {
        Ok(self
            .series
            .get(key)
            .map_or_else(Vec::new, |v| v[v.len().saturating_sub(n)..].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(vals: &[f64]) -> Series {
        let mut s = Series::new(10, 0.5);
        for (i, v) in vals.iter().enumerate() {
            s.push(i as u64, *v);
        }
        s
    }

    #[test]
    fn ewma_by_hand() {
        let s = series(&[1.0, 0.0, 1.0]);
        // 1 -> 0.5 -> 0.75
        assert_eq!(s.ewma(), Some(0.75));
    }

    #[test]
    fn observations_are_averaged_per_step_and_a_gap_is_filled_by_the_next() {
        // 60 s steps: six 10 s observations make one sample, their mean.
        let mut s = Series::with_step(30, 1.0, 60);
        for (i, v) in [0.0, 0.6, 0.6, 0.6, 0.6, 0.6].iter().enumerate() {
            s.push(i as u64 * 10, *v);
        }
        assert_eq!(s.len(), 1);
        assert!((s.last().unwrap() - 0.5).abs() < 1e-12);
        // A re-read at the same time replaces its own share only.
        s.push(50, 0.0);
        assert!((s.last().unwrap() - 0.4).abs() < 1e-12);
        // An older observation is ignored.
        s.push(20, 9.0);
        assert!((s.last().unwrap() - 0.4).abs() < 1e-12);
        // 300 s later: the four steps skipped hold the earlier value, the new one is its own.
        s.push(350, 0.9);
        let got: Vec<f64> = s.recent(10).collect();
        assert_eq!(got.len(), 6);
        assert!(got[..5].iter().all(|v| (v - 0.4).abs() < 1e-12), "{got:?}");
        assert_eq!(got[5], 0.9);
        // 10 s and 300 s observation periods of the same steady load give the same samples.
        let (mut fine, mut coarse) = (
            Series::with_step(30, 1.0, 60),
            Series::with_step(30, 1.0, 60),
        );
        for t in (0..=1200).step_by(10) {
            fine.push(t, 0.7);
        }
        for t in (0..=1200).step_by(300) {
            coarse.push(t, 0.7);
        }
        assert_eq!(
            fine.recent(30).collect::<Vec<_>>(),
            coarse.recent(30).collect::<Vec<_>>()
        );
        assert_eq!(fine.len(), 21);
    }

    #[test]
    fn without_a_step_the_period_is_measured() {
        let snap = |t: u64| Snapshot {
            time: t,
            ..Snapshot::default()
        };
        let mut t = Trends::new(TrendConfig::default());
        assert_eq!(t.step_s(), 60);
        for time in [100, 110, 120, 130, 400, 410] {
            t.observe(&snap(time));
        }
        // Gaps 10, 10, 10, 270, 10: the median is the period; a missed read does not move it.
        assert_eq!(t.step_s(), 10);
        assert_eq!(t.samples_in(180), 18);
        let cfg = TrendConfig {
            step_s: 300,
            ..TrendConfig::default()
        };
        assert_eq!(Trends::new(cfg).samples_in(3600), 12);
    }

    #[test]
    fn weighted_sum_aligns_by_time_and_keeps_the_newest() {
        // a at t = 0..3, b only at t = 2..3 (it arrived later): b adds nothing before.
        let a = series(&[0.2, 0.4, 0.6, 0.8]);
        let mut b = Series::new(10, 0.5);
        b.push(2, 1.0);
        b.push(3, 0.5);
        let sum = weighted_sum(&[(&a, 0.5), (&b, 0.25)], 3);
        let got: Vec<f64> = sum.recent(10).collect();
        assert_eq!(got, vec![0.2, 0.3 + 0.25, 0.4 + 0.125]);
        assert_eq!(weighted_sum(&[], 3).len(), 0);
    }

    #[test]
    fn trend_and_forecast_by_hand() {
        let s = series(&[0.1, 0.2, 0.3, 0.4]);
        let (a, b) = s.linear_trend(4).unwrap();
        assert!((a - 0.1).abs() < 1e-12 && (b - 0.1).abs() < 1e-12);
        assert!((s.forecast(4, 2).unwrap() - 0.6).abs() < 1e-12);
        assert!((s.forecast(2, 1).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(series(&[0.7]).forecast(5, 3), Some(0.7));
    }

    #[test]
    fn sustained_k_of_n() {
        let s = series(&[0.9, 0.1, 0.9, 0.9, 0.2]);
        assert!(s.sustained_above(3, 5, 0.8));
        assert!(!s.sustained_above(3, 3, 0.8));
        assert!(s.sustained_below(2, 5, 0.5));
        assert!(!s.sustained_above(0, 5, 0.0));
    }

    #[test]
    fn capacity_and_same_time_replace() {
        let mut s = Series::new(2, 1.0);
        s.push(1, 0.1);
        s.push(1, 0.2);
        assert_eq!(s.len(), 1);
        s.push(2, 0.3);
        s.push(3, 0.4);
        assert_eq!(s.recent(5).collect::<Vec<_>>(), vec![0.3, 0.4]);
        s.push(4, f64::NAN);
        assert_eq!(s.last(), Some(0.0));
    }

    #[test]
    fn kth_smallest_agrees_with_sorting() {
        // Deterministic pseudo-random samples with ties, all lengths 1..=40 and every k.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 1..=40usize {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    f64::from((x % 17) as u32) / 4.0
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            for k in 0..n {
                let mut w = v.clone();
                assert_eq!(kth_smallest(&mut w, k), sorted[k], "n={n} k={k}");
            }
        }
    }

    #[test]
    fn robust_statistics_by_hand() {
        // commons-math: n=4, p25 -> pos 1.25 -> 1 + 0.25*(2-1) = 1.25; p75 -> pos 3.75 -> 3.75.
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_commons(&v, 25.0), Some(1.25));
        assert_eq!(percentile_commons(&v, 75.0), Some(3.75));
        assert_eq!(iqr(&v), Some(2.5));
        // median 3; deviations 2,1,0,1,6 -> median 1.
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 9.0]), Some(1.0));
        assert_eq!(population_std_dev(&[0.0, 1.0]), 0.5);
        assert_eq!(percentile_commons(&[], 50.0), None);
    }

    #[test]
    fn store_round_trip() {
        let s = Snapshot::default();
        let mut t = Trends::new(TrendConfig::default());
        t.observe(&s);
        let mut store = MemoryStore::default();
        // One step (60 s) apart: two samples.
        store.append("vm_cpu/a", 60, 0.5).unwrap();
        store.append("vm_cpu/a", 120, 0.7).unwrap();
        t.persist(&mut store).unwrap();
        let mut r = Trends::new(TrendConfig::default());
        r.restore(&store, &[], &["a"]).unwrap();
        assert_eq!(
            r.vm_cpu("a").unwrap().recent(5).collect::<Vec<_>>(),
            vec![0.5, 0.7]
        );
    }
}
