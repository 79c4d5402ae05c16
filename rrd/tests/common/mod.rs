//! Helpers shared by the integration tests: running the real rrdtool and our CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report
#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;
use std::process::Command;

/// Output of one command.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

fn run(cmd: &str, args: &[&str]) -> Out {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {cmd} ({e}); install it (Debian package rrdtool provides /usr/bin/rrdtool)"
        )
    });
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs the system rrdtool; panics with a clear message if it is missing.
pub fn rrdtool(args: &[&str]) -> Out {
    run("rrdtool", args)
}

/// Runs our CLI binary.
pub fn rrd_rs(args: &[&str]) -> Out {
    run(env!("CARGO_BIN_EXE_rrd-rs"), args)
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `rrdtool info` lines minus `filename` and `cur_row` (rrdtool randomises the start row).
pub fn info_sans_rows(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("filename") && !l.contains(".cur_row"))
        .map(str::to_string)
        .collect()
}
