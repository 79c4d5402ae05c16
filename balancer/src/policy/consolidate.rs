//! `consolidate`: Beloglazov & Buyya's dynamic consolidation for power saving. An overload
//! detector (THR, IQR, MAD or LR) flags hosts; VMs are taken off them by minimum migration
//! time (or minimum utilisation) until the detector is quiet; they and the VMs of underloaded
//! hosts are placed by power-aware best-fit decreasing (PABFD). An underloaded host is only
//! emptied if all its VMs fit elsewhere. Our defaults add what the paper lacks: a sustained
//! underload test and the planner's hysteresis, cooldown and limits.

use serde::{Deserialize, Serialize};

use crate::error::BalancerError;
use crate::plan::{r6, Reason};
use crate::planner::{MoveKind, Planner, Refusal};
use crate::snapshot::PowerCurve;
use crate::trends::{iqr_cloudsim, kth_smallest, linear_fit};

/// Overload detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    /// Static threshold.
    Thr,
    /// 1 - s * IQR(host history).
    Iqr,
    /// 1 - s * MAD(host history).
    Mad,
    /// s * linear prediction >= 1.
    Lr,
    /// As `lr`, with the fit made robust by one bisquare reweighting of its residuals
    /// (Beloglazov's LRR; outlying samples stop steering the prediction).
    Lrr,
}

/// VM selection on an overloaded host (`selection` of `[consolidate]`, `kind` of a composed
/// policy's `[selector]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// Minimum migration time (smallest memory).
    Mmt,
    /// Minimum CPU utilisation.
    Mu,
    /// Sandpiper's largest volume-to-size ratio first (hotspot's selection).
    Vsr,
    /// Fewest migrations (Beloglazov's MM): the smallest VM that alone brings the host down
    /// to its threshold, else the largest, again until it is there.
    Mm,
    /// Maximum correlation (Beloglazov's MC, on the sum of the others): the VM whose CPU
    /// history moves most with the rest of the host's load.
    Mc,
}

/// `[consolidate]` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsolidateParams {
    /// Overload detector (default thr).
    pub detector: Detector,
    /// Static threshold for thr (0..=1, default 0.8).
    pub threshold: f64,
    /// Safety parameter s of iqr/mad/lr (0..=5; 1.5 / 2.5 / 1.2 in the paper).
    pub safety: f64,
    /// Threshold used by iqr/mad/lr while the history is too short (default 0.7).
    pub fallback_threshold: f64,
    /// History iqr/mad need, seconds (default 3600: CloudSim's 12 samples of 300 s).
    pub min_history_s: u64,
    /// History in the lr fit, seconds (default 3000: 10 samples of 300 s).
    pub lr_window_s: u64,
    /// Sustained overload: the detector must also hold for `overload_s` of the last
    /// `overload_window_s` seconds of the host's history (one step of one = the paper).
    pub overload_s: u64,
    /// Window of the sustained overload test, seconds (default 300).
    pub overload_window_s: u64,
    /// VM selection (default mmt).
    pub selection: Selection,
    /// Empty underloaded hosts (default true).
    pub underload: bool,
    /// A host is underload-eligible only if its mean CPU utilisation over the last
    /// `underload_window_s` seconds is below this (0..=1; 1.0 = any host, as in the paper).
    pub underload_threshold: f64,
    /// Window of the underload test, seconds (default 300).
    pub underload_window_s: u64,
    /// Most underloaded hosts emptied per round (0 = unlimited, default 0).
    pub max_underload_hosts: usize,
    /// Reproduce CloudSim 3.0.3's placement arithmetic: power and the skip-the-detector test
    /// use each host's utilisation from the start of the round, ignoring VMs placed earlier in
    /// the same round (default false).
    pub cloudsim_stale_util: bool,
    /// Reproduce CloudSim 3.0.3's round literally (default false): "switched off" means idle
    /// at the start of the round, and the underload pass may evacuate a host that just received
    /// VMs from an overloaded one, planning those VMs twice (both moves count as migrations).
    pub cloudsim_quirks: bool,
    /// Reproduce CloudSim 3.0.3's placement check: the demand per vCPU must fit one physical
    /// core (default true).
    pub pe_check: bool,
    /// Deprecated sample counts, each replacing its `_s` key (`min_history` 2..=30,
    /// `lr_window` 2..=30, `overload_k` <= `overload_n` <= 30 given together,
    /// `underload_window` 1..=30). A sample is one step of the histories (see
    /// `HotspotParams::k`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_history: Option<usize>,
    /// Deprecated: see `min_history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_window: Option<usize>,
    /// Deprecated: see `min_history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overload_k: Option<usize>,
    /// Deprecated: see `min_history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overload_n: Option<usize>,
    /// Deprecated: see `min_history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underload_window: Option<usize>,
}

impl Default for ConsolidateParams {
    fn default() -> Self {
        ConsolidateParams {
            detector: Detector::Thr,
            threshold: 0.8,
            safety: 1.5,
            fallback_threshold: 0.7,
            min_history_s: 3600,
            lr_window_s: 3000,
            overload_s: 300,
            overload_window_s: 300,
            selection: Selection::Mmt,
            underload: true,
            underload_threshold: 1.0,
            underload_window_s: 300,
            max_underload_hosts: 0,
            pe_check: true,
            cloudsim_stale_util: false,
            cloudsim_quirks: false,
            min_history: None,
            lr_window: None,
            overload_k: None,
            overload_n: None,
            underload_window: None,
        }
    }
}

impl ConsolidateParams {
    /// The longest window, seconds.
    pub(crate) fn longest_window_s(&self) -> u64 {
        self.min_history_s
            .max(self.lr_window_s)
            .max(self.overload_window_s)
            .max(self.underload_window_s)
    }

