//! The two VM selectors that need more than a sort key: Beloglazov's fewest migrations (MM)
//! and maximum correlation (MC). Shared by consolidate's overload pass and hotspot's relief
//! (and so by every composition that uses either).

use crate::planner::Planner;

/// Newest samples of each VM's CPU history that MC correlates (CloudSim keeps 30).
pub(crate) const MC_HISTORY: usize = 30;

/// MM: of `cands` (VM indices), the VM whose demand is the smallest that still covers
/// `excess_mhz`; when none covers it, the largest (one move closer to covering it). Returns
/// its position in `cands`; ties to the earlier position.
pub(crate) fn fewest_moves(p: &Planner<'_>, cands: &[usize], excess_mhz: f64) -> Option<usize> {
    let s = p.snap();
    let demand = |i: usize| s.vms[cands[i]].cpu_demand_mhz;
    let covering = (0..cands.len())
        .filter(|&i| demand(i) >= excess_mhz)
        .min_by(|&a, &b| demand(a).total_cmp(&demand(b)).then(a.cmp(&b)));
    covering.or_else(|| {
        (0..cands.len()).min_by(|&a, &b| demand(b).total_cmp(&demand(a)).then(a.cmp(&b)))
    })
}

/// MC: per VM of `cands`, the correlation of its CPU history (MHz) with the summed history of
/// the other candidates over their common newest samples (at most [`MC_HISTORY`]). The VM
/// that moves with the rest of the host's load adds most to its peaks, so it goes first.
/// Beloglazov's MC takes the multiple correlation of one VM on each of the others; with
/// 20 VMs on a host and 30 samples that regression is nearly underdetermined, so we
/// correlate with their sum. Fewer than 3 common samples, or a flat series: 0.
pub(crate) fn correlations(p: &Planner<'_>, cands: &[usize]) -> Vec<f64> {
    let s = p.snap();
    let trends = p.input.trends;
    let series: Vec<Vec<f64>> = cands
        .iter()
        .map(|&v| {
            let vm = &s.vms[v];
            trends.vm_cpu(&vm.name).map_or_else(Vec::new, |ser| {
                ser.recent(MC_HISTORY).map(|f| f * vm.cpu_cap_mhz).collect()
            })
        })
        .collect();
    let n = series.iter().map(Vec::len).min().unwrap_or(0);
    if n < 3 || cands.len() < 2 {
        return vec![0.0; cands.len()];
    }
    // The newest n of each, and their total per sample.
    let tail = |x: &Vec<f64>| x[x.len() - n..].to_vec();
    let aligned: Vec<Vec<f64>> = series.iter().map(tail).collect();
    let total: Vec<f64> = (0..n).map(|k| aligned.iter().map(|x| x[k]).sum()).collect();
    aligned
        .iter()
        .map(|x| {
            let rest: Vec<f64> = (0..n).map(|k| total[k] - x[k]).collect();
            pearson(x, &rest)
        })
        .collect()
}

/// Pearson's correlation of two equally long series; 0 when either is flat or not finite.
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    let r = sab / (saa * sbb).sqrt();
    if r.is_finite() {
        r
    } else {
        0.0
    }
}

/// The position in `scores` of the highest score; ties to the earlier position.
pub(crate) fn highest(scores: &[f64]) -> Option<usize> {
    (0..scores.len()).min_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_of_a_series_with_itself_its_mirror_and_a_flat_one() {
        let a = [1.0, 2.0, 4.0, 3.0];
        assert!((pearson(&a, &a) - 1.0).abs() < 1e-12);
        let m: Vec<f64> = a.iter().map(|x| -x).collect();
        assert!((pearson(&a, &m) + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&a, &[2.0; 4]), 0.0);
        assert_eq!(highest(&[0.1, 0.5, 0.5]), Some(1));
        assert_eq!(highest(&[]), None);
    }
}
