//! `gmond-rs --rrd-rootdir`: the cluster view lands in gmetad's RRD layout, readable by the
//! real rrdtool (step 15, DS sum, GAUGE or COUNTER by slope, the cluster summary with DS num).
//! gmond-rs runs on 127.0.0.1 only, sending to itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::{
    fast_stock_config_with_channels, free_port, poll_until, read_xml, require_program, Proc,
    TempDir,
};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn info(rrdtool: &Path, file: &Path) -> String {
    let out = Command::new(rrdtool)
        .arg("info")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "rrdtool info {}", file.display());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_view_is_archived_in_gmetads_layout() {
    let rrdtool = require_program("rrdtool", "rrdtool");
    let dir = TempDir::new("rrd-archive");
    let root = dir.path().join("rrds");
    let (udp, tcp) = (free_port(), free_port());
    let conf = dir.path().join("gmond.conf");
    std::fs::write(
        &conf,
        fast_stock_config_with_channels(
            &format!(
                "udp_send_channel {{ host = 127.0.0.1 port = {udp} }}\n\
                 udp_recv_channel {{ bind = 127.0.0.1 port = {udp} }}\n\
                 tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n\
                 collection_group {{ collect_every = 5 time_threshold = 10\n\
                   metric {{ name_match = \"^gmond_rs_datagrams_received$\" }} }}\n"
            ),
            5,
            10,
        ),
    )
    .unwrap();
    let mut d = Proc::spawn(
        "gmond-rs",
        Path::new(env!("CARGO_BIN_EXE_gmond-rs")),
        &[
            OsStr::new("-c"),
            conf.as_os_str(),
            OsStr::new("--rrd-rootdir"),
            root.as_os_str(),
        ],
    );
    poll_until(Duration::from_secs(20), || read_xml(tcp));
    // One round happens at the next multiple of 15 s.
    let cluster_dir = root.join("refcluster");
    let host_dir: PathBuf = poll_until(Duration::from_secs(40), || {
        let entries = std::fs::read_dir(&cluster_dir).ok()?;
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name() != Some(OsStr::new("__SummaryInfo__")) && p.join("load_one.rrd").exists()
        })
    });
    assert!(d.running());

    let load = info(&rrdtool, &host_dir.join("load_one.rrd"));
    for line in [
        "step = 15",
        "ds[sum].type = \"GAUGE\"",
        "ds[sum].minimal_heartbeat = 120",
        "rra[0].pdp_per_row = 1",
        "rra[1].pdp_per_row = 4",
        "rra[2].pdp_per_row = 40",
        "rra[2].rows = 52704",
    ] {
        assert!(load.contains(line), "{line} missing from:\n{load}");
    }
    // Strings get no archive; a positive-slope counter gets a COUNTER.
    assert!(!host_dir.join("os_name.rrd").exists());
    let counter = poll_until(Duration::from_secs(40), || {
        let p = host_dir.join("gmond_rs_datagrams_received.rrd");
        p.exists().then(|| info(&rrdtool, &p))
    });
    assert!(counter.contains("ds[sum].type = \"COUNTER\""), "{counter}");
    // The cluster summary: sum and num over the hosts that are up.
    // (Written after the host files of the same round.)
    let summary = poll_until(Duration::from_secs(40), || {
        let p = cluster_dir.join("__SummaryInfo__/cpu_num.rrd");
        p.exists().then(|| info(&rrdtool, &p))
    });
    assert!(summary.contains("ds[num].type = \"GAUGE\""), "{summary}");
    let last = Command::new(&rrdtool)
        .arg("lastupdate")
        .arg(cluster_dir.join("__SummaryInfo__/cpu_num.rrd"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&last.stdout);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    assert!(
        text.contains(&format!(" {cpus} 1")) || text.contains(&format!(" {cpus}.")),
        "{text}"
    );
}