    /// Checks that need the step: the detectors' histories hold at most [`HIST`] samples
    /// (CloudSim's history length), so the history windows must fit in that many steps.
    pub(crate) fn validate_step(&self, step_s: u64) -> crate::Result<()> {
        let most = HIST as u64 * step_s;
        // A deprecated sample count replaces its window in seconds.
        let min_history_s = if self.min_history.is_some() {
            0
        } else {
            self.min_history_s
        };
        let lr_window_s = if self.lr_window.is_some() {
            0
        } else {
            self.lr_window_s
        };
        if min_history_s.max(lr_window_s) > most {
            return Err(BalancerError::Config(format!(
                "consolidate min_history_s and lr_window_s must be at most {HIST} steps \
                 ({most} s at step_s = {step_s})"
            )));
        }
        Ok(())
    }

    /// Range checks.
    pub fn validate(&self) -> crate::Result<()> {
        if !(0.0..=1.0).contains(&self.threshold) || !(0.0..=1.0).contains(&self.fallback_threshold)
        {
            return Err(BalancerError::config(
                "consolidate thresholds must be in 0..=1",
            ));
        }
        if !(0.0..=5.0).contains(&self.safety) {
            return Err(BalancerError::config("consolidate.safety must be in 0..=5"));
        }
        if self.min_history_s == 0 || self.lr_window_s == 0 {
            return Err(BalancerError::config(
                "consolidate min_history_s and lr_window_s must be > 0",
            ));
        }
        if self.overload_s == 0 || self.overload_s > self.overload_window_s {
            return Err(BalancerError::config(
                "consolidate needs 1 <= overload_s <= overload_window_s",
            ));
        }
        let bad = |v: Option<usize>, lo: usize| v.is_some_and(|v| !(lo..=30).contains(&v));
        let pair = match (self.overload_k, self.overload_n) {
            (None, None) => true,
            (Some(k), Some(n)) => k >= 1 && k <= n && n <= 30,
            _ => false,
        };
        if bad(self.min_history, 2)
            || bad(self.lr_window, 2)
            || bad(self.underload_window, 1)
            || !pair
        {
            return Err(BalancerError::config(
                "consolidate's deprecated sample counts: min_history and lr_window 2..=30, \
                 1 <= overload_k <= overload_n <= 30 (both), underload_window 1..=30",
            ));
        }
        if !(0.0..=1.0).contains(&self.underload_threshold) || self.underload_window_s == 0 {
            return Err(BalancerError::config(
                "consolidate underload_threshold 0..=1, underload_window_s > 0",
            ));
        }
        Ok(())
    }
}

const GENERIC: PowerCurve = PowerCurve::GENERIC;

/// The windows of [`ConsolidateParams`] in samples of the histories' step.
#[derive(Debug, Clone, Copy)]
struct Windows {
    min_history: usize,
    lr_window: usize,
    overload_k: usize,
    overload_n: usize,
    underload_window: usize,
    /// Seconds per sample (LR's look-ahead counts migration time in samples).
    step_s: f64,
}

impl Windows {
    fn of(cfg: &ConsolidateParams, trends: &crate::trends::Trends) -> Windows {
        // A deprecated sample count, where given, wins over its window in seconds.
        let n = |count: Option<usize>, s: u64| count.unwrap_or_else(|| trends.samples_in(s));
        let overload_n = n(cfg.overload_n, cfg.overload_window_s);
        Windows {
            min_history: n(cfg.min_history, cfg.min_history_s).clamp(2, HIST),
            lr_window: n(cfg.lr_window, cfg.lr_window_s).clamp(2, HIST),
            overload_k: n(cfg.overload_k, cfg.overload_s).min(overload_n),
            overload_n,
            underload_window: n(cfg.underload_window, cfg.underload_window_s),
            step_s: trends.step_s() as f64,
        }
    }
}

struct Ctx<'p, 'a> {
    cfg: &'p ConsolidateParams,
    w: Windows,
    p: &'p mut Planner<'a>,
    /// Per VM: CPU history (fractions of its capacity), newest first.
    hist: Vec<Vec<f64>>,
    /// Per host: CPU utilisation at the start of the decision. CloudSim ranks underloaded
    /// hosts and prices power by this value, not by the tentative placement.
    util0: Vec<f64>,
    /// Per host: utilisation history of its current VMs, computed on demand and dropped when
    /// a move touches the host (placement asks for it once per candidate host per VM).
    hcache: std::cell::RefCell<Vec<Option<Hist>>>,
    /// Per host: watts at `util0`, the baseline CloudSim prices every placement from.
    p0: Vec<f64>,
    /// Per VM: history statistics for the detector shortcuts.
    vstat: Vec<VmStat>,
    /// Per host: (CPU capacity MHz, MHz per CPU), read once instead of per candidate.
    hcap: Vec<(f64, f64)>,
    /// Per host: detector headroom (see [`Ctx::room_of`]), kept current as moves are planned.
    room: std::cell::RefCell<Vec<f64>>,
    /// Per host: (watts at the present load, flattest slope of the curve in W per MHz), for a
    /// lower bound of any placement's power increase.
    pfloor: std::cell::RefCell<Vec<(f64, f64)>>,
    /// Hosts a planned move touched this round: flag per host; per curve class (flattest
    /// slope's bits) the hosts ordered by watts now minus watts at the start; each host's key.
    touched: std::cell::RefCell<Touched>,
    /// The flattest slope of any host's curve, W per MHz.
    min_slope: f64,
    /// Per host (plus a sentinel): itself while open to placement, else a later index.
    skip: std::cell::RefCell<Vec<usize>>,
}

type Touched = (
    Vec<bool>,
    std::collections::BTreeMap<u64, std::collections::BTreeSet<(i64, usize)>>,
    Vec<Option<i64>>,
);

/// The first index at or after `h` not yet closed in the forest `skip` (path halving).
fn find_open(skip: &mut [usize], mut h: usize) -> usize {
    while skip[h] != h {
        skip[h] = skip[skip[h]];
        h = skip[h];
    }
    h
}

/// An order-preserving integer key for a finite f64.
fn f64_key(x: f64) -> i64 {
    let b = x.to_bits() as i64;
    b ^ (((b >> 63) as u64) >> 1) as i64
}

