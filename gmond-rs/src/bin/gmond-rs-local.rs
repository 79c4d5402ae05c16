//! `cargo run --release --bin gmond-rs-local`: one gmond-rs node confined to 127.0.0.1, with the
//! stock metric set, safe on any network (`cargo run --release` alone starts the demo). For
//! gmond's own behaviour, run the `gmond-rs` binary.
use gmond_conf::{SendTarget, TcpAcceptChannel, UdpRecvChannel, UdpSendChannel};
use gmond_rs::daemon::{self, RunOptions};
use std::net::{TcpListener, UdpSocket};
use std::process::ExitCode;

/// The first free port at or after `want` on 127.0.0.1 (UDP and TCP).
fn free_port(want: u16) -> Option<u16> {
    (want..want.saturating_add(100)).find(|p| {
        UdpSocket::bind(("127.0.0.1", *p)).is_ok() && TcpListener::bind(("127.0.0.1", *p)).is_ok()
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = match gmond_conf::builtin_config() {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("built-in config rejected: {e}");
            return ExitCode::from(1);
        }
    };
    let Some(port) = free_port(8649) else {
        eprintln!("gmond-rs-local: no free port in 8649-8748 on 127.0.0.1");
        return ExitCode::from(1);
    };
    if port != 8649 {
        eprintln!("gmond-rs-local: port 8649 is taken; using {port}");
    }
    // Unicast to ourselves on loopback: nothing leaves the machine.
    cfg.cluster.name = "local".into();
    cfg.udp_send = vec![UdpSendChannel {
        target: SendTarget::Unicast("127.0.0.1".into()),
        port,
        ttl: 1,
        mcast_if: None,
        bind: None,
        bind_hostname: false,
    }];
    cfg.udp_recv = vec![UdpRecvChannel {
        mcast_join: None,
        mcast_if: None,
        bind: Some("127.0.0.1".into()),
        port,
        family: Default::default(),
        retry_bind: true,
        buffer: None,
        acl: None,
    }];
    cfg.tcp_accept = vec![TcpAcceptChannel {
        bind: Some("127.0.0.1".into()),
        port,
        interface: None,
        family: Default::default(),
        timeout: None,
        gzip_output: false,
        acl: None,
    }];
    eprintln!(
        "gmond-rs-local: one node on 127.0.0.1 only (UDP and XML on port {port}).\n\
         Read the cluster view:   gstat -a -i 127.0.0.1 -p {port}\n\
         or the raw XML feed:     bash -c 'cat < /dev/tcp/127.0.0.1/{port}'\n\
         Ctrl-C stops it. For gmond's own behaviour use target/release/gmond-rs -c FILE."
    );
    match daemon::run(cfg, RunOptions::default()) {
        // SIGHUP has nothing to reload here (no config file): stop like gmond-rs would.
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gmond-rs-local: {e}");
            ExitCode::from(1)
        }
    }
}
