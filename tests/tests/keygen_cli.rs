//! `gmond-rs-keygen`, the binary: creates a 0600 key file, appends further keys, never prints
//! a key, and refuses a file others can read, with the fix in its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::{bin, TempDir};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn keygen_makes_and_extends_a_private_key_file() {
    let dir = TempDir::new("keygen");
    let file = dir.path().join("keys");
    let run = |args: &[&str]| {
        Command::new(bin("gmond-rs-keygen"))
            .args(args)
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("added key 1"));
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = run(&["--id", "7"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("added key 7"));
    let text = std::fs::read_to_string(&file).unwrap();
    let keys: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(keys.len(), 2);
    for line in &keys {
        let hex = line.split(' ').nth(1).unwrap();
        assert_eq!(hex.len(), 64);
        assert!(!String::from_utf8_lossy(&out.stdout).contains(hex));
    }
    let ring = ganglia_wire::auth::KeyRing::parse(&text).unwrap();
    assert_eq!(ring.key_ids().collect::<Vec<_>>(), [1, 7]);

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}
