//! `LibvirtControl` (the balancer agent's libvirt calls) against libvirt's in-process test
//! driver: probing URIs, where domains stand, migrations the test driver cannot run (so their
//! errors must come back typed, with libvirt's text), and aborting jobs. No daemon, no packet
//! leaves the machine (the unreachable URI is 127.0.0.1:1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gmond_metrics::hypervisor::libvirt::{LibvirtControl, MigrateOptions, Presence};
use gmond_metrics::Error;

/// The shared default test driver: one running domain, "test".
const DEFAULT: &str = "test:///default";
/// Nothing listens on port 1: the connection is refused at once.
const REFUSED: &str = "qemu+tcp://127.0.0.1:1/system";

/// Five domains in every state (web1 running, `batch: job "7"` paused, spare shut off), private
/// to each connection, so tests do not interfere.
fn node_uri() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/libvirt/node.xml");
    assert!(std::path::Path::new(path).exists(), "missing {path}");
    format!("test://{path}")
}

fn options(p2p: bool) -> MigrateOptions {
    MigrateOptions {
        live: true,
        p2p,
        tunnelled: false,
        persist_dest: true,
        undefine_source: true,
        allow_unsafe: false,
        tls: false,
        bandwidth_mib_s: 100,
        max_downtime_ms: 300,
    }
}

#[test]
fn probe_tells_reachable_uris_from_the_others() {
    LibvirtControl::probe(DEFAULT).unwrap();
    LibvirtControl::probe(&node_uri()).unwrap();
    for uri in ["bogus:///nowhere", REFUSED] {
        match LibvirtControl::probe(uri) {
            Err(Error::Connect { uri: u, message }) => {
                assert_eq!(u, uri);
                assert!(!message.is_empty());
            }
            other => panic!("{uri}: {other:?}"),
        }
    }
    let c = LibvirtControl::open(DEFAULT).unwrap();
    assert_eq!(c.uri(), DEFAULT);
}

#[test]
fn presence_of_domains_in_every_state() {
    let c = LibvirtControl::open(&node_uri()).unwrap();
    assert_eq!(c.presence("web1").unwrap(), Presence::Running);
    assert_eq!(
        c.presence("batch: job \"7\"").unwrap(),
        Presence::NotRunning
    );
    assert_eq!(c.presence("spare").unwrap(), Presence::NotRunning);
    assert_eq!(c.presence("nope").unwrap(), Presence::Absent);
    let d = LibvirtControl::open(DEFAULT).unwrap();
    assert_eq!(d.presence("test").unwrap(), Presence::Running);
}

#[test]
fn migration_errors_are_typed_with_libvirts_text() {
    let c = LibvirtControl::open(DEFAULT).unwrap();
    // Peer to peer: the test driver cannot migrate, and says so (argument unsupported).
    match c.migrate("test", DEFAULT, &options(true)) {
        Err(Error::MigrationFailed { domain, why }) => {
            assert_eq!(domain, "test");
            assert!(why.contains("not supported"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    // Client-managed: this process connects to the destination, then virDomainMigrate3 is
    // refused (no support)...
    match c.migrate("test", DEFAULT, &options(false)) {
        Err(Error::MigrationFailed { domain, why }) => {
            assert_eq!(domain, "test");
            assert!(why.contains("not supported"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    // ...so an unreachable destination is a connect error naming it.
    match c.migrate("test", REFUSED, &options(false)) {
        Err(Error::Connect { uri, .. }) => assert_eq!(uri, REFUSED),
        other => panic!("{other:?}"),
    }
    // A domain the source does not have.
    assert!(matches!(
        c.migrate("nope", DEFAULT, &options(true)),
        Err(Error::UnknownDomain(vm)) if vm == "nope"
    ));
    // Nothing moved.
    assert_eq!(c.presence("test").unwrap(), Presence::Running);
}

#[test]
fn abort_job_on_a_domain_without_a_job() {
    let c = LibvirtControl::open(DEFAULT).unwrap();
    assert!(matches!(
        c.abort_job("nope"),
        Err(Error::UnknownDomain(vm)) if vm == "nope"
    ));
    // The call reaches libvirt (through the FFI wrapper), whose test driver cannot abort.
    match c.abort_job("test") {
        Err(Error::AbortFailed { domain, why }) => {
            assert_eq!(domain, "test");
            assert!(why.contains("virDomainAbortJob"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.presence("test").unwrap(), Presence::Running);
}

#[test]
fn control_connections_move_to_worker_threads() {
    fn send<T: Send>() {}
    send::<LibvirtControl>();
    // abort_job runs on its own connection on another thread while migrate blocks.
    let uri = DEFAULT.to_owned();
    let t = std::thread::spawn(move || LibvirtControl::open(&uri).unwrap().presence("test"));
    assert_eq!(t.join().unwrap().unwrap(), Presence::Running);
}