/// The inverse of [`f64_key`].
fn key_f64(k: i64) -> f64 {
    f64::from_bits((k ^ (((k >> 63) as u64) >> 1) as i64) as u64)
}

/// Samples of history a detector looks at (CloudSim's PowerVm.HISTORY_LENGTH).
const HIST: usize = 30;

/// A host's utilisation history, newest first, without heap allocation: the detectors run it
/// for every candidate host of every VM placed, so it must be cheap.
#[derive(Debug, Clone, Copy, Default)]
struct Hist {
    v: [f64; HIST],
    /// Length after trimming trailing zeros.
    n: usize,
    /// Largest VM memory on the host, KB (LR's migration horizon).
    mem_kb: u64,
    /// IQR or MAD of the history (as the detector computes it), for base histories.
    spread: f64,
    /// Least-squares intercept and slope over the LR window (oldest first), for base histories.
    fit: (f64, f64),
}

/// The scalars of a cached host history the detector shortcuts use.
#[derive(Debug, Clone, Copy)]
struct BaseStats {
    n: usize,
    spread: f64,
    fit: (f64, f64),
    mem_kb: u64,
}

/// Per VM, what the detector shortcuts need of its history.
#[derive(Debug, Clone, Copy, Default)]
struct VmStat {
    /// Samples (at most 30).
    n: usize,
    /// Largest and smallest sample.
    max: f64,
    min: f64,
    /// Fit over the LR window, zero-padded like the host sum.
    fit: (f64, f64),
}

impl Hist {
    /// Drops trailing zeros, as CloudSim's trimZeroTail.
    fn trim(&mut self) {
        while self.n > 0 && self.v[self.n - 1] == 0.0 {
            self.n -= 1;
        }
    }

    fn as_slice(&self) -> &[f64] {
        &self.v[..self.n]
    }
}

/// Least-squares fit over the first `n` samples of a newest-first history, oldest first (x = 0
/// is the oldest), zero-padded if the history is shorter.
fn lr_fit(hist: &[f64], n: usize) -> Option<(f64, f64)> {
    let n = n.min(HIST);
    let mut y = [0.0f64; HIST];
    for (i, x) in hist.iter().take(n).enumerate() {
        y[n - 1 - i] = *x;
    }
    linear_fit(&y[..n])
}

/// [`lr_fit`] made robust (as loess's robustness iterations): residuals r of the current fit,
/// scale 6 x median |r|, weights (1 - (r / scale)^2)^2 (0 beyond the scale), weighted
/// least-squares refit; four rounds.
fn robust_fit(hist: &[f64], n: usize) -> Option<(f64, f64)> {
    let n = n.min(HIST).min(hist.len());
    if n < 2 {
        return None;
    }
    let mut y = [0.0f64; HIST];
    for (i, x) in hist.iter().take(n).enumerate() {
        y[n - 1 - i] = *x;
    }
    let (mut a, mut b) = linear_fit(&y[..n])?;
    for _ in 0..4 {
        let mut res = [0.0f64; HIST];
        for i in 0..n {
            res[i] = (y[i] - (a + b * i as f64)).abs();
        }
        let scale = 6.0 * median_small(&res[..n]);
        if scale <= 1e-15 {
            break;
        }
        let (mut sw, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            let u = res[i] / scale;
            let w = if u < 1.0 { (1.0 - u * u).powi(2) } else { 0.0 };
            let x = i as f64;
            sw += w;
            sx += w * x;
            sy += w * y[i];
            sxx += w * x * x;
            sxy += w * x * y[i];
        }
        let det = sw * sxx - sx * sx;
        if det.abs() < 1e-12 {
            break;
        }
        b = (sw * sxy - sx * sy) / det;
        a = (sy - b * sx) / sw;
    }
    Some((a, b))
}

