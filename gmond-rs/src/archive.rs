//! Optional archiving of the cluster view in gmetad's RRD layout, so ganglia-web can graph a
//! cluster without gmetad (`gmond-rs --rrd-rootdir DIR`).
//!
//! Layout as gmetad 3.7.2 writes it (reference §E.2): `DIR/<cluster>/<host>/<metric>.rrd` with
//! `DS:sum:<type>:120:U:U` (COUNTER for slope positive, DERIVE for derivative, else GAUGE),
//! the three default RRAs and step 15; `DIR/<cluster>/__SummaryInfo__/<metric>.rrd` with
//! `DS:sum` and `DS:num` over the hosts that are up (TN < 4 x TMAX). Only numeric metric types
//! get archives. Every round is timestamped with the document's LOCALTIME, as gmetad does.

use ganglia_wire::model::{Cluster, Host, Metric};
use rrd::{Layout, RrdFile, Update, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// gmetad's default step and its heartbeat (8 x step).
pub const STEP: u64 = 15;
const RRAS: [&str; 3] = [
    "RRA:AVERAGE:0.5:1:5856",
    "RRA:AVERAGE:0.5:4:20160",
    "RRA:AVERAGE:0.5:40:52704",
];
const NUMERIC: [&str; 8] = [
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "float", "double",
];

/// What one archiving round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundStats {
    pub updated: usize,
    pub created: usize,
    /// Updates refused (same timestamp as the last one, unparsable value, I/O error).
    pub skipped: usize,
}

/// Writes rounds of a cluster view into RRD files under one root.
#[derive(Debug)]
pub struct Archiver {
    root: PathBuf,
}

impl Archiver {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Archiver { root: root.into() }
    }

    /// Archives every numeric metric of every host, and the cluster summary, at `localtime`.
    pub fn archive(&self, cluster: &Cluster) -> RoundStats {
        let mut stats = RoundStats::default();
        let t = cluster.localtime as i64;
        let cdir = self.root.join(component(&cluster.name));
        let mut summary: BTreeMap<&str, (f64, u32, &Metric)> = BTreeMap::new();
        for host in &cluster.hosts {
            let hdir = cdir.join(component(&host.name));
            for m in numeric(host) {
                let Some(v) = m.as_f64() else {
                    stats.skipped += 1;
                    continue;
                };
                let path = hdir.join(format!("{}.rrd", component(&m.name)));
                self.write(&path, ds_type(&m.slope), &[("sum", v)], t, &mut stats);
                if host.is_up() {
                    let e = summary.entry(m.name.as_str()).or_insert((0.0, 0, m));
                    e.0 += v;
                    e.1 += 1;
                }
            }
        }
        let sdir = cdir.join("__SummaryInfo__");
        for (name, (sum, num, m)) in summary {
            let path = sdir.join(format!("{}.rrd", component(name)));
            let vals = [("sum", sum), ("num", f64::from(num))];
            self.write(&path, ds_type(&m.slope), &vals, t, &mut stats);
        }
        stats
    }

    fn write(&self, path: &Path, kind: &str, vals: &[(&str, f64)], t: i64, stats: &mut RoundStats) {
        let file = if path.exists() {
            RrdFile::open(path)
        } else {
            if let Some(Err(e)) = path.parent().map(std::fs::create_dir_all) {
                stats.skipped += 1;
                tracing::warn!(path = %path.display(), error = %e, "cannot create rrd directory");
                return;
            }
            let mut specs: Vec<String> = vals
                .iter()
                .map(|(ds, _)| format!("DS:{ds}:{kind}:{}:U:U", 8 * STEP))
                .collect();
            specs.extend(RRAS.iter().map(|s| s.to_string()));
            let created = Layout::from_specs(STEP, t - 1, &specs)
                .and_then(|layout| RrdFile::create_new(path, &layout));
            if created.is_ok() {
                stats.created += 1;
            }
            created
        };
        let values: Vec<Value> = vals.iter().map(|(_, v)| Value::Float(*v)).collect();
        match file.and_then(|mut f| f.update(&Update::new(t, &values))) {
            Ok(()) => stats.updated += 1,
            Err(e) => {
                stats.skipped += 1;
                tracing::debug!(path = %path.display(), error = %e, "rrd update skipped");
            }
        }
    }
}

fn numeric(host: &Host) -> impl Iterator<Item = &Metric> {
    host.metrics
        .iter()
        .filter(|m| NUMERIC.contains(&m.ty.as_str()))
}

/// gmetad's DS type for a slope.
fn ds_type(slope: &str) -> &'static str {
    match slope {
        "positive" => "COUNTER",
        "derivative" => "DERIVE",
        _ => "GAUGE",
    }
}

/// A name from the network as one safe path component: no separators, no "." or "..", no
/// NUL, so a hostile host or metric name cannot write outside the root.
fn component(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_inside_the_root() {
        for (name, want) in [
            ("../../etc/passwd", "_.._.._etc_passwd"),
            ("..", "_.."),
            (".hidden", "_.hidden"),
            ("", "_"),
            ("load_one", "load_one"),
            ("a\0b", "a_b"),
        ] {
            assert_eq!(component(name), want);
            assert!(!component(name).contains('/'));
        }
    }

    #[test]
    fn slopes_map_to_gmetads_ds_types() {
        assert_eq!(ds_type("positive"), "COUNTER");
        assert_eq!(ds_type("derivative"), "DERIVE");
        assert_eq!(ds_type("both"), "GAUGE");
        assert_eq!(ds_type("zero"), "GAUGE");
    }
}
