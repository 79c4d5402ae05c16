//! The libvirt hypervisor against libvirt's in-process test driver (`test:///ABS/node.xml`, no
//! daemon): discovery, vCPU and memory values, state changes through the same connection,
//! domains vanishing mid-listing, bad URIs, and the published metrics. CPU % is not checked
//! here: the test driver's CPU time is wall-clock (see the pure tests in vmetrics.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use gmond_metrics::hypervisor::libvirt::{
    BackoffPolicy, LibvirtConnector, LibvirtHypervisor, LibvirtSession, Reconnecting,
};
use gmond_metrics::hypervisor::{DomainInfo, DomainState, Hypervisor};
use gmond_metrics::linux::MetricValue;
use gmond_metrics::vmetrics::{self, UtilTracker};
use gmond_metrics::Error;
use virt::domain::Domain;

fn node_uri() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/libvirt/node.xml");
    assert!(std::path::Path::new(path).exists(), "missing {path}");
    format!("test://{path}")
}

/// A fresh connection; the test driver keeps state per connection, so tests do not interfere.
fn session() -> LibvirtSession {
    LibvirtSession::open(&node_uri()).expect("libvirt test driver (package libvirt0)")
}

fn find<'a>(ds: &'a [DomainInfo], name: &str) -> &'a DomainInfo {
    ds.iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no {name} in {ds:?}"))
}

fn lookup(s: &LibvirtSession, name: &str) -> Domain {
    s.connection().unwrap().lookup_domain_by_name(name).unwrap()
}

#[test]
fn discovers_domains_with_vcpus_memory_and_state() {
    let s = session();
    let ds = s.domains().unwrap();
    let names: Vec<&str> = ds.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "batch: job \"7\"",
            "cache",
            "db.example.com",
            "spare",
            "web1"
        ]
    );

    let web = find(&ds, "web1");
    assert_eq!(web.uuid, "11111111-1111-4111-8111-111111111111");
    assert_eq!(web.state, DomainState::Running);
    assert_eq!((web.vcpus_current, web.vcpus_max), (2, 4));
    assert_eq!((web.mem_max_kib, web.mem_current_kib), (1_048_576, 786_432));
    // virtio balloon in the test driver: actual = current, unused = current / 2.
    assert_eq!(web.mem_used_kib, 393_216);
    assert!(web.cpu_time_ns > 0);

    let db = find(&ds, "db.example.com");
    assert_eq!((db.vcpus_current, db.vcpus_max), (1, 1));
    // No balloon device: used = current.
    assert_eq!(db.mem_used_kib, 524_288);

    let batch = find(&ds, "batch: job \"7\"");
    assert_eq!(batch.state, DomainState::Paused);
    assert_eq!((batch.vcpus_current, batch.vcpus_max), (8, 8));
    assert_eq!(batch.mem_current_kib, 4_194_304);

    let spare = find(&ds, "spare");
    assert_eq!(spare.state, DomainState::Shutoff);
    assert_eq!((spare.vcpus_current, spare.vcpus_max), (2, 2));
    assert_eq!(spare.mem_max_kib, 2_097_152);

    let cache = find(&ds, "cache");
    assert_eq!(
        (cache.vcpus_current, cache.state),
        (3, DomainState::Running)
    );
}

#[test]
fn host_capacity_and_name() {
    let s = session();
    let c = s.capacity().unwrap();
    assert_eq!((c.cpus, c.mhz, c.mem_kib), (8, 2400, 16_777_216));
    // The test driver has no free-memory figure: host memory minus active domains' memory
    // (web1 768 MiB + db 512 MiB + batch 4 GiB + cache 256 MiB; spare is shut off).
    assert_eq!(
        c.mem_free_kib,
        16_777_216 - 786_432 - 524_288 - 4_194_304 - 262_144
    );
    assert!(!s.hostname().unwrap().is_empty());
}

