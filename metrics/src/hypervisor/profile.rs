//! CPU demand profiles for simulated domains: traces and scripted shapes, as pure functions of
//! simulated time.

use std::path::Path;
use std::sync::Arc;

use crate::Error;

/// Milliseconds of simulated time.
pub type SimMs = u64;

/// CPU demand of a domain over time, as a fraction (0..=1) of the domain's CPU capacity.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Profile {
    /// Always this level (idle = 0.02, busy = 0.9, say).
    Constant(f64),
    /// A sampled trace: value `i` holds during `[i*period, (i+1)*period)`; the last value holds
    /// after the end.
    Trace {
        /// Samples as fractions 0..=1.
        samples: Arc<[f32]>,
        /// Sample period, ms.
        period_ms: SimMs,
    },
    /// `base`, except `peak` during `[start_ms, start_ms + duration_ms)`.
    Spike {
        /// Level outside the spike.
        base: f64,
        /// Level during the spike.
        peak: f64,
        /// Spike start, ms.
        start_ms: SimMs,
        /// Spike length, ms.
        duration_ms: SimMs,
    },
    /// `mean ± amplitude` white noise, a new value every `period_ms`, derived from `seed` and
    /// the period index only (so it is reproducible and independent of call order).
    Noise {
        /// Mean level.
        mean: f64,
        /// Half-width of the uniform noise.
        amplitude: f64,
        /// Period of a new sample, ms.
        period_ms: SimMs,
        /// Seed of this domain's noise stream.
        seed: u64,
    },
}

impl Profile {
    /// Demand at time `t`, clamped to 0..=1.
    pub fn demand_at(&self, t: SimMs) -> f64 {
        let v = match self {
            Profile::Constant(v) => *v,
            Profile::Trace { samples, period_ms } => {
                if samples.is_empty() {
                    0.0
                } else {
                    let i = usize::try_from(t / (*period_ms).max(1)).unwrap_or(usize::MAX);
                    f64::from(samples[i.min(samples.len() - 1)])
                }
            }
            Profile::Spike {
                base,
                peak,
                start_ms,
                duration_ms,
            } => {
                if t >= *start_ms && t < start_ms.saturating_add(*duration_ms) {
                    *peak
                } else {
                    *base
                }
            }
            Profile::Noise {
                mean,
                amplitude,
                period_ms,
                seed,
            } => {
                let k = t / (*period_ms).max(1);
                let u = unit(splitmix64(seed ^ splitmix64(k)));
                mean + amplitude * (2.0 * u - 1.0)
            }
        };
        v.clamp(0.0, 1.0)
    }
}

/// One step of the SplitMix64 generator: a well-mixed 64-bit hash, enough for reproducible noise.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps 64 random bits to [0, 1).
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads a PlanetLab/CoMon trace file: one integer CPU percentage per line.
pub fn read_planetlab(path: &Path) -> Result<Vec<f32>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Trace {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    parse_planetlab(&text).map_err(|e| Error::Trace {
        path: path.display().to_string(),
        why: e.detail(),
    })
}

/// Parses PlanetLab trace text; blank lines are ignored, values must be 0..=100.
pub fn parse_planetlab(text: &str) -> Result<Vec<f32>, Error> {
    let bad = |detail: String| Error::Malformed {
        what: "PlanetLab trace",
        detail,
    };
    let mut out = Vec::with_capacity(288);
    for (i, line) in text.lines().enumerate() {
        let s = line.trim();
        if s.is_empty() {
            continue;
        }
        let v: f32 = s
            .parse()
            .map_err(|_| bad(format!("line {}: not a number: {s:?}", i + 1)))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(bad(format!("line {}: {v} outside 0..=100", i + 1)));
        }
        out.push(v / 100.0);
    }
    if out.is_empty() {
        return Err(bad("no samples".to_string()));
    }
    Ok(out)
}

/// Every file of a PlanetLab day directory, sorted by file name (CloudSim's directory order is
/// the file system's; sorting makes ours reproducible), as (name, samples).
pub fn read_planetlab_dir(dir: &Path) -> Result<Vec<(String, Vec<f32>)>, Error> {
    let err = |e: std::io::Error| Error::Trace {
        path: dir.display().to_string(),
        why: e.to_string(),
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        if entry.file_type().map_err(err)?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|n| read_planetlab(&dir.join(&n)).map(|s| (n, s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_steps_and_holds_last() {
        let p = Profile::Trace {
            samples: vec![0.1f32, 0.5].into(),
            period_ms: 1000,
        };
        assert!((p.demand_at(999) - 0.1).abs() < 1e-6);
        assert!((p.demand_at(1000) - 0.5).abs() < 1e-6);
        assert!((p.demand_at(50_000) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn spike_window_is_half_open() {
        let p = Profile::Spike {
            base: 0.2,
            peak: 1.0,
            start_ms: 10,
            duration_ms: 5,
        };
        assert_eq!(p.demand_at(9), 0.2);
        assert_eq!(p.demand_at(10), 1.0);
        assert_eq!(p.demand_at(14), 1.0);
        assert_eq!(p.demand_at(15), 0.2);
    }

    #[test]
    fn noise_is_reproducible_and_bounded() {
        let p = Profile::Noise {
            mean: 0.55,
            amplitude: 0.1,
            period_ms: 100,
            seed: 7,
        };
        let a: Vec<f64> = (0..50).map(|k| p.demand_at(k * 100)).collect();
        let b: Vec<f64> = (0..50).map(|k| p.demand_at(k * 100 + 50)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (0.45..=0.65).contains(v)));
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn planetlab_parse_rejects_garbage() {
        assert_eq!(parse_planetlab("10\n20\n").unwrap(), vec![0.1, 0.2]);
        assert!(parse_planetlab("10\nx\n")
            .unwrap_err()
            .to_string()
            .contains("line 2"));
        assert!(parse_planetlab("101\n").is_err());
        assert!(parse_planetlab("").is_err());
    }

    #[test]
    fn shipped_day_has_1052_vms_of_288_samples() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/planetlab/20110303");
        let all = read_planetlab_dir(&dir).unwrap();
        assert_eq!(all.len(), 1052);
        assert!(all.iter().all(|(_, s)| s.len() == 288));
        let mean: f64 = all
            .iter()
            .flat_map(|(_, s)| s.iter().map(|&v| f64::from(v)))
            .sum::<f64>()
            / (1052.0 * 288.0);
        // README: pooled mean 12.31 %.
        assert!((mean - 0.1231).abs() < 0.0005, "{mean}");
    }
}
