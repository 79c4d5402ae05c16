//! Property tests: any input gives a config or located errors, never a panic.

// Test helpers outside #[test] fns: a panic is how they report failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gmond_conf::{parse_str_with, ConfigErrors, LoadOptions, Loaded, MemSource};
use proptest::prelude::*;

/// In-memory world with an include target, a self-including file and one variable.
fn world() -> MemSource {
    MemSource::new()
        .with_file("inc.conf", "globals { mute = yes }")
        .with_file("dir/a.conf", "cluster { name = \"a\" }")
        .with_file("loop.conf", "include (\"loop.conf\")")
        .with_env("A", "239.2.11.71")
}

fn parse(text: &str) -> Result<Loaded, ConfigErrors> {
    parse_str_with(text, "p.conf", &world(), &LoadOptions::default())
}

/// Checks what must hold for every outcome.
fn check_outcome(text: &str, r: &Result<Loaded, ConfigErrors>) {
    match r {
        Ok(l) => {
            let c = &l.config;
            assert!(!(c.globals.deaf && c.globals.mute));
            assert!(c.udp_send.iter().all(|s| s.port != 0));
            assert!(c.udp_recv.iter().all(|s| s.port != 0));
            assert!(c.tcp_accept.iter().all(|s| s.port != 0));
            // Binding selectors must not panic either.
            let _ = c.select_metrics(&["cpu_user", "disk_free_sda", "vm_x_cpu", ""]);
        }
        Err(e) => {
            assert!(!e.errors.is_empty());
            let lines = text.lines().count() as u32 + 1;
            for err in &e.errors {
                let l = err
                    .location()
                    .expect("every error of a load has a location");
                if &*l.file == "p.conf" {
                    assert!(
                        l.line >= 1 && l.line <= lines,
                        "{err} outside {lines} lines"
                    );
                    assert!(l.column >= 1, "{err}");
                }
            }
        }
    }
}

const PIECES: &[&str] = &[
    "globals",
    "cluster",
    "host",
    "udp_send_channel",
    "udp_recv_channel",
    "tcp_accept_channel",
    "modules",
    "module",
    "param",
    "collection_group",
    "metric",
    "sflow",
    "acl",
    "access",
    "include",
    "name",
    "name_match",
    "title",
    "value",
    "value_threshold",
    "port",
    "ttl",
    "mcast_join",
    "host",
    "bind",
    "bind_hostname",
    "deaf",
    "mute",
    "default",
    "ip",
    "mask",
    "action",
    "family",
    "timeout",
    "{",
    "}",
    "(",
    ")",
    "=",
    "+=",
    ",",
    "\n",
    "#",
    "//",
    "/*",
    "*/",
    "\"",
    "'",
    "\\",
    "${A}",
    "${B:-x}",
    "yes",
    "no",
    "8649",
    "-1",
    "0x1f",
    "08",
    "1.5",
    "\"239.2.11.71\"",
    "127.0.0.1",
    "24",
    "255.255.0.0",
    "allow",
    "deny",
    "inet6",
    "\"\\1\"",
    "'^cpu_(.*)$'",
    "\"(\"",
    "\"inc.conf\"",
    "\"loop.conf\"",
    "\"dir/*.conf\"",
    "\"nope\"",
    "\"\\x41\\101\"",
    "\"\\9\"",
    "\r",
    "\t",
    "é",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let r = parse(&text);
        check_outcome(&text, &r);
    }

    #[test]
    fn config_shaped_token_soup_never_panics(
        picks in proptest::collection::vec(0..PIECES.len(), 0..80),
        seps in proptest::collection::vec(prop_oneof![Just(" "), Just(""), Just("\n")], 80),
    ) {
        let mut text = String::new();
        for (i, p) in picks.iter().enumerate() {
            text.push_str(PIECES[*p]);
            text.push_str(seps[i]);
        }
        let r = parse(&text);
        check_outcome(&text, &r);
        // Pure: the same input gives the same answer.
        prop_assert_eq!(format!("{r:?}"), format!("{:?}", parse(&text)));
    }
}

#[test]
fn valid_snippets_from_the_soup_alphabet_do_load() {
    // Guards the soup test against vacuity: the alphabet can form accepted configs.
    for text in [
        "udp_send_channel { mcast_join = ${A} port = 8649 }",
        "include (\"dir/*.conf\") include (\"inc.conf\")",
        "tcp_accept_channel { port = 8649 acl { default = deny access { ip = 127.0.0.1 mask = 24 action = allow } } }",
    ] {
        let r = parse(text);
        assert!(r.is_ok(), "{text}: {r:?}");
        check_outcome(text, &r);
    }
    assert!(parse("include (\"loop.conf\")").is_err());
}
