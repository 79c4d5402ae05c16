//! `balancer simulate` with stderr not a terminal (a pipe, as in logs and CI): plain progress
//! lines every 24 ticks and at the last, never a bar redrawn with carriage returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn piped_stderr_gets_a_plain_line_every_24_ticks() {
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args(["simulate", "--scenario", "hot-host", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    assert!(!err.contains('\r'), "{err:?}");
    let times: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("[hot-host] t="))
        .map(|rest| {
            let (t, tail) = rest.split_once(' ').unwrap();
            assert!(tail.starts_with("migrations="), "{rest}");
            assert!(tail.contains(" sigma="), "{rest}");
            t
        })
        .collect();
    // 120 ticks of 60 s: ticks 0, 24, 48, 72, 96 and the last, 119.
    assert_eq!(
        times,
        [
            "0s/7200s",
            "1440s/7200s",
            "2880s/7200s",
            "4320s/7200s",
            "5760s/7200s",
            "7140s/7200s"
        ]
    );
    assert!(
        err.contains("simulated hot-host under hotspot in "),
        "{err}"
    );
}
