//! The embeddable daemon entry (`daemon::run_with`): two daemons in one process, each on its own
//! loopback address, unicasting to each other, with VM metrics from an injected source; one
//! stop handle ends both, and their XML ports are free again afterwards. 127.0.0.x only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gmond_conf::{SendTarget, TcpAcceptChannel, UdpRecvChannel, UdpSendChannel};
use gmond_metrics::linux::MetricValue;
use gmond_metrics::vmetrics::VmMetric;
use gmond_metrics::Error as HypervisorError;
use gmond_rs::daemon::{self, Bound, Exit, Hooks, RunOptions, StopHandle, VmFeed, VmSource};
use integration_tests::{free_port, poll_until, read_xml};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// One VM whose CPU utilisation is the number of rounds collected so far.
struct Counting {
    vm: String,
    rounds: Arc<AtomicUsize>,
}

impl VmSource for Counting {
    fn collect(&mut self) -> Result<Vec<VmMetric>, HypervisorError> {
        let n = self.rounds.fetch_add(1, Ordering::SeqCst);
        if n == 1 {
            // A failing round is skipped, not fatal.
            return Err(HypervisorError::Backend("flaky".into()));
        }
        Ok(vec![VmMetric {
            name: format!("{}.vcpu_util", self.vm),
            value: MetricValue::F32(n as f32),
            format: "%.1f",
            units: "%",
            slope: "both",
            tmax: 60,
            dmax: 600,
            group: "vm cpu",
            desc: "VM CPU utilization",
            title: format!("{}: CPU utilization", self.vm),
            extras: vec![],
        }])
    }
}

fn config(me: &str, peers: &[&str], port: u16, tcp: u16) -> gmond_conf::Config {
    let mut cfg = gmond_conf::builtin_config().unwrap().config;
    cfg.cluster.name = "embedded".into();
    cfg.globals.override_hostname = Some(format!("node-{me}"));
    cfg.globals.override_ip = Some(me.into());
    cfg.udp_send = peers
        .iter()
        .map(|p| UdpSendChannel {
            target: SendTarget::Unicast((*p).into()),
            port,
            ttl: 1,
            mcast_if: None,
            bind: Some(me.into()),
            bind_hostname: false,
        })
        .collect();
    cfg.udp_recv = vec![UdpRecvChannel {
        mcast_join: None,
        mcast_if: None,
        bind: Some(me.into()),
        port,
        family: Default::default(),
        retry_bind: false,
        buffer: None,
        acl: None,
    }];
    cfg.tcp_accept = vec![TcpAcceptChannel {
        bind: Some("127.0.0.1".into()),
        port: tcp,
        interface: None,
        family: Default::default(),
        timeout: None,
        gzip_output: false,
        acl: None,
    }];
    cfg
}

#[test]
fn two_embedded_daemons_share_a_view_and_stop_on_one_handle() {
    let addrs = ["127.0.0.71", "127.0.0.72"];
    let port = free_port();
    let tcp = [free_port(), free_port()];
    let stop = StopHandle::new();
    let (ready_tx, ready_rx) = mpsc::channel::<Bound>();
    let rounds = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for (i, me) in addrs.iter().enumerate() {
        let cfg = config(me, &addrs, port, tcp[i]);
        let ready_tx = ready_tx.clone();
        let hooks = Hooks {
            stop: Some(stop.clone()),
            vm_feed: Some(VmFeed {
                source: Box::new(Counting {
                    vm: format!("vm{i}"),
                    rounds: rounds.clone(),
                }),
                every: Duration::from_millis(200),
                metadata_resend: Duration::from_secs(2),
            }),
            on_ready: Some(Box::new(move |b: &Bound| {
                let _ = ready_tx.send(b.clone());
            })),
        };
        threads.push(std::thread::spawn(move || {
            daemon::run_with(cfg, RunOptions::default(), hooks)
        }));
    }
    let mut bound: Vec<Bound> = (0..2)
        .map(|_| ready_rx.recv_timeout(Duration::from_secs(20)).unwrap())
        .collect();
    bound.sort_by(|a, b| a.host.cmp(&b.host));
    assert_eq!(bound[0].host, "127.0.0.71:node-127.0.0.71");
    assert_eq!(bound[0].udp[0].to_string(), format!("127.0.0.71:{port}"));

    // Each daemon's feed lists both hosts with their VM metric: the unicast mesh works.
    for t in tcp {
        poll_until(Duration::from_secs(30), || {
            let doc = ganglia_wire::xml::read_document(&read_xml(t)?).ok()?;
            let c = &doc.clusters[0];
            let a = c.host("node-127.0.0.71")?.metric("vm0.vcpu_util")?;
            let b = c.host("node-127.0.0.72")?.metric("vm1.vcpu_util")?;
            (a.as_f64()? >= 2.0 && b.as_f64()? >= 2.0).then_some(())
        });
    }

    stop.stop();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap(), Exit::Stopped);
    }
    // run_with returned only after its threads ended: the VM thread has dropped its source
    // (the counter's only other owners were the sources), so nothing polls it any more...
    assert_eq!(Arc::strong_count(&rounds), 1);
    // ...the XML listeners are closed, and so are the receive sockets.
    for t in tcp {
        TcpListener::bind(("127.0.0.1", t)).unwrap();
    }
    for a in addrs {
        std::net::UdpSocket::bind((a, port)).unwrap();
    }
}

#[test]
fn a_stop_before_start_returns_at_once() {
    let stop = StopHandle::new();
    stop.stop();
    assert!(stop.is_stopped());
    assert!(stop.sleep(Duration::from_secs(60)));
    let port = free_port();
    let cfg = config("127.0.0.73", &["127.0.0.73"], port, free_port());
    let hooks = Hooks {
        stop: Some(stop),
        ..Hooks::default()
    };
    assert_eq!(
        daemon::run_with(cfg, RunOptions::default(), hooks).unwrap(),
        Exit::Stopped
    );
}
