//! What the live view shows, read back from the cluster's own XML feed (the same document gstat
//! and gmetad get) through the balancer's one reader of the virtual-node convention
//! ([`balancer::view`]): per host CPU and memory load from the VMs it owns, VM counts, and the
//! balancer's own metrics.

use balancer::view::{HostView, ReadOptions, VnodeView};
use balancer::BalancerError;
use ganglia_wire::model::Host;

/// One host row.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    /// Host name.
    pub name: String,
    /// Address the host reports from.
    pub ip: String,
    /// Heard from recently (TN < 4 TMAX).
    pub up: bool,
    /// CPU demand of its VMs over its capacity (can exceed 1: overcommitted).
    pub cpu: f64,
    /// Memory of its VMs over its memory.
    pub mem: f64,
    /// VMs currently reported (stale entries excluded).
    pub vms: Vec<String>,
    /// Its balancer, when it advertises one.
    pub balancer: Option<BalancerRow>,
}

/// A host's balancer metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BalancerRow {
    /// `balancer_mode`.
    pub mode: String,
    /// `balancer_leader` is 1.
    pub leader: bool,
    /// `balancer_migrations_done`.
    pub done: u64,
    /// `balancer_migrations_failed`.
    pub failed: u64,
    /// `balancer_inflight`.
    pub inflight: u64,
    /// `balancer_imbalance`.
    pub imbalance: Option<f64>,
    /// `balancer_leader_name`: whom this host believes leads.
    pub leader_name: String,
}

/// The cluster as its feed shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterView {
    /// Cluster name.
    pub cluster: String,
    /// LOCALTIME of the document.
    pub localtime: u64,
    /// Hosts by name.
    pub hosts: Vec<HostRow>,
}

impl ClusterView {
    /// Parses a feed. A migrated VM keeps its old host's entries until their dmax but is no
    /// longer updated there: VM metrics older than `stale_s` (TN) are left out, a VM listed by
    /// several hosts counts on the one that updated it last, and the last round a host sends
    /// for a VM that left it (dmax [`crate::source::LEAVING_DMAX`]) counts nowhere.
    pub fn from_xml(xml: &[u8], stale_s: u64) -> Result<ClusterView, BalancerError> {
        let cluster = balancer::view::parse_xml(xml)?;
        let vnodes = VnodeView::read(
            &cluster,
            &ReadOptions {
                vm_stale_s: stale_s,
            },
        );
        let mut hosts: Vec<HostRow> = vnodes
            .hosts
            .iter()
            .enumerate()
            .map(|(i, hv)| host_row(&cluster.hosts[hv.index], hv, i, &vnodes))
            .collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ClusterView {
            cluster: cluster.name,
            localtime: cluster.localtime,
            hosts,
        })
    }

    /// The leader: the host whose balancer says it leads (the lowest name if several do, which
    /// only happens for a moment during failover).
    pub fn leader(&self) -> Option<&str> {
        self.hosts
            .iter()
            .find(|h| h.balancer.as_ref().is_some_and(|b| b.leader))
            .map(|h| h.name.as_str())
    }

    /// Total VMs reported.
    pub fn vm_count(&self) -> usize {
        self.hosts.iter().map(|h| h.vms.len()).sum()
    }
}