#[test]
fn state_and_size_changes_through_the_same_connection() {
    let s = session();
    lookup(&s, "web1").suspend().unwrap();
    lookup(&s, "cache").destroy().unwrap();
    lookup(&s, "spare").create().unwrap();
    lookup(&s, "db.example.com").set_memory(262_144).unwrap();
    let ds = s.domains().unwrap();
    assert_eq!(
        (s.domains_vanished_total(), s.domains_failed_total()),
        (0, 0)
    );
    assert_eq!(find(&ds, "web1").state, DomainState::Paused);
    assert_eq!(find(&ds, "cache").state, DomainState::Shutoff);
    assert_eq!(find(&ds, "spare").state, DomainState::Running);
    let db = find(&ds, "db.example.com");
    assert_eq!((db.mem_current_kib, db.mem_max_kib), (262_144, 524_288));

    lookup(&s, "web1").resume().unwrap();
    let ds = s.domains().unwrap();
    assert_eq!(find(&ds, "web1").state, DomainState::Running);
    // Freed memory follows: cache is off, spare (2 GiB) is on, db shrank to 256 MiB.
    let c = s.capacity().unwrap();
    assert_eq!(
        c.mem_free_kib,
        16_777_216 - 786_432 - 262_144 - 4_194_304 - 2_097_152
    );
}

#[test]
fn domain_vanishing_between_list_and_stats_is_skipped() {
    let mut s = session();
    s.set_after_list_hook(|conn| {
        if let Ok(d) = conn.lookup_domain_by_name("cache") {
            d.destroy().unwrap();
            d.undefine().unwrap();
        }
    });
    let ds = s.domains().unwrap();
    let names: Vec<&str> = ds.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["batch: job \"7\"", "db.example.com", "spare", "web1"]
    );
    assert_eq!(
        (s.domains_vanished_total(), s.domains_failed_total()),
        (1, 0)
    );
    // And the next round simply no longer lists it.
    assert_eq!(s.domains().unwrap().len(), 4);
}

#[test]
fn wrong_uris_are_typed_errors() {
    let missing = "test:///nonexistent/gmond-metrics/node.xml";
    for uri in ["bogus:///nowhere", missing] {
        match LibvirtSession::open_read_only(uri) {
            Err(Error::Connect { uri: u, message }) => {
                assert_eq!(u, uri);
                assert!(!message.is_empty());
            }
            other => panic!("{uri}: {other:?}"),
        }
    }
    // Through the reconnecting wrapper: the attempt fails, then backoff answers HostDown.
    let hv = LibvirtHypervisor::open_lazy(missing, BackoffPolicy::default());
    let t0 = Instant::now();
    assert!(matches!(hv.domains_at(t0), Err(Error::Connect { .. })));
    assert!(matches!(
        hv.domains_at(t0),
        Err(Error::HostDown(uri)) if uri == missing
    ));
    assert_eq!(hv.outages_total(), 1);
}

#[test]
fn reconnecting_wrapper_serves_the_test_driver() {
    let hv = Reconnecting::new(
        LibvirtConnector::read_only(&node_uri()),
        BackoffPolicy::default(),
    );
    let now = hv.at(Instant::now());
    let dyn_hv: &dyn Hypervisor = &now;
    assert_eq!(dyn_hv.domains().unwrap().len(), 5);
    assert_eq!(dyn_hv.capacity().unwrap().cpus, 8);
    assert!(hv.is_connected());
    assert_eq!(hv.outages_total(), 0);
}

