//! The `rrd-rs` command line: rrdtool's syntax is accepted, and a malformed command line is
//! refused by clap with a message naming the culprit, a pointer to `--help` and exit status 2
//! (runtime failures exit 1 with `ERROR: `), before any file is touched.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use common::{p, rrd_rs};
use std::process::Command;

/// Runs rrd-rs and returns (exit code, stderr).
fn status_and_stderr(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rrd-rs"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_get_clap_errors_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.rrd");
    let f = p(&path);
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "create",
                f,
                "--bogus",
                "DS:a:GAUGE:60:U:U",
                "RRA:LAST:0:1:10",
            ],
            "unexpected argument '--bogus'",
        ),
        (
            &["create", f, "--step", "abc", "DS:a:GAUGE:60:U:U"],
            "invalid value 'abc' for '--step <SECONDS>'",
        ),
        (
            &["create", f, "--start", "yesterday", "DS:a:GAUGE:60:U:U"],
            "cannot parse time \"yesterday\"",
        ),
        (&["create", f, "--step"], "a value is required for '--step"),
        (&["fetch", f, "MEDIAN"], "invalid value 'MEDIAN' for '<CF>'"),
        (
            &["info"],
            "the following required arguments were not provided",
        ),
        (&["graph", f], "unrecognized subcommand 'graph'"),
    ];
    for (args, want) in cases {
        let (code, stderr) = status_and_stderr(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(stderr.contains("--help"), "{args:?}: {stderr}");
        assert!(!path.exists(), "{args:?} created the file");
    }
}

#[test]
fn no_arguments_print_help_and_fail() {
    let (code, stderr) = status_and_stderr(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    for sub in ["create", "update", "fetch", "info", "last"] {
        assert!(stderr.contains(sub), "help does not list {sub}: {stderr}");
    }
}

#[test]
fn runtime_errors_keep_rrdtool_style_and_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.rrd");
    let (code, stderr) = status_and_stderr(&["last", p(&missing)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("ERROR: opening '"), "{stderr}");
}

#[test]
fn options_take_rrdtool_forms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.rrd");
    let f = p(&path);
    // Short and long names, `--opt=value`, options after positionals, a negative start
    // (an offset from now, as rrdtool's getopt passes it through).
    let out = rrd_rs(&[
        "create",
        f,
        "DS:a:GAUGE:60:U:U",
        "-s",
        "10",
        "--start=-100",
        "RRA:LAST:0:1:10",
    ]);
    assert!(out.ok, "{}", out.stderr);
    let out = rrd_rs(&["create", f, "-O", "DS:a:GAUGE:60:U:U", "RRA:LAST:0:1:10"]);
    assert!(!out.ok, "--no-overwrite (-O) overwrote");
    assert!(out.stderr.starts_with("ERROR: "), "{}", out.stderr);
    // A negative update time needs `--`, as in rrdtool; after it, it is an update.
    let out = rrd_rs(&["update", f, "--template", "a", "--", "-5:1"]);
    assert!(out.ok, "{}", out.stderr);
    let last = rrd_rs(&["last", f]).stdout;
    let out = rrd_rs(&["update", f, "-t", "a", "-5:1"]);
    assert!(!out.ok, "-5:1 without -- was taken as an update");
    assert_eq!(
        rrd_rs(&["last", f]).stdout,
        last,
        "-5:1 without -- was applied"
    );
    // A negative fetch start: about 100 rows of 10 s (rounding at both ends and the clock
    // ticking between commands move the count by one or two).
    let out = rrd_rs(&["fetch", f, "LAST", "-s", "-1000", "-e", last.trim()]);
    assert!(out.ok, "{}", out.stderr);
    let rows = out.stdout.lines().filter(|l| l.contains(": ")).count();
    assert!((98..=102).contains(&rows), "{rows} rows: {}", out.stdout);
}
