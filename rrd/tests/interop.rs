//! Sharing files with rrdtool: a long-lived handle picks up rrdtool's updates, and the
//! rrdtool-compatible fcntl lock keeps two writers apart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use common::{p, rrdtool};
use rrd::{Error, RrdFile, Update};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const SPECS: [&str; 3] = [
    "DS:x:GAUGE:60:U:U",
    "RRA:AVERAGE:0.5:1:20",
    "RRA:MAX:0.5:3:10",
];

fn rrdtool_create(path: &std::path::Path) {
    let mut args = vec!["create", p(path), "--start", "1700000000", "--step", "10"];
    args.extend(SPECS);
    assert!(rrdtool(&args).ok);
}

#[test]
fn long_lived_handle_builds_on_rrdtool_updates() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.rrd");
    let b = dir.path().join("b.rrd");
    rrdtool_create(&a);
    std::fs::copy(&a, &b).unwrap();
    let mut h = RrdFile::open(&b).unwrap();
    h.update(&Update::parse("1700000010:1").unwrap()).unwrap();
    // rrdtool writes behind the handle's back...
    assert!(
        rrdtool(&[
            "update",
            p(&a),
            "1700000010:1",
            "1700000025:2",
            "1700000047:3"
        ])
        .ok
    );
    assert!(rrdtool(&["update", p(&b), "1700000025:2"]).ok);
    // ...and the handle continues from rrdtool's state, not its cached one.
    h.update(&Update::parse("1700000047:3").unwrap()).unwrap();
    let (ab, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(
        ab[..] == bb[..ab.len()],
        "interleaved writers diverged from rrdtool alone"
    );
}

#[test]
fn rrdtool_lock_keeps_writers_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.rrd");
    rrdtool_create(&path);
    // A process holding the same POSIX lock rrdtool takes while updating.
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import fcntl,sys,time\nf=open(sys.argv[1],'r+')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(60)",
            p(&path),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed to hold a lock");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    let before = std::fs::read(&path).unwrap();
    let mut f = RrdFile::open(&path).unwrap();
    let e = f
        .update(&Update::parse("1700000010:1").unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::Locked(_)), "{e:?}");
    assert!(
        std::fs::read(&path).unwrap() == before,
        "locked file changed"
    );
    // rrdtool is kept out the same way, which shows it is the same lock.
    assert!(!rrdtool(&["update", p(&path), "1700000010:1"]).ok);

    child.kill().unwrap();
    child.wait().unwrap();
    f.update(&Update::parse("1700000010:1").unwrap()).unwrap();
    assert_eq!(f.last_update().secs, 1_700_000_010);
}

#[test]
fn template_updates_match_rrdtool() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.rrd");
    let b = dir.path().join("b.rrd");
    let specs = [
        "DS:in:COUNTER:60:U:U",
        "DS:out:GAUGE:60:U:U",
        "DS:err:GAUGE:60:U:U",
        "RRA:LAST:0:1:10",
    ];
    let mut args = vec!["create", p(&a), "--start", "1700000000", "--step", "10"];
    args.extend(specs);
    assert!(rrdtool(&args).ok);
    std::fs::copy(&a, &b).unwrap();
    let ups = ["1700000010:5:100", "1700000020:7:300", "1700000030:1:U"];
    let mut args = vec!["update", p(&a), "--template", "out:in"];
    args.extend(ups);
    assert!(rrdtool(&args).ok);
    let mut args = vec!["update", p(&b), "-t", "out:in"];
    args.extend(ups);
    let out = common::rrd_rs(&args);
    assert!(out.ok, "{}", out.stderr);
    let (ab, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(
        ab[..] == bb[..ab.len()],
        "template update differs from rrdtool's"
    );

    // An unknown DS name is an error and changes nothing, for both tools.
    let before = std::fs::read(&b).unwrap();
    let out = common::rrd_rs(&["update", p(&b), "-t", "out:nope", "1700000040:1:2"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("unknown DS name 'nope'"),
        "{}",
        out.stderr
    );
    assert!(std::fs::read(&b).unwrap() == before);
    assert!(!rrdtool(&["update", p(&a), "-t", "out:nope", "1700000040:1:2"]).ok);
    let ds = RrdFile::open(&b).unwrap().ds().to_vec();
    assert!(
        rrd::Template::new("out:in:err:in", &ds).is_err(),
        "more entries than DSs"
    );
    let t = rrd::Template::new("err", &ds).unwrap();
    assert_eq!(t.parse("1700000040:3").unwrap().values, ["U", "U", "3"]);
    assert!(t.parse("1700000040:3:4").is_err());
}

#[test]
fn rrdtool_graphs_our_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.rrd");
    let png = dir.path().join("g.png");
    let layout = rrd::Layout::from_specs(10, 1_700_000_000, &SPECS).unwrap();
    let mut f = RrdFile::create(&path, &layout).unwrap();
    for i in 1..=100 {
        f.update(&Update::parse(&format!("{}:{}", 1_700_000_000 + 10 * i, i % 13)).unwrap())
            .unwrap();
    }
    let def = format!("DEF:x={}:x:AVERAGE", p(&path));
    let out = rrdtool(&[
        "graph",
        p(&png),
        "--start",
        "1700000000",
        "--end",
        "1700001000",
        &def,
        "LINE1:x#ff0000:x",
    ]);
    assert!(out.ok, "{}", out.stderr);
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
}