/// The row of host `hv` (index `i` in `vnodes.hosts`), whose HOST element is `h`.
fn host_row(h: &Host, hv: &HostView, i: usize, vnodes: &VnodeView) -> HostRow {
    let (cpu_mhz, mhz, mem_total) = hv
        .capacity
        .map_or((0.0, 0.0, 0.0), |c| (c.cpu_mhz(), c.mhz, c.mem_kb as f64));
    let mut demand = 0.0;
    let mut mem = 0.0;
    let mut vms = Vec::new();
    for vm in vnodes.vms_on(i) {
        demand += vm.util_pct.unwrap_or(0.0) / 100.0 * vm.vcpus.unwrap_or(0.0) * mhz;
        mem += vm.mem_kb.unwrap_or(0.0);
        vms.push(vm.name.clone());
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let balancer = h.metric("balancer_mode").map(|mode| {
        let int = |n: &str| h.metric_f64(n).map_or(0, |v| v.max(0.0) as u64);
        BalancerRow {
            mode: mode.val.clone(),
            leader: int("balancer_leader") == 1,
            done: int("balancer_migrations_done"),
            failed: int("balancer_migrations_failed"),
            inflight: int("balancer_inflight"),
            imbalance: h.metric_f64("balancer_imbalance"),
            leader_name: h
                .metric("balancer_leader_name")
                .map(|m| m.val.clone())
                .unwrap_or_default(),
        }
    });
    HostRow {
        name: hv.name.clone(),
        ip: hv.ip.clone(),
        up: hv.up,
        cpu: ratio(demand, cpu_mhz),
        mem: ratio(mem, mem_total),
        vms,
        balancer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, val: &str, tn: u64) -> String {
        format!(
            r#"<METRIC NAME="{name}" VAL="{val}" TYPE="float" UNITS="" TN="{tn}" TMAX="60" DMAX="0" SLOPE="both" SOURCE="gmond"></METRIC>"#
        )
    }

    fn doc(hosts: &[(&str, Vec<String>)]) -> String {
        let mut s = String::from(
            r#"<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?>
<GANGLIA_XML VERSION="3.7.2" SOURCE="gmond">
<CLUSTER NAME="demo" LOCALTIME="1000" OWNER="o" LATLONG="l" URL="u">
"#,
        );
        for (name, metrics) in hosts {
            s.push_str(&format!(
                r#"<HOST NAME="{name}" IP="127.0.0.11" TAGS="" REPORTED="990" TN="1" TMAX="20" DMAX="0" LOCATION="x" GMOND_STARTED="1">"#
            ));
            for m in metrics {
                s.push_str(m);
            }
            s.push_str("</HOST>\n");
        }
        s.push_str("</CLUSTER>\n</GANGLIA_XML>\n");
        s
    }

    fn capacity() -> Vec<String> {
        vec![
            metric("vnode_cpu_num", "4", 1),
            metric("vnode_cpu_speed", "2000", 1),
            metric("vnode_mem_total", "16000", 1),
        ]
    }

    #[test]
    fn loads_from_vm_metrics_and_stale_vms_left_out() {
        let mut a = capacity();
        a.extend([
            metric("vm01.vcpu_util", "50", 2),
            metric("vm01.vcpu_num", "2", 2),
            metric("vm01.vmem_total", "4000", 2),
            metric("vm03.vcpu_util", "0", 0),
            metric("vm03.vcpu_num", "2", 0),
            // Migrated away 100 s ago: still listed until dmax, but stale.
            metric("vm02.vcpu_util", "90", 100),
            metric("vm02.vcpu_num", "2", 100),
            metric("balancer_mode", "auto", 1),
            metric("balancer_leader", "1", 1),
            metric("balancer_migrations_done", "3", 1),
            metric("balancer_leader_name", "hv01", 1),
        ]);
        let mut b = capacity();
        b.extend([
            metric("vm02.vcpu_util", "90", 1),
            metric("vm02.vcpu_num", "2", 1),
            // Left 3 s ago for hv01 (fresher there): not counted here though within stale_s.
            metric("vm03.vcpu_util", "80", 3),
            metric("vm03.vcpu_num", "2", 3),
            metric("balancer_mode", "auto", 1),
            metric("balancer_leader", "0", 1),
        ]);
        let xml = doc(&[("hv02", b), ("hv01", a)]);
        let v = ClusterView::from_xml(xml.as_bytes(), 30).unwrap();
        assert_eq!(v.cluster, "demo");
        assert_eq!(v.hosts[0].name, "hv01");
        // 50 % of 2 vCPUs x 2000 MHz over 4 x 2000 MHz.
        assert!((v.hosts[0].cpu - 0.25).abs() < 1e-9);
        assert!((v.hosts[0].mem - 0.25).abs() < 1e-9);
        assert_eq!(v.hosts[0].vms, ["vm01", "vm03"]);
        assert_eq!(v.hosts[1].vms, ["vm02"]);
        assert!((v.hosts[1].cpu - 0.45).abs() < 1e-9);
        assert_eq!(v.leader(), Some("hv01"));
        assert_eq!(v.vm_count(), 3);
        let bal = v.hosts[0].balancer.as_ref().unwrap();
        assert_eq!((bal.done, bal.leader_name.as_str()), (3, "hv01"));
    }

    #[test]
    fn a_leaving_vm_counts_nowhere_but_its_new_host() {
        let leaving =
            |name: &str, val: &str| metric(name, val, 0).replace(r#"DMAX="0""#, r#"DMAX="2""#);
        let mut old = capacity();
        old.extend([
            leaving("vm05.vcpu_util", "75"),
            leaving("vm05.vcpu_num", "2"),
        ]);
        let mut new = capacity();
        new.extend([
            metric("vm05.vcpu_util", "75", 1),
            metric("vm05.vcpu_num", "2", 1),
        ]);
        let xml = doc(&[("hv01", new), ("hv02", old)]);
        let v = ClusterView::from_xml(xml.as_bytes(), 30).unwrap();
        assert_eq!(v.hosts[0].vms, ["vm05"]);
        assert!(v.hosts[1].vms.is_empty() && v.hosts[1].cpu == 0.0);
    }

    #[test]
    fn the_leaving_dmax_is_a_farewell_to_the_reader() {
        // The reader takes DMAX below TMAX for a last round; the source publishes VM metrics
        // with vmetrics' TMAX.
        const { assert!(crate::source::LEAVING_DMAX < gmond_metrics::vmetrics::VM_TMAX) };
    }

    #[test]
    fn host_without_capacity_or_balancer() {
        let xml = doc(&[("lone", vec![metric("load_one", "0.1", 1)])]);
        let v = ClusterView::from_xml(xml.as_bytes(), 30).unwrap();
        assert_eq!(v.hosts[0].cpu, 0.0);
        assert!(v.hosts[0].balancer.is_none());
        assert_eq!(v.leader(), None);
        assert!(ClusterView::from_xml(b"<GANGLIA_XML", 30).is_err());
    }
}
