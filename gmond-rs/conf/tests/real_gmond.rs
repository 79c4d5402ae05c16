//! Differential tests against the real gmond 3.7.2 parser.
//!
//! `gmond -c FILE -b` parses the config, loads the modules, sets up the collection groups,
//! prints a bandwidth estimate and exits before it creates any socket, daemonizes or drops
//! privileges (gmond.c main: the `-b` branch comes before `daemonize_if_necessary` and
//! `setup_listen_channels_pollset`), so it is safe to run here.

// Test helpers outside #[test] fns: a panic is how they report failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use gmond_conf::{default_config_text, parse_str_with, LoadOptions, MemSource};

const GMOND: &str = "/usr/sbin/gmond";

/// Runs real gmond's parser on `text`; Ok(stdout) when it accepts the file.
fn real_gmond_accepts(text: &str) -> Result<String, String> {
    assert!(
        Path::new(GMOND).exists(),
        "{GMOND} is missing: install Debian package ganglia-monitor"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gmond.conf");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(GMOND)
        .arg("-c")
        .arg(&file)
        .arg("-b")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{stderr}"))
    }
}

fn we_accept(text: &str) -> Result<(), String> {
    parse_str_with(
        text,
        "snippet.conf",
        &MemSource::new(),
        &LoadOptions::default(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn real_gmond_accepts_our_default_text() {
    let out = real_gmond_accepts(default_config_text()).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.trim_end().ends_with("bytes/sec"), "{out}");
    // Same groups and modules as gmond's own -t text, hence the same bandwidth estimate.
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ganglia-3.7.2-gmond-t.conf"),
    )
    .unwrap();
    assert_eq!(out, real_gmond_accepts(&fixture).unwrap());
}

#[test]
fn real_gmond_accepts_every_shipped_config() {
    let mut seen = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        // configs/ also ships gmetad's snippet for the demo and gmond-rs's own settings
        // (gmond-rs.conf, which real gmond is never given).
        let gmond_conf = path.extension().and_then(|e| e.to_str()) == Some("conf")
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gmond") && n != "gmond-rs.conf");
        if !gmond_conf {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = real_gmond_accepts(&text) {
            panic!("real gmond rejects {}: {e}", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 2);
}

/// Snippets where syntax and typing decide; gmond -b and we must agree on accept/reject.
const AGREE: &[(&str, bool)] = &[
    ("globals { daemonize = YES }", true),
    ("GLOBALS { Daemonize = off  MUTE = True }", true),
    ("\"globals\" { \"mute\" = \"no\" }", true),
    ("globals { debug_level = 0x0 host_dmax = 010 }", true),
    ("globals { host_tmax = \"\" }", true),
    ("cluster { name = 'single quoted' owner = \"tab\\there\" }", true),
    ("cluster { url = http://example.org/ganglia/ }", true),
    ("globals { } globals { mute = yes } globals { mute = no }", true),
    ("globals { mute = no }\r\nhost { location = \"1,2,3\" }\r\n", true),
    ("# only a comment", true),
    ("// another comment\n/* and a block */", true),
    ("globals { mute = no } /* never closed", true),
    ("include (\"/nonexistent-gmond-rs-dir/*.conf\")", true),
    (
        "collection_group { metric { name_match = \"^cpu_([a-z]+)$\" title = '\\1 usage' } }",
        true,
    ),
    (
        "modules { module { name = \"x_module\" enabled = no param a { value = 1 } param A { value = 2 } } }",
        true,
    ),
    ("collection_group { metric { name = \"load_one\" value_threshold = \"1e2\" } }", true),
    ("globals { foo = 1 }", false),
    ("bogus { }", false),
    ("globals { mute = maybe }", false),
    ("globals { debug_level = 1.5 }", false),
    ("globals { debug_level = 08 }", false),
    ("globals { debug_level = 12abc }", false),
    ("include (\"/nonexistent-gmond-rs-dir/file.conf\")", false),
    ("globals { mute = no } }", false),
    ("}", false),
    ("globals { mute += yes }", false),
    ("cluster name { }", false),
    ("param x { value = 1 }", false),
    ("cluster { name = \"unterminated }", false),
    ("cluster { name = \"bad \\9 escape\" }", false),
    ("collection_group { metric { value_threshold = abc } }", false),
    ("globals mute = yes", false),
    ("globals { mute }", false),
    ("globals { include (\"/etc/hostname\") }", false),
    ("modules { module { param { value = 1 } } }", false),
    // gmond crashes on a metric without a name (strlen of NULL); we report it.
    ("collection_group { metric { title = \"no name\" } }", false),
];

#[test]
fn we_agree_with_real_gmond_on_syntax() {
    let mut disagreements = Vec::new();
    for (text, expected) in AGREE {
        let real = real_gmond_accepts(text);
        let ours = we_accept(text);
        if real.is_ok() != *expected || ours.is_ok() != *expected {
            disagreements.push(format!(
                "{text:?}: expected accept={expected}, real gmond: {real:?}, gmond-rs: {ours:?}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Where gmond-rs is deliberately stricter: gmond accepts these, we refuse to start.
const STRICTER: &[&str] = &[
    // libconfuse ends an open section silently at end of file; we call it unterminated.
    "globals { mute = no",
    "modules { module { name = \"core_metrics\" }",
    // An unclosed "..." where a name is expected just ends libconfuse's input.
    "host { location = \"a\" \"oops }",
    // gmond only notices these once it starts its sockets (or never).
    "globals { deaf = yes mute = yes }",
    "udp_send_channel { mcast_join = 239.2.11.71 }",
    "udp_send_channel { host = \"127.0.0.1\" port = 8649 bind = 127.0.0.1 bind_hostname = yes }",
    "tcp_accept_channel { port = 70000 }",
];

#[test]
fn where_we_are_stricter_than_real_gmond() {
    for text in STRICTER {
        assert!(
            real_gmond_accepts(text).is_ok(),
            "real gmond rejects {text:?}"
        );
        assert!(we_accept(text).is_err(), "gmond-rs accepts {text:?}");
    }
}

/// Small deterministic generator of config-shaped text (no shrinking needed: each case runs
/// real gmond, and a failure prints the whole input).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const SECTIONS: &[(&str, &[&str])] = &[
    (
        "globals",
        &[
            "daemonize",
            "setuid",
            "user",
            "debug_level",
            "max_udp_msg_len",
            "host_dmax",
            "gexec",
            "tags",
        ],
    ),
    ("cluster", &["name", "owner", "latlong", "url"]),
    ("host", &["location"]),
    (
        "udp_send_channel",
        &["mcast_join", "host", "port", "ttl", "bind", "mcast_if"],
    ),
    (
        "udp_recv_channel",
        &["mcast_join", "port", "bind", "retry_bind", "buffer"],
    ),
    (
        "tcp_accept_channel",
        &["port", "bind", "timeout", "gzip_output"],
    ),
    ("sflow", &["udp_port", "accept_vm_metrics"]),
];
const VALUES: &[&str] = &[
    "yes",
    "no",
    "\"yes\"",
    "'no'",
    "8649",
    "\"8649\"",
    "0x10",
    "010",
    "08",
    "-1",
    "1.5",
    "\"\"",
    "\"a b\"",
    "'q\\'s'",
    "239.2.11.71",
    "127.0.0.1",
    "\"x\\ty\"",
    "\"\\101\"",
    "\"\\9\"",
    "abc",
    "a/b//c",
    "TRUE",
    "off",
    "1e3",
    "\"${GMOND_RS_UNSET:-1}\"",
    "12abc",
    "\"\\x4g\"",
];
/// Values of the right type for `key`, so that most generated files are valid.
fn good_values(key: &str) -> &'static [&'static str] {
    const BOOLS: &[&str] = &["yes", "no", "\"yes\"", "'no'", "TRUE", "off"];
    const INTS: &[&str] = &["8649", "\"8649\"", "0x10", "010", "-1", "\"\"", "20"];
    match key {
        "daemonize" | "setuid" | "gexec" | "retry_bind" | "gzip_output" | "accept_vm_metrics" => {
            BOOLS
        }
        "debug_level" | "max_udp_msg_len" | "host_dmax" | "port" | "ttl" | "buffer" | "timeout"
        | "udp_port" => INTS,
        _ => VALUES,
    }
}

const SEPS: &[&str] = &[
    " ",
    "\n",
    "  ",
    " # c\n",
    " /* c */ ",
    " // c\n",
    "\t",
    "\r\n",
];

fn gen_config(g: &mut Gen) -> String {
    let mut parts = Vec::new();
    for _ in 0..1 + g.below(4) {
        let (sec, keys) = SECTIONS[g.below(SECTIONS.len())];
        let mut items = Vec::new();
        for _ in 0..g.below(5) {
            let mut key = g.pick(keys).to_string();
            match g.below(30) {
                0..=3 => key = key.to_uppercase(),
                4 => key.push('x'),
                _ => {}
            }
            let v = if g.below(12) == 0 {
                g.pick(VALUES)
            } else {
                g.pick(good_values(&key))
            };
            items.push(match g.below(40) {
                0 => format!("{key} += {v}"),
                1 => format!("{key} {v}"),
                2 => format!("{key} = {{ {v}, {} }}", g.pick(VALUES)),
                _ => format!("{key} = {v}"),
            });
        }
        let sep = g.pick(SEPS);
        let open = match g.below(16) {
            0 => "title {",
            1 => "(",
            _ => "{",
        };
        let close = match g.below(16) {
            0 => "} }",
            _ => "}",
        };
        parts.push(format!("{sec} {open} {} {close}", items.join(sep)));
        if g.below(8) == 0 {
            parts.push(
                g.pick(&[
                    "include (\"/nonexistent-gmond-rs/*.conf\")",
                    "include (\"/nonexistent-gmond-rs/a.conf\")",
                    "include ()",
                    "include (\"a\", \"b\")",
                    "modules { module { name = \"m\" param a { value = 1 } } }",
                    "modules { module { name = \"m\" param { value = 1 } } }",
                    "collection_group { collect_every = x metric { name = \"cpu_user\" } }",
                    "collection_group { metric { name = \"cpu_user\" value_threshold = x } }",
                ])
                .to_string(),
            );
        }
    }
    let sep = g.pick(SEPS);
    parts.join(sep)
}

/// Our errors that gmond also raises while parsing (the rest it checks later, or never).
fn we_reject_at_parse_level(text: &str) -> Option<String> {
    let errs = match parse_str_with(text, "gen.conf", &MemSource::new(), &LoadOptions::default()) {
        Ok(_) => return None,
        Err(e) => e.errors,
    };
    let parse_level: Vec<String> = errs
        .iter()
        .filter(|e| match e {
            gmond_conf::ConfigError::BadValue { expected, .. } => {
                ["integer", "floating point", "boolean"]
                    .iter()
                    .any(|t| expected.starts_with(t))
            }
            gmond_conf::ConfigError::OutOfRange { .. }
            | gmond_conf::ConfigError::Invalid { .. } => false,
            _ => true,
        })
        .map(|e| e.to_string())
        .collect();
    (!parse_level.is_empty()).then(|| parse_level.join("; "))
}

#[test]
fn generated_configs_agree_with_real_gmond() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let (mut compared, mut rejected, mut disagreements) = (0, 0, Vec::new());
    for _ in 0..250 {
        let text = gen_config(&mut g);
        let ours = we_reject_at_parse_level(&text);
        // Deliberate differences (see STRICTER): unclosed section or "..." at end of file.
        if ours
            .as_deref()
            .is_some_and(|e| e.contains("is not closed") || e.contains("unterminated string"))
        {
            continue;
        }
        let real = real_gmond_accepts(&text);
        compared += 1;
        rejected += usize::from(real.is_err());
        if real.is_ok() != ours.is_none() {
            disagreements.push(format!(
                "{text:?}\n  real gmond: {real:?}\n  gmond-rs: {ours:?}"
            ));
        }
    }
    assert!(
        compared > 150,
        "generator produced too few comparable cases: {compared}"
    );
    // Both outcomes must be well represented, or agreement would prove little.
    assert!(
        rejected > 30 && compared - rejected > 30,
        "{rejected} of {compared} rejected"
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