#[test]
fn published_metrics_from_the_test_driver() {
    let s = session();
    let host = s.capacity().unwrap();
    let mut tracker = UtilTracker::new();
    let samples = tracker.update(1_000_000_000, s.domains().unwrap());
    let ms = vmetrics::publish(&host, &samples);
    let get = |n: &str| {
        ms.iter()
            .find(|m| m.name == n)
            .unwrap_or_else(|| panic!("no {n}"))
    };

    assert_eq!(get("vnode_cpu_num").value, MetricValue::U16(8));
    assert_eq!(get("vnode_cpu_speed").value, MetricValue::U32(2400));
    assert_eq!(get("vnode_mem_total").value, MetricValue::F64(16_777_216.0));
    assert_eq!(get("vnode_domains").value, MetricValue::U32(4));

    assert_eq!(get("web1.vcpu_num").value, MetricValue::U16(2));
    assert_eq!(get("web1.vmem_total").value, MetricValue::F64(786_432.0));
    assert_eq!(get("web1.vmem_util").value, MetricValue::F32(50.0));
    assert_eq!(
        get("db.example.com.vmem_util").value,
        MetricValue::F32(100.0)
    );
    // First sample of a running domain: no CPU % yet.
    assert!(ms.iter().all(|m| m.name != "web1.vcpu_util"));

    let batch = vmetrics::sanitize_vm_name("batch: job \"7\"");
    assert!(batch.starts_with("batch__job__7_--"), "{batch}");
    let st = get(&format!("{batch}.vcpu_state"));
    assert_eq!(st.value, MetricValue::Str("paused".into()));
    assert_eq!(st.title, format!("{batch}: State"));
    assert_eq!(
        st.extras,
        vec![("VM_UUID", "33333333-3333-4333-8333-333333333333".to_owned())]
    );
    assert_eq!(
        get(&format!("{batch}.vcpu_util")).value,
        MetricValue::F32(0.0)
    );

    // Shut off: only its state.
    let spare: Vec<&str> = ms
        .iter()
        .filter(|m| m.name.starts_with("spare."))
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(spare, ["spare.vcpu_state"]);

    // Every per-VM name parses back to its prefix.
    for m in &ms {
        if let Some((vm, suffix)) = vmetrics::parse_vm_metric(&m.name) {
            assert!(
                ["web1", "db.example.com", "cache", "spare", batch.as_str()].contains(&vm),
                "{}",
                m.name
            );
            assert!(vmetrics::VM_METRICS.contains(&suffix));
        } else {
            assert!(m.name.starts_with("vnode_"), "{}", m.name);
        }
    }
}

#[test]
fn reconnects_once_the_uri_works_again() {
    // A test-driver file that does not exist yet stands in for a libvirtd that is down.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.xml");
    let uri = format!("test://{}", path.display());
    let hv = LibvirtHypervisor::open_lazy(&uri, BackoffPolicy::default());
    let t0 = Instant::now();
    let s = std::time::Duration::from_secs(1);
    assert!(matches!(hv.domains_at(t0), Err(Error::Connect { .. })));
    assert!(matches!(hv.domains_at(t0 + s), Err(Error::Connect { .. })));
    assert!(matches!(hv.domains_at(t0 + 2 * s), Err(Error::HostDown(_))));
    std::fs::copy(node_uri().trim_start_matches("test://"), &path).unwrap();
    // Still inside the 2 s backoff after the second failure: no attempt yet.
    assert!(matches!(
        hv.capacity_at(t0 + 2 * s),
        Err(Error::HostDown(_))
    ));
    assert_eq!(hv.domains_at(t0 + 3 * s).unwrap().len(), 5);
    assert!(hv.is_connected());
    assert_eq!(hv.outages_total(), 1);
    assert_eq!(
        hv.link_state(),
        gmond_metrics::hypervisor::libvirt::LinkState::Up
    );
}

#[test]
fn collect_round_through_the_reconnecting_wrapper() {
    let hv = LibvirtHypervisor::open_lazy(&node_uri(), BackoffPolicy::default());
    let mut tracker = UtilTracker::new();
    let mut t = 0u64;
    let ms = hv
        .collect_round(Instant::now(), &mut tracker, || {
            t += 1_000;
            t
        })
        .unwrap();
    assert!(ms.iter().any(|m| m.name == "web1.vmem_util"));
    // The test driver has no block or interface stats: no I/O metrics.
    assert!(ms.iter().all(|m| {
        vmetrics::parse_vm_metric(&m.name)
            .is_none_or(|(_, s)| !vmetrics::VM_IO_METRICS.contains(&s))
    }));
    assert_eq!(
        ms.iter().filter(|m| m.name.starts_with("vnode_")).count(),
        5
    );
}
