//! gmond's command line on the listing and refusal paths: `-m` loads the configuration first as
//! gmond does, listings survive a reader that goes away, and `-b`/`-r` are refused with a
//! message rather than half done; a key file others can read, or a bad `--auth-recv`, stops
//! start-up with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_gmond-rs");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn metrics_listing_names_the_stock_metrics() {
    let dir = integration_tests::TempDir::new("cli");
    let conf = dir.path().join("gmond.conf");
    std::fs::write(&conf, gmond_conf::default_config_text()).unwrap();
    let (code, out, err) = run(&["-c", conf.to_str().unwrap(), "-m"]);
    assert_eq!(code, 0, "{err}");
    for name in [
        "cpu_user",
        "load_one",
        "mem_free",
        "bytes_in",
        "disk_total",
        "boottime",
    ] {
        assert!(
            out.lines()
                .any(|l| l.split('\t').next().unwrap().trim() == name),
            "{name} missing from:\n{out}"
        );
    }
    assert!(
        !out.contains("<vm>."),
        "no libvirt_module configured:\n{out}"
    );
}

#[test]
fn metrics_listing_includes_vm_metrics_when_the_module_is_on() {
    let dir = integration_tests::TempDir::new("cli");
    let conf = dir.path().join("gmond.conf");
    let text = format!(
        "{}\nmodules {{\n  module {{\n    name = \"libvirt_module\"\n    param uri {{ value = \"test:///default\" }}\n  }}\n}}\n",
        gmond_conf::default_config_text()
    );
    std::fs::write(&conf, text).unwrap();
    let (code, out, err) = run(&["-c", conf.to_str().unwrap(), "-m"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("<vm>.vcpu_util"), "{out}");
}

#[test]
fn metrics_listing_rejects_a_missing_or_broken_config() {
    let dir = integration_tests::TempDir::new("cli");
    let missing = dir.path().join("nope.conf");
    let (code, _, err) = run(&["-c", missing.to_str().unwrap(), "-m"]);
    assert_eq!(code, 1);
    assert!(err.contains("nope.conf"), "{err}");

    let broken = dir.path().join("broken.conf");
    std::fs::write(&broken, "globals {\n  daemonize = maybe\n}\n").unwrap();
    let (code, _, err) = run(&["-c", broken.to_str().unwrap(), "-m"]);
    assert_eq!(code, 1);
    assert!(err.contains("broken.conf:2"), "file:line expected: {err}");
}

#[test]
fn listings_end_quietly_when_the_reader_goes_away() {
    for flag in ["-t", "-m"] {
        let mut child = Command::new(BIN)
            .args(["-c", "/dev/null", flag])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the child has written anything: its writes get EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{flag}: {err}");
        assert_eq!(out.status.code(), Some(0), "{flag}: {err}");
    }
}

#[test]
fn bandwidth_and_convert_are_refused() {
    let (code, _, err) = run(&["-b"]);
    assert_eq!(code, 1);
    assert!(err.contains("not implemented"), "{err}");
    let (code, _, err) = run(&["-r", "/etc/old.conf"]);
    assert_eq!(code, 1);
    assert!(err.contains("not implemented"), "{err}");
}

#[test]
fn a_bad_key_file_or_mode_stops_start_up_with_the_reason() {
    use std::os::unix::fs::PermissionsExt;
    let dir = integration_tests::TempDir::new("cli-auth");
    // A config that would start (loopback, ports of its own) if the key file were good.
    let conf = dir.path().join("gmond.conf");
    std::fs::write(
        &conf,
        format!(
            "globals {{ daemonize = no setuid = no mute = yes }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {} }}\n",
            integration_tests::free_port()
        ),
    )
    .unwrap();
    let keys = dir.path().join("keys");
    gmond_rs::auth::add_key(&keys, None).unwrap();
    let c = conf.to_str().unwrap();
    let k = keys.to_str().unwrap();

    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(&["-c", c, "-f", "--auth", k]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("chmod 600") && err.contains("not starting"),
        "{err}"
    );

    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = run(&["-c", c, "-f", "--auth", k, "--auth-recv", "maybe"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("none, prefer or require"), "{err}");
    // --auth-recv means nothing without keys.
    let (code, _, err) = run(&["-c", c, "-f", "--auth-recv", "require"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--auth"), "{err}");
}