/// Median of a short sample (mean of the two middle values when even), on the stack.
fn median_small(v: &[f64]) -> f64 {
    let mut s = [0.0f64; HIST];
    let n = v.len().min(HIST);
    s[..n].copy_from_slice(&v[..n]);
    let s = &mut s[..n];
    if n == 0 {
        return 0.0;
    }
    let mid = kth_smallest(s, n / 2);
    if n % 2 == 1 {
        mid
    } else {
        // After the selection, everything left of n / 2 is at most `mid`.
        let below = s[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (below + mid) / 2.0
    }
}

/// Median absolute deviation of a short sample (CloudSim's MathUtil.mad).
fn mad_small(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let m = median_small(v);
    let mut d = [0.0f64; HIST];
    for (o, x) in d.iter_mut().zip(v) {
        *o = (x - m).abs();
    }
    Some(median_small(&d[..v.len().min(HIST)]))
}

impl Ctx<'_, '_> {
    fn power(&self, h: usize) -> &PowerCurve {
        self.p.snap().hosts[h].power.as_ref().unwrap_or(&GENERIC)
    }

    /// Adds VM `v`'s history, weighted by its share of host `h`, to `out`.
    fn add_vm(&self, out: &mut Hist, h: usize, v: usize) {
        let s = self.p.snap();
        let w = s.vms[v].cpu_cap_mhz / s.hosts[h].cpu_mhz();
        let hv = &self.hist[v];
        for (i, x) in hv.iter().enumerate().take(HIST) {
            out.v[i] += x * w;
        }
        out.n = out.n.max(hv.len().min(HIST));
        out.mem_kb = out.mem_kb.max(s.vms[v].mem_kb);
    }

    /// Host utilisation history (newest first) from the VMs in `vms` plus `extra`.
    fn host_history(&self, h: usize, vms: &[usize], extra: Option<usize>) -> Hist {
        let mut out = Hist::default();
        for &v in vms.iter().chain(extra.iter()) {
            self.add_vm(&mut out, h, v);
        }
        out.trim();
        self.stats_of(&mut out);
        out
    }

    /// Fills the spread and fit of a base history.
    fn stats_of(&self, out: &mut Hist) {
        let hist = out.as_slice();
        let spread = match self.cfg.detector {
            Detector::Iqr => iqr_cloudsim(hist).unwrap_or(0.0),
            Detector::Mad => mad_small(hist).unwrap_or(0.0),
            _ => 0.0,
        };
        let fit = if self.cfg.detector == Detector::Lr && hist.len() >= self.w.lr_window {
            lr_fit(hist, self.w.lr_window).unwrap_or((0.0, 0.0))
        } else {
            (0.0, 0.0)
        };
        out.spread = spread;
        out.fit = fit;
    }

    /// Whether host `h` would be overloaded with VM `v` added (`after_mhz` requested). Exact,
    /// but avoids the full detector when a bound decides: adding a history B to the host's
    /// moves every order statistic by at most max(B) - min(B) beyond a common shift, so IQR
    /// and MAD move at most that much; the LR prediction is linear in the history.
    fn overloaded_with(&self, h: usize, v: usize, after_mhz: f64) -> bool {
        let cfg = self.cfg;
        let s = self.p.snap();
        let cap = self.hcap[h].0;
        let util = after_mhz / cap;
        if cfg.detector == Detector::Thr {
            return util > cfg.threshold;
        }
        let base = self.base_stats(h);
        let vs = &self.vstat[v];
        let w = s.vms[v].cpu_cap_mhz / cap;
        match cfg.detector {
            Detector::Iqr | Detector::Mad if base.n >= self.w.min_history && vs.n <= base.n => {
                let lo = if vs.n < base.n {
                    vs.min.min(0.0)
                } else {
                    vs.min
                };
                let range = w * (vs.max - lo);
                if util > 1.0 - cfg.safety * (base.spread - range) + 1e-9 {
                    return true;
                }
                if util <= 1.0 - cfg.safety * (base.spread + range) - 1e-9 {
                    return false;
                }
            }
            Detector::Lr if base.n >= self.w.lr_window => {
                let (a, b) = (base.fit.0 + w * vs.fit.0, base.fit.1 + w * vs.fit.1);
                let mem = base.mem_kb.max(s.vms[v].mem_kb);
                let ahead = self.ahead(mem);
                let pred = cfg.safety * (a + b * (self.w.lr_window as f64 + ahead));
                if (pred - 1.0).abs() > 1e-9 {
                    return pred >= 1.0;
                }
            }
            _ => {}
        }
        self.detect(h, &self.p.on_host[h], Some(v), after_mhz).0
    }

    /// Whether the headroom bound holds for a VM with `vn` history samples and `vmem` KB on
    /// host `h`: IQR/MAD need the VM's history no longer than the host's; LR the same
    /// look-ahead for the host alone as with the VM.
    fn bound_applies(&self, h: usize, vn: usize, vmem: u64) -> bool {
        match self.cfg.detector {
            Detector::Thr => true,
            Detector::Iqr | Detector::Mad => vn <= self.hist_n(h),
            Detector::Lr => {
                let b = self.base_stats(h);
                self.ahead(b.mem_kb.max(vmem)) == self.ahead(b.mem_kb)
                    && self.ahead(vmem) == self.ahead(b.mem_kb)
            }
            // The robust fit is not linear in the history: no bound.
            Detector::Lrr => false,
        }
    }

    /// Length of the cached history of host `h`.
    fn hist_n(&self, h: usize) -> usize {
        self.base_stats(h).n
    }

    /// The cached history of host `h`'s current VMs, without copying it: (length, spread, fit,
    /// largest VM memory).
    fn base_stats(&self, h: usize) -> BaseStats {
        let mut cache = self.hcache.borrow_mut();
        let b = cache[h].get_or_insert_with(|| self.host_history(h, &self.p.on_host[h], None));
        BaseStats {
            n: b.n,
            spread: b.spread,
            fit: b.fit,
            mem_kb: b.mem_kb,
        }
    }

    /// History of host `h` with its current VMs plus `extra`, from the cache.
    fn current_history(&self, h: usize, extra: Option<usize>) -> Hist {
        let mut cache = self.hcache.borrow_mut();
        let base = cache[h].get_or_insert_with(|| self.host_history(h, &self.p.on_host[h], None));
        let mut out = *base;
        if let Some(v) = extra {
            self.add_vm(&mut out, h, v);
            out.trim();
        }
        out
    }

    /// [`Ctx::moved`] for every move planned from the `first`-th on: one VM's, or its whole
    /// affinity group's when it left with its companions.
    fn moved_since(&self, first: usize) {
        let s = self.p.snap();
        for m in &self.p.moves()[first..] {
            if let (Some(v), Some(src), Some(dst)) = (
                s.vm_index(&m.vm),
                s.host_index(&m.from),
                s.host_index(&m.to),
            ) {
                self.moved(v, src, dst);
            }
        }
    }

    /// Updates the caches after VM `v` was planned from `src` to `dst`: the destination's
    /// history gains the VM's (no recomputation over its other VMs); the source, which no
    /// pass fills again, is recomputed only if asked, and gets no headroom bound meanwhile.
    fn moved(&self, v: usize, src: usize, dst: usize) {
        {
            let mut cache = self.hcache.borrow_mut();
            cache[src] = None;
            if let Some(mut b) = cache[dst] {
                self.add_vm(&mut b, dst, v);
                b.trim();
                self.stats_of(&mut b);
                cache[dst] = Some(b);
            }
        }
        let mut room = self.room.borrow_mut();
        room[src] = f64::INFINITY;
        room[dst] = self.room_of(dst);
        drop(room);
        self.refresh(&[src, dst]);
    }

    /// Forgets the cached histories of hosts touched by a move.
    fn invalidate(&self, hosts: &[usize]) {
        {
            let mut cache = self.hcache.borrow_mut();
            for &h in hosts {
                cache[h] = None;
            }
        }
        let mut room = self.room.borrow_mut();
        for &h in hosts {
            room[h] = self.room_of(h);
        }
        drop(room);
        self.refresh(hosts);
    }

    /// Recomputes the power bound and the touched-host order of `hosts`.
    fn refresh(&self, hosts: &[usize]) {
        let mut pf = self.pfloor.borrow_mut();
        for &h in hosts {
            pf[h].0 = self.power_base(h);
        }
        let mut t = self.touched.borrow_mut();
        let (flags, classes, keys) = &mut *t;
        for &h in hosts {
            let (pt, slope) = pf[h];
            let class = classes.entry(slope.to_bits()).or_default();
            if let Some(old) = keys[h] {
                class.remove(&(old, h));
            }
            let k = f64_key(pt - self.p0[h]);
            class.insert((k, h));
            keys[h] = Some(k);
            flags[h] = true;
        }
    }

    /// Watts at the load a placement on `h` is priced from (before adding the VM).
    fn power_base(&self, h: usize) -> f64 {
        let cap = self.hcap[h].0;
        let base = if self.cfg.cloudsim_stale_util {
            self.util0[h] * cap
        } else {
            self.p.cpu[h]
        };
        self.power(h).watts(base / cap)
    }

    /// Detector headroom of host `h` (MHz): a VM whose `key` exceeds it is certainly refused
    /// by the detector (see [`Ctx::overloaded_with`]'s bound); +inf where no bound applies.
    fn room_of(&self, h: usize) -> f64 {
        let cfg = self.cfg;
        let cpu = self.p.cpu[h];
        if cpu == 0.0 || cfg.cloudsim_stale_util {
            return f64::INFINITY;
        }
        let cap = self.hcap[h].0;
        match cfg.detector {
            Detector::Thr => cfg.threshold * cap - cpu,
            Detector::Iqr | Detector::Mad => {
                let b = self.base_stats(h);
                if b.n < self.w.min_history {
                    return f64::INFINITY;
                }
                (1.0 - cfg.safety * b.spread) * cap - cpu
            }
            Detector::Lr => {
                let b = self.base_stats(h);
                if b.n < self.w.lr_window {
                    return f64::INFINITY;
                }
                let x = self.w.lr_window as f64 + self.ahead(b.mem_kb);
                (1.0 / cfg.safety - b.fit.0 - b.fit.1 * x) * cap
            }
            Detector::Lrr => f64::INFINITY,
        }
    }

    /// LR's look-ahead in samples for the slowest migration of `mem_kb`.
    fn ahead(&self, mem_kb: u64) -> f64 {
        (self.p.cfg.migration_seconds(mem_kb) / self.w.step_s).ceil()
    }

    /// The VM side of the headroom test: demand minus what its history can lower the host's
    /// spread by; -inf where no bound applies.
    fn key_of(&self, v: usize) -> f64 {
        let cfg = self.cfg;
        let vm = &self.p.snap().vms[v];
        match cfg.detector {
            Detector::Thr => vm.cpu_demand_mhz,
            Detector::Iqr | Detector::Mad => {
                let vs = &self.vstat[v];
                let range = vs.max - vs.min.min(0.0);
                vm.cpu_demand_mhz - cfg.safety * vm.cpu_cap_mhz * range
            }
            Detector::Lr => {
                // Valid where the host's look-ahead is the VM's (checked by the caller).
                let vs = &self.vstat[v];
                let x = self.w.lr_window as f64 + self.ahead(vm.mem_kb);
                vm.cpu_cap_mhz * (vs.fit.0 + vs.fit.1 * x)
            }
            Detector::Lrr => f64::NEG_INFINITY,
        }
    }

    /// (overloaded, compared value, threshold) for host `h` holding `vms` plus `extra`, with
    /// requested CPU `cpu_mhz`.
    fn detect(
        &self,
        h: usize,
        vms: &[usize],
        extra: Option<usize>,
        cpu_mhz: f64,
    ) -> (bool, f64, f64) {
        let cached = std::ptr::eq(vms, self.p.on_host[h].as_slice());
        let history = || {
            if cached {
                self.current_history(h, extra)
            } else {
                self.host_history(h, vms, extra)
            }
        };
        let cfg = self.cfg;
        let util = cpu_mhz / self.p.snap().hosts[h].cpu_mhz();
        let thr = |t: f64| (util > t, util, t);
        match cfg.detector {
            Detector::Thr => thr(cfg.threshold),
            Detector::Iqr | Detector::Mad => {
                let hist = history();
                let hist = hist.as_slice();
                if hist.len() < self.w.min_history {
                    return thr(cfg.fallback_threshold);
                }
                let spread = if cfg.detector == Detector::Iqr {
                    iqr_cloudsim(hist)
                } else {
                    mad_small(hist)
                };
                thr(1.0 - cfg.safety * spread.unwrap_or(0.0))
            }
            Detector::Lr | Detector::Lrr => {
                let hh = history();
                let hist = hh.as_slice();
                if hist.len() < self.w.lr_window {
                    return thr(cfg.fallback_threshold);
                }
                let fit = if cfg.detector == Detector::Lr {
                    lr_fit(hist, self.w.lr_window)
                } else {
                    robust_fit(hist, self.w.lr_window)
                };
                let Some((a, b)) = fit else {
                    return thr(cfg.fallback_threshold);
                };
                // CloudSim takes the slowest migration among the host's VMs (with the new one).
                let max_mig = self.p.cfg.migration_seconds(hh.mem_kb);
                // The fit is over x = 0..n-1; predict the interval after the slowest migration.
                let ahead = (max_mig / self.w.step_s).ceil();
                let pred = cfg.safety * (a + b * (self.w.lr_window as f64 + ahead));
                (pred >= 1.0, pred, 1.0)
            }
        }
    }

    fn overloaded(&self, h: usize) -> (bool, f64, f64) {
        self.detect(h, &self.p.on_host[h], None, self.p.cpu[h])
    }

    /// PABFD: the host whose power grows least when `v` is added, among hosts not excluded,
    /// that fit it and would not be overloaded after (ties: lowest index).
    fn best_host(&self, v: usize, excluded: &[bool]) -> Option<usize> {
        let s = self.p.snap();
        let vm = &s.vms[v];
        let mut best: Option<(f64, usize)> = None;
        let per_vcpu = vm.cpu_demand_mhz / f64::from(vm.vcpus.max(1));
        let key = self.key_of(v);
        let vn = self.vstat[v].n;
        let vmem = vm.mem_kb;
        let room = self.room.borrow();
        let pfloor = self.pfloor.borrow();
        // Power differences within a nanowatt are rounding noise: the lower index wins them.
        let wins = |d: f64, h: usize, best: Option<(f64, usize)>| match best {
            None => true,
            Some((b, bh)) => d < b - 1e-9 || (d < b + 1e-9 && h < bh),
        };
        let consider = |h: usize, best: &mut Option<(f64, usize)>| {
            if excluded[h] {
                return;
            }
            // Certain refusals first, from one comparison (the bound needs the VM's history
            // to be no longer than the host's; a shorter host history never gets a bound).
            if key > room[h] + 1e-6 && self.bound_applies(h, vn, vmem) {
                return;
            }
            let (cap, mhz) = self.hcap[h];
            if self.cfg.pe_check && per_vcpu > mhz {
                return;
            }
            let after = self.p.cpu[h] + vm.cpu_demand_mhz;
            if after > cap {
                return;
            }
            // CloudSim prices power and skips the detector by the host's utilisation at the
            // start of the round, so a host idle then takes VMs up to full capacity.
            let (priced, checked) = if self.cfg.cloudsim_stale_util {
                let stale = self.util0[h] * cap;
                (stale + vm.cpu_demand_mhz, stale != 0.0)
            } else {
                (after, self.p.cpu[h] != 0.0)
            };
            if priced > cap {
                return;
            }
            // A lower bound first: the power at the host's present load plus the curve's
            // flattest slope; most hosts lose on it without evaluating the curve.
            let (pt, slope) = pfloor[h];
            if !wins(
                pt - self.p0[h] + slope * vm.cpu_demand_mhz - 1e-10,
                h,
                *best,
            ) {
                return;
            }
            let diff = self.power(h).watts(priced / cap) - self.p0[h];
            // The detector only runs for a host that would win.
            if !wins(diff, h, *best) {
                return;
            }
            if checked && self.overloaded_with(h, v, after) {
                return;
            }
            if self.p.fits(v, h).is_err() {
                return;
            }
            *best = Some((diff, h));
        };
        // Hosts untouched this round first, in index order: their lower bound is the curve's
        // flattest slope times the demand, the same for every host of a class, so once a host
        // is found that no untouched host can beat, the rest are skipped at once.
        let touched = self.touched.borrow();
        let floor = self.min_slope * vm.cpu_demand_mhz - 1e-10;
        let n = s.hosts.len();
        // Excluded and touched hosts stay so for the rest of the round (the callers' exclusion
        // sets only grow), so runs of them are skipped through a "next open host" forest.
        let mut skip = self.skip.borrow_mut();
        let mut h = find_open(&mut skip, 0);
        while h < n {
            if let Some((b, _)) = best {
                if floor >= b - 1e-9 {
                    break;
                }
            }
            if excluded[h] || touched.0[h] {
                skip[h] = h + 1;
            } else {
                consider(h, &mut best);
            }
            h = find_open(&mut skip, h + 1);
        }
        // Hosts that took or gave VMs, per curve class by increasing (watts now - watts at the
        // start): the bound grows along the list, so the walk stops at the first host that
        // cannot even tie.
        for (&slope_bits, list) in &touched.1 {
            let slope = f64::from_bits(slope_bits);
            for &(k, h) in list {
                let lb = key_f64(k) + slope * vm.cpu_demand_mhz - 1e-10;
                if best.is_some_and(|(b, _)| lb >= b + 1e-9) {
                    break;
                }
                consider(h, &mut best);
            }
        }
        best.map(|(_, h)| h)
    }
}

pub(crate) fn run(cfg: &ConsolidateParams, p: &mut Planner<'_>) {
    let mut ctx = Ctx::new(cfg, p);
    let (over, to_move) = overload_pass(&mut ctx);
    if !place(&mut ctx, &over, to_move) || !cfg.underload {
        return;
    }
    underload_pass(&mut ctx, &over);
}

/// The overload detector of `cfg` and its VM selection alone (a composed policy's detector
/// and selector): per host whether it is overloaded, and the VMs to move off it as (VM,
/// host, reason) in selection order.
pub(crate) fn overloaded_hosts(
    cfg: &ConsolidateParams,
    p: &mut Planner<'_>,
) -> (Vec<bool>, Vec<(usize, usize, Reason)>) {
    overload_pass(&mut Ctx::new(cfg, p))
}

/// PABFD alone (a composed policy's placement): places `to_move` (VM, source, reason) on the
/// hosts whose power grows least and that `cfg`'s detector keeps quiet, never on a host
/// flagged in `excluded`.
pub(crate) fn pabfd(
    cfg: &ConsolidateParams,
    p: &mut Planner<'_>,
    excluded: &[bool],
    to_move: Vec<(usize, usize, Reason)>,
) {
    place(&mut Ctx::new(cfg, p), excluded, to_move);
}

impl<'p, 'a> Ctx<'p, 'a> {
    /// The decision's caches over `p`'s placement as it stands.
    fn new(cfg: &'p ConsolidateParams, p: &'p mut Planner<'a>) -> Ctx<'p, 'a> {
        let s = p.snap();
        let trends = p.input.trends;
        let w = Windows::of(cfg, trends);
        let hist: Vec<Vec<f64>> = s
            .vms
            .iter()
            .map(|vm| {
                trends.vm_cpu(&vm.name).map_or_else(Vec::new, |ser| {
                    let mut v: Vec<f64> = ser.recent(30).collect();
                    v.reverse();
                    v
                })
            })
            .collect();
        let nh = s.hosts.len();
        let util0: Vec<f64> = (0..nh).map(|h| p.util(h)).collect();
        let vstat: Vec<VmStat> = hist
            .iter()
            .map(|hv| {
                let hv = &hv[..hv.len().min(HIST)];
                if hv.is_empty() {
                    return VmStat::default();
                }
                VmStat {
                    n: hv.len(),
                    max: hv.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    min: hv.iter().copied().fold(f64::INFINITY, f64::min),
                    fit: lr_fit(hv, w.lr_window).unwrap_or((0.0, 0.0)),
                }
            })
            .collect();
        let ctx = Ctx {
            cfg,
            w,
            p,
            hist,
            p0: (0..nh)
                .map(|h| {
                    s.hosts[h]
                        .power
                        .as_ref()
                        .unwrap_or(&GENERIC)
                        .watts(util0[h])
                })
                .collect(),
            vstat,
            hcap: s.hosts.iter().map(|h| (h.cpu_mhz(), h.mhz)).collect(),
            room: std::cell::RefCell::new(Vec::new()),
            pfloor: std::cell::RefCell::new(Vec::new()),
            touched: std::cell::RefCell::new((
                vec![false; nh],
                std::collections::BTreeMap::new(),
                vec![None; nh],
            )),
            min_slope: 0.0,
            skip: std::cell::RefCell::new((0..=nh).collect()),
            util0,
            hcache: std::cell::RefCell::new(vec![None; nh]),
        };

        *ctx.room.borrow_mut() = (0..nh).map(|h| ctx.room_of(h)).collect();
        let mut ctx = ctx;
        *ctx.pfloor.borrow_mut() = (0..nh)
            .map(|h| {
                let c = &ctx.power(h).0;
                let flattest = c
                    .windows(2)
                    .map(|w| w[1] - w[0])
                    .fold(f64::INFINITY, f64::min);
                // W per 10 % of capacity -> W per MHz; a falling curve gets no bound.
                (
                    ctx.power_base(h),
                    (flattest.max(0.0) * 10.0) / ctx.hcap[h].0,
                )
            })
            .collect();
        ctx.min_slope = ctx
            .pfloor
            .borrow()
            .iter()
            .map(|x| x.1)
            .fold(f64::INFINITY, f64::min);
        if !ctx.min_slope.is_finite() {
            ctx.min_slope = 0.0;
        }
        ctx
    }
}

/// Flags the overloaded hosts and picks the VMs to take off each.
fn overload_pass(ctx: &mut Ctx<'_, '_>) -> (Vec<bool>, Vec<(usize, usize, Reason)>) {
    let cfg = ctx.cfg;
    let s = ctx.p.snap();
    let trends = ctx.p.input.trends;
    let w = ctx.w;
    let nh = s.hosts.len();
    let mut over = vec![false; nh];
    let mut to_move: Vec<(usize, usize, Reason)> = Vec::new();
    for h in 0..nh {
        if !s.hosts[h].up || ctx.p.rules.maintenance[h] {
            continue;
        }
        let (hot, value, threshold) = ctx.overloaded(h);
        let op = if matches!(cfg.detector, Detector::Lr | Detector::Lrr) {
            ">="
        } else {
            ">"
        };
        ctx.p
            .record(Some(h), "overload detector", value, op, threshold, hot);
        if !hot {
            continue;
        }
        if w.overload_n > 1 {
            let t = threshold.min(1.0);
            let n = trends
                .host_cpu(&s.hosts[h].name)
                .map_or(0, |ser| ser.recent(w.overload_n).filter(|v| *v > t).count());
            let k = w.overload_k as f64;
            if !ctx.p.test(Some(h), "samples over it", n as f64, ">=", k) {
                continue;
            }
        }
        ctx.p.qualify(Some(h));
        over[h] = true;
        let reason = Reason::Overload {
            host: s.hosts[h].name.clone(),
            detector: format!("{:?}", cfg.detector).to_lowercase(),
            value: r6(value),
            threshold: r6(threshold),
        };
        let mut rest: Vec<usize> = ctx.p.on_host[h]
            .iter()
            .copied()
            .filter(|&v| !s.vms[v].migrating)
            .collect();
        let mut cpu = ctx.p.cpu[h];
        loop {
            // The lowest priority class first; the selection picks within it.
            let class = ctx.p.lowest_priority(&rest);
            let pick = match cfg.selection {
                Selection::Mmt => class.iter().enumerate().min_by(|a, b| {
                    s.vms[*a.1]
                        .mem_kb
                        .cmp(&s.vms[*b.1].mem_kb)
                        .then(a.0.cmp(&b.0))
                }),
                Selection::Mu => class.iter().enumerate().min_by(|a, b| {
                    s.vms[*a.1]
                        .cpu_demand_mhz
                        .total_cmp(&s.vms[*b.1].cpu_demand_mhz)
                        .then(a.0.cmp(&b.0))
                }),
                Selection::Vsr => class.iter().enumerate().min_by(|a, b| {
                    let vsr = |v: usize| super::hotspot::vsr(s, h, v);
                    vsr(*b.1).total_cmp(&vsr(*a.1)).then(a.0.cmp(&b.0))
                }),
                Selection::Mm => {
                    let excess = cpu - threshold.min(1.0) * s.hosts[h].cpu_mhz();
                    super::select::fewest_moves(ctx.p, &class, excess).map(|i| (i, &class[i]))
                }
                Selection::Mc => {
                    let scores = super::select::correlations(ctx.p, &class);
                    super::select::highest(&scores).map(|i| (i, &class[i]))
                }
            };
            let Some((_, &v)) = pick else { break };
            rest.retain(|&x| x != v);
            cpu -= s.vms[v].cpu_demand_mhz;
            to_move.push((v, h, reason.clone()));
            if !ctx.detect(h, &rest, None, cpu).0 {
                break;
            }
        }
    }
    (over, to_move)
}

/// Places the VMs of the overload pass; false when the round's budget ran out.
fn place(ctx: &mut Ctx<'_, '_>, over: &[bool], mut to_move: Vec<(usize, usize, Reason)>) -> bool {
    let cfg = ctx.cfg;
    let s = ctx.p.snap();
    // Stable, as CloudSim's sort: ties keep host order, then selection order.
    to_move.sort_by(|a, b| {
        s.vms[b.0]
            .cpu_demand_mhz
            .total_cmp(&s.vms[a.0].cpu_demand_mhz)
    });
    for (v, h, reason) in to_move {
        if !ctx.p.budget_left() {
            return false;
        }
        let Some(d) = ctx.best_host(v, over) else {
            ctx.p.refuse_vm(v, None, Refusal::NoDestination);
            continue;
        };
        {
            let gain = (ctx.p.util(h) - cfg.threshold).max(0.0) + 1.0;
            let first = ctx.p.moves().len();
            if ctx
                .p
                .try_move(v, d, reason, gain, 1.0, MoveKind::Consolidate)
                .is_ok()
            {
                ctx.moved_since(first);
            }
        }
    }
    true
}

/// Empties underloaded hosts whose VMs all fit elsewhere.
fn underload_pass(ctx: &mut Ctx<'_, '_>, over: &[bool]) {
    let cfg = ctx.cfg;
    let s = ctx.p.snap();
    let trends = ctx.p.input.trends;
    let w = ctx.w;
    let nh = s.hosts.len();
    // "Switched off" is judged by the utilisation at the start of the round (CloudSim's
    // getSwitchedOffHosts): an idle host woken by the overload pass above neither gets
    // evacuated nor receives an underloaded host's VMs in the same round.
    let off: Vec<bool> = (0..nh)
        .map(|h| {
            let idle = if cfg.cloudsim_quirks {
                ctx.util0[h] == 0.0
            } else {
                ctx.p.cpu[h] == 0.0
            };
            idle || !s.hosts[h].up
        })
        .collect();
    let mut excl_src: Vec<bool> = (0..nh)
        .map(|h| over[h] || off[h] || ctx.p.rules.maintenance[h])
        .collect();
    let mut excl_dst: Vec<bool> = (0..nh).map(|h| over[h] || off[h]).collect();
    let mut emptied = 0;
    loop {
        if cfg.max_underload_hosts > 0 && emptied >= cfg.max_underload_hosts {
            return;
        }
        let mut cand: Option<(f64, usize)> = None;
        for h in 0..nh {
            if excl_src[h] {
                continue;
            }
            let u = ctx.util0[h];
            if u > 0.0 && cand.is_none_or(|(b, _)| u < b) {
                cand = Some((u, h));
            }
        }
        let Some((u, h)) = cand else { return };
        excl_src[h] = true;
        excl_dst[h] = true;
        if cfg.underload_threshold < 1.0 {
            let mean = trends
                .host_cpu(&s.hosts[h].name)
                .and_then(|ser| ser.mean(w.underload_window))
                .unwrap_or(1.0);
            let t = cfg.underload_threshold;
            if !ctx
                .p
                .test(Some(h), "underload: mean cpu", mean.max(u), "<", t)
            {
                continue;
            }
        }
        // A host that cannot be emptied within this round's budget is not started: a partial
        // evacuation would be rolled back anyway.
        if ctx
            .p
            .budget_remaining()
            .is_some_and(|b| b < ctx.p.on_host[h].len())
        {
            ctx.p.refuse(Refusal::Budget);
            continue;
        }
        let mut vms: Vec<usize> = ctx.p.on_host[h].clone();
        // Hosts with a VM already moving are skipped; so are hosts that received VMs this
        // round, except in CloudSim's literal round, which evacuates them too.
        if vms.is_empty()
            || vms
                .iter()
                .any(|&v| s.vms[v].migrating || (!cfg.cloudsim_quirks && s.vms[v].host_idx != h))
        {
            continue;
        }
        ctx.p.qualify(Some(h));
        vms.sort_by(|&a, &b| s.vms[b].cpu_demand_mhz.total_cmp(&s.vms[a].cpu_demand_mhz));
        let start = ctx.p.moves().len();
        let mut ok = true;
        for v in vms {
            let reason = Reason::Underload {
                host: s.hosts[h].name.clone(),
                util: r6(u),
            };
            if ctx.p.vm_host[v] != h {
                // Gone already, with its affinity group.
                continue;
            }
            if s.vms[v].host_idx != h {
                ctx.p.allow_second_move(v);
            }
            let placed = ctx.best_host(v, &excl_dst).is_some_and(|d| {
                let first = ctx.p.moves().len();
                let ok = ctx
                    .p
                    .try_move(v, d, reason, 1.0, 1.0, MoveKind::Consolidate)
                    .is_ok();
                if ok {
                    ctx.moved_since(first);
                }
                ok
            });
            if !placed {
                ctx.p.refuse_vm(v, None, Refusal::NoDestination);
                ok = false;
                break;
            }
        }
        if ok {
            emptied += 1;
            let dests: Vec<usize> = ctx.p.moves()[start..]
                .iter()
                .filter_map(|m| s.host_index(&m.to))
                .collect();
            for d in dests {
                excl_src[d] = true;
            }
        } else {
            let touched: Vec<usize> = ctx.p.moves()[start..]
                .iter()
                .filter_map(|m| s.host_index(&m.to))
                .chain([h])
                .collect();
            ctx.p.rollback_to(start);
            ctx.invalidate(&touched);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_fit_ignores_an_outlier_least_squares_follows() {
        // Newest first: an exact line 0.1 + 0.05 x (x = 0 oldest) with the newest sample spiked.
        let n = 10;
        let mut hist: Vec<f64> = (0..n).map(|i| 0.1 + 0.05 * (n - 1 - i) as f64).collect();
        hist[0] = 2.0;
        let (_, b_ls) = lr_fit(&hist, n).unwrap();
        let (a, b) = robust_fit(&hist, n).unwrap();
        assert!((b - 0.05).abs() < 1e-6, "robust slope {b}");
        assert!((a - 0.1).abs() < 1e-6, "robust intercept {a}");
        assert!(
            b_ls > 0.1,
            "least squares slope {b_ls} should chase the spike"
        );
    }

    #[test]
    fn small_medians_by_hand() {
        assert_eq!(median_small(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_small(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        // median 3; deviations 2,1,0,1,6 -> median 1.
        assert_eq!(mad_small(&[1.0, 2.0, 3.0, 4.0, 9.0]), Some(1.0));
        assert_eq!(mad_small(&[]), None);
    }
}
