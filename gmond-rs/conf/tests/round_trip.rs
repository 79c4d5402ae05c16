//! `render` then parse gives back the same `Config`, for every config we have, and real gmond
//! accepts the rendered text.

// Test helpers outside #[test] fns: a panic is how they report failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use gmond_conf::{parse_str_with, render, Config, LoadOptions, MemSource};

fn parse(text: &str, name: &str) -> Config {
    parse_str_with(text, name, &MemSource::new(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}:\n{e}"))
        .config
}

/// Every config file of the crate's tests and of configs/ that loads without includes.
fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["tests/data", "tests/golden/ok", "../../configs"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            // configs/ also ships gmetad's snippet for the demo and gmond-rs.conf (not gmond
            // configs).
            let gmetad = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gmetad") || n == "gmond-rs.conf");
            if p.extension().and_then(|e| e.to_str()) == Some("conf")
                && !p.ends_with("include-glob.conf")
                && !gmetad
            {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn render_then_parse_is_identity() {
    let files = corpus();
    assert!(files.len() >= 10, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        let config = parse(&text, &name);
        let rendered = render(&config);
        let again = parse(&rendered, &format!("render of {name}"));
        assert_eq!(again, config, "{name} rendered as:\n{rendered}");
        // Rendering is a fixed point after one round.
        assert_eq!(render(&again), rendered, "{name}");
    }
}

#[test]
fn default_text_renders_to_something_real_gmond_accepts() {
    let config = parse(gmond_conf::default_config_text(), "default");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.conf");
    std::fs::write(&file, render(&config)).unwrap();
    let gmond = "/usr/sbin/gmond";
    assert!(
        Path::new(gmond).exists(),
        "{gmond} is missing: install Debian package ganglia-monitor"
    );
    // -b parses, loads modules and sets up groups, then exits before any socket exists.
    let out = std::process::Command::new(gmond)
        .arg("-c")
        .arg(&file)
        .arg("-b")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

mod generated {
    use std::net::IpAddr;
    use std::time::Duration;

    use gmond_conf::{
        render, AccessEntry, Acl, AclAction, CollectionGroup, Config, Family, Globals, MetricMatch,
        MetricSelector, Module, ModuleParam, NamePattern, SendTarget, Subnet, TcpAcceptChannel,
        UdpRecvChannel, UdpSendChannel,
    };
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z0-9_./:-]{0,12}"]
    }

    fn secs() -> impl Strategy<Value = Duration> {
        (0u64..=u64::from(u32::MAX)).prop_map(Duration::from_secs)
    }

    fn globals() -> impl Strategy<Value = Globals> {
        (
            (
                any::<bool>(),
                any::<bool>(),
                text(),
                0u32..=i32::MAX as u32,
                1u16..,
            ),
            (
                0u8..3,
                any::<bool>(),
                proptest::option::of(1u64..=u64::from(u32::MAX)),
            ),
            (
                secs(),
                secs(),
                any::<bool>(),
                proptest::option::of(1u64..100_000),
            ),
            proptest::collection::vec(proptest::option::of(text()), 4),
        )
            .prop_map(
                |((d, s, user, dl, len), (dm, extra, dmax), (tmax, clean, gexec, smi), o)| {
                    Globals {
                        daemonize: d,
                        setuid: s,
                        user,
                        debug_level: dl,
                        max_udp_msg_len: len,
                        // Never both deaf and mute: that config is refused.
                        mute: dm == 1,
                        deaf: dm == 2,
                        allow_extra_data: extra,
                        host_dmax: dmax.map(Duration::from_secs),
                        host_tmax: tmax,
                        cleanup_threshold: clean,
                        gexec,
                        send_metadata_interval: smi.map(Duration::from_secs),
                        module_dir: o[0].clone(),
                        override_hostname: o[1].clone(),
                        override_ip: o[2].clone(),
                        tags: o[3].clone(),
                    }
                },
            )
    }

    fn acl() -> impl Strategy<Value = Option<Acl>> {
        let entry = (
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            any::<u128>(),
            1u32..=128,
            0u8..4,
        )
            .prop_map(|(n4, m4, allow, n6, bits, kind)| AccessEntry {
                subnet: if kind == 0 {
                    let mask = u128::MAX << (128 - bits);
                    Subnet::V6 {
                        network: n6 & mask,
                        mask,
                    }
                } else {
                    Subnet::V4 {
                        network: n4 & m4,
                        mask: m4,
                    }
                },
                action: if allow {
                    AclAction::Allow
                } else {
                    AclAction::Deny
                },
            });
        proptest::option::of(
            (any::<bool>(), proptest::collection::vec(entry, 1..4)).prop_map(|(allow, entries)| {
                Acl {
                    default: if allow {
                        AclAction::Allow
                    } else {
                        AclAction::Deny
                    },
                    entries,
                }
            }),
        )
    }

    fn mcast() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (224u8..=239, any::<[u8; 3]>()).prop_map(|(a, r)| IpAddr::from([a, r[0], r[1], r[2]])),
            any::<[u8; 15]>().prop_map(|r| {
                let mut b = [0xffu8; 16];
                b[1..].copy_from_slice(&r);
                IpAddr::from(b)
            }),
        ]
    }

    fn send() -> impl Strategy<Value = UdpSendChannel> {
        (
            prop_oneof![
                mcast().prop_map(SendTarget::Multicast),
                text().prop_map(SendTarget::Unicast)
            ],
            1u16..,
            any::<u8>(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            any::<bool>(),
        )
            .prop_map(|(target, port, ttl, mcast_if, bind, bh)| UdpSendChannel {
                target,
                port,
                ttl,
                mcast_if,
                bind_hostname: bh && bind.is_none(),
                bind,
            })
    }

    fn family() -> impl Strategy<Value = Family> {
        prop_oneof![Just(Family::Inet4), Just(Family::Inet6)]
    }

    fn recv() -> impl Strategy<Value = UdpRecvChannel> {
        (
            proptest::option::of(mcast()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            1u16..,
            family(),
            any::<bool>(),
            proptest::option::of(1u32..=i32::MAX as u32),
            acl(),
        )
            .prop_map(
                |(mcast_join, mcast_if, bind, port, family, retry_bind, buffer, acl)| {
                    UdpRecvChannel {
                        mcast_join,
                        mcast_if,
                        bind,
                        port,
                        family,
                        retry_bind,
                        buffer,
                        acl,
                    }
                },
            )
    }

    fn tcp() -> impl Strategy<Value = TcpAcceptChannel> {
        (
            proptest::option::of(text()),
            1u16..,
            proptest::option::of(text()),
            family(),
            proptest::option::of(0u64..=i64::MAX as u64),
            any::<bool>(),
            acl(),
        )
            .prop_map(
                |(bind, port, interface, family, timeout, gzip_output, acl)| TcpAcceptChannel {
                    bind,
                    port,
                    interface,
                    family,
                    timeout: timeout.map(Duration::from_micros),
                    gzip_output,
                    acl,
                },
            )
    }

    fn module(i: usize) -> impl Strategy<Value = Module> {
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            any::<bool>(),
            proptest::option::of(text()),
            proptest::collection::vec(proptest::option::of(text()), 0..3),
        )
            .prop_map(
                move |(name, path, language, enabled, params, values)| Module {
                    // Unique names: a module listed twice is refused.
                    name: format!("{i}{name}"),
                    path,
                    language,
                    enabled,
                    params,
                    param: values
                        .into_iter()
                        .enumerate()
                        .map(|(k, value)| ModuleParam {
                            name: format!("p{k}"),
                            value,
                        })
                        .collect(),
                },
            )
    }

    fn selector() -> impl Strategy<Value = MetricSelector> {
        let threshold = proptest::option::of(prop_oneof![0.0f64..1e9, Just(f64::INFINITY)]);
        prop_oneof![
            (text(), threshold.clone(), proptest::option::of(text())).prop_map(|(n, v, t)| {
                MetricSelector {
                    matcher: MetricMatch::Name(n),
                    value_threshold: v,
                    title: t,
                }
            }),
            (
                prop_oneof![
                    Just("^cpu_(.*)$"),
                    Just("disk"),
                    Just("(a)|(b)"),
                    Just("x\\d+")
                ],
                threshold,
                proptest::option::of("[a-z \\\\1-9]{0,10}".prop_filter("no bad escape", |t| {
                    let mut chars = t.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' && !matches!(chars.next(), None | Some('1'..='9')) {
                            return false;
                        }
                    }
                    true
                })),
            )
                .prop_map(|(p, v, t)| MetricSelector {
                    matcher: MetricMatch::Pattern(NamePattern::new(p).unwrap()),
                    value_threshold: v,
                    title: t,
                }),
        ]
    }

    fn group() -> impl Strategy<Value = CollectionGroup> {
        (
            any::<bool>(),
            secs(),
            secs(),
            proptest::collection::vec(selector(), 0..4),
        )
            .prop_map(|(collect_once, collect_every, time_threshold, metrics)| {
                CollectionGroup {
                    collect_once,
                    collect_every,
                    time_threshold,
                    metrics,
                }
            })
    }

    fn config() -> impl Strategy<Value = Config> {
        (
            globals(),
            proptest::collection::vec(text(), 5),
            proptest::collection::vec(send(), 0..3),
            proptest::collection::vec(recv(), 0..3),
            proptest::collection::vec(tcp(), 0..3),
            (module(0), module(1), 0usize..3),
            proptest::collection::vec(group(), 0..3),
            (1u16.., proptest::collection::vec(any::<bool>(), 7)),
        )
            .prop_map(
                |(globals, s, udp_send, udp_recv, tcp_accept, (m0, m1, nm), groups, (port, b))| {
                    Config {
                        globals,
                        cluster: gmond_conf::Cluster {
                            name: s[0].clone(),
                            owner: s[1].clone(),
                            latlong: s[2].clone(),
                            url: s[3].clone(),
                        },
                        host: gmond_conf::Host {
                            location: s[4].clone(),
                        },
                        udp_send,
                        udp_recv,
                        tcp_accept,
                        modules: [m0, m1].into_iter().take(nm).collect(),
                        collection_groups: groups,
                        sflow: gmond_conf::Sflow {
                            udp_port: port,
                            accept_vm_metrics: b[0],
                            accept_http_metrics: b[1],
                            multiple_http_instances: b[2],
                            accept_memcache_metrics: b[3],
                            multiple_memcache_instances: b[4],
                            accept_jvm_metrics: b[5],
                            multiple_jvm_instances: b[6],
                        },
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn any_valid_config_survives_render_and_parse(c in config()) {
            let text = render(&c);
            let back = super::parse(&text, "generated.conf");
            prop_assert_eq!(back, c, "rendered:\n{}", text);
        }
    }
}
