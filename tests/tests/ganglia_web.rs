//! The real Ganglia web frontend, in a real browser, over a gmond-rs cluster: Debian's gmetad
//! polls the feed and keeps RRDs, a private PHP 8-patched copy of Debian's ganglia-web
//! (tests/web/prepare-gweb.sh) is served by PHP's built-in web server, and headless Chromium
//! loads the cluster page and one hypervisor's page. It passes when the pages list every host,
//! show the per-VM metrics and the balancer's own metrics, and graph.php draws a PNG from data.
//!
//! Everything runs inside one network namespace of its own (integration_tests::netns, one
//! host): gmetad listens on all addresses, so its ports, the web server and Chromium can see
//! nothing but that namespace's loopback, and dropping the testbed kills every process in it by
//! PID, also when an assertion fails. Screenshots go to `$CARGO_TARGET_TMPDIR/ganglia-web/`
//! (printed); with `UPDATE_SCREENSHOTS=1` they are also copied to docs/screenshots/.
//! The deployment files that go with it are checked here too: configs/gmetad-demo.conf is the
//! gmetad config of the browser test; configs/systemd/*.service must verify, their flags must
//! suit the binaries, and gmond-rs must serve as its unit's unprivileged user; configs/gmond*.conf
//! must load in real gmond and in gmond-rs, libvirt block on or off.
//! Needs root, iproute2, gmetad, rrdtool, ganglia-webfrontend, php-cgi (php-cli) and chromium:
//! the project's test command installs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::model::{Cluster as View, Host};
use ganglia_wire::xml::read_document;
use integration_tests::netns::Cluster;
use integration_tests::{poll_for, repo_root, require_program, Proc};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// gmond-rs's XML port inside the namespace (the namespace is private: fixed ports are free).
const FEED_PORT: u16 = 8649;
const GMETAD_INTERACTIVE_PORT: u16 = 8652;
const WEB_PORT: u16 = 8080;
/// The demo's size: small enough for a quick test, several hosts to list.
const DEMO_HOSTS: usize = 4;
const DEMO_VMS: usize = 12;
/// gmetad's poll interval for the data source, seconds.
const POLL_STEP: u32 = 5;
/// Generous: the first gmetad poll, RRD creation and two RRD updates must all happen.
const DEADLINE: Duration = Duration::from_secs(240);

/// What the feed holds, read from gmond-rs's own XML before any page is opened: the pages are
/// checked against it, so the test follows whatever hosts and VMs the feed simulates.
struct Expect {
    cluster: String,
    hosts: Vec<String>,
    /// The hypervisor whose page is checked: it has VMs and advertises a balancer.
    host: String,
    /// Numeric per-VM metrics on `host` (`<vm>.vcpu_util` ...), graphed on its page.
    vm_metrics: Vec<String>,
    /// Numeric balancer_* metrics on `host`, graphed on its page.
    balancer_graphs: Vec<String>,
    /// String balancer_* and `<vm>.vcpu_state` metrics on `host`: (label ganglia-web prints,
    /// value where it cannot change during the test: balancer_mode's).
    strings: Vec<(String, Option<String>)>,
    /// A `<vm>.vcpu_util` of `host` whose RRD graph.php must draw.
    graph_metric: String,
}

impl Expect {
    /// None until the view is complete: `hosts` hosts, a balancer leader, and a host with a
    /// balancer whose every running VM already has its utilisation metrics (two samples).
    fn from_view(c: &View, hosts: usize) -> Option<Expect> {
        let numeric = |h: &Host, f: &dyn Fn(&str) -> bool| -> Vec<String> {
            let mut v: Vec<String> = h
                .metrics
                .iter()
                .filter(|m| m.ty != "string" && f(&m.name))
                .map(|m| m.name.clone())
                .collect();
            v.sort();
            v
        };
        let is_vm = |n: &str| n.ends_with(".vcpu_util") || n.ends_with(".vmem_util");
        let is_bal = |n: &str| n.starts_with("balancer_");
        // Several hosts, and one with running VMs and a balancer.
        if c.hosts.len() < hosts {
            return None;
        }
        let complete = |h: &Host| {
            h.metrics
                .iter()
                .filter_map(|m| m.name.strip_suffix(".vcpu_num"))
                .all(|vm| {
                    h.metric(&format!("{vm}.vcpu_util")).is_some()
                        && h.metric(&format!("{vm}.vmem_util")).is_some()
                })
        };
        // The balancers have elected a leader; its page is the one checked if it has VMs.
        if !c
            .hosts
            .iter()
            .any(|h| h.metric_f64("balancer_leader") == Some(1.0))
        {
            return None;
        }
        let mut candidates: Vec<&Host> = c
            .hosts
            .iter()
            .filter(|h| {
                h.metric("balancer_mode").is_some()
                    && h.metrics.iter().any(|m| m.name.ends_with(".vcpu_util"))
                    && complete(h)
            })
            .collect();
        candidates.sort_by_key(|h| (h.metric_f64("balancer_leader") != Some(1.0), &h.name));
        let h = *candidates.first()?;
        let strings = h
            .metrics
            .iter()
            .filter(|m| m.ty == "string" && (is_bal(&m.name) || m.name.ends_with(".vcpu_state")))
            .map(|m| {
                let label = m.extra("TITLE").unwrap_or(&m.name).to_owned();
                (label, (m.name == "balancer_mode").then(|| m.val.clone()))
            })
            .collect();
        // A name with a character that escapeshellcmd escapes, such as '~', cannot be graphed
        // by ganglia-web at all (graph.php looks for the escaped file name).
        let graph_metric = h.metrics.iter().find(|m| {
            m.name.ends_with(".vcpu_util")
                && m.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })?;
        let mut hosts: Vec<String> = c.hosts.iter().map(|h| h.name.clone()).collect();
        hosts.sort();
        Some(Expect {
            cluster: c.name.clone(),
            hosts,
            host: h.name.clone(),
            vm_metrics: numeric(h, &is_vm),
            balancer_graphs: numeric(h, &is_bal),
            strings,
            graph_metric: graph_metric.name.clone(),
        })
    }
}

/// The testbed: one namespace with the feed, gmetad and the web server running inside.
struct Bed {
    // Field order is drop order: each process is killed by its PID first, then the namespace
    // is destroyed with anything still inside.
    procs: Vec<Proc>,
    net: Cluster,
    chromium: PathBuf,
    artifacts: PathBuf,
}

impl Bed {
    fn spawn(&mut self, name: &str, program: &Path, args: &[&OsStr]) {
        let p = self.net.spawn(1, name, program, args);
        self.procs.push(p);
    }

    /// Every process started so far must still run (a crash is reported with its log).
    fn assert_running(&mut self) {
        for p in &mut self.procs {
            let name = p.name.clone();
            assert!(
                p.running(),
                "{name} exited; its log:\n{}",
                self.net.log(&name)
            );
        }
    }

    /// `GET path` from the web server, as raw HTTP/1.0 over bash's /dev/tcp inside the
    /// namespace: (status line, headers, body).
    fn http_get(&self, path: &str) -> Option<(String, String, Vec<u8>)> {
        let out = self.net.run(
            1,
            Path::new("timeout"),
            &[
                OsStr::new("60"),
                OsStr::new("bash"),
                OsStr::new("-c"),
                OsStr::new(
                    r#"exec 3<>"/dev/tcp/127.0.0.1/$0" && printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" "$0" >&3 && cat <&3"#,
                ),
                OsStr::new(&WEB_PORT.to_string()),
                OsStr::new(path),
            ],
        );
        let raw = out.stdout;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let body = raw[split + 4..].to_vec();
        let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
        Some((status.to_owned(), headers.to_owned(), body))
    }

    /// Headless Chromium with the machine's flags and a fresh profile; `extra` picks the
    /// output (--dump-dom or --screenshot). Returns stdout.
    fn chromium(&self, url: &str, extra: &[&OsStr]) -> Vec<u8> {
        let profile = self.net.dir().join(format!(
            "chromium-profile-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut user_dir = std::ffi::OsString::from("--user-data-dir=");
        user_dir.push(&profile);
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("120"),
            self.chromium.as_os_str(),
            OsStr::new("--headless"),
            OsStr::new("--no-sandbox"),
            OsStr::new("--disable-gpu"),
            OsStr::new("--disable-quic"),
            OsStr::new("--no-first-run"),
            OsStr::new("--disable-background-networking"),
            OsStr::new("--disable-component-update"),
            OsStr::new("--disable-sync"),
            OsStr::new("--hide-scrollbars"),
            &user_dir,
            // Let the pages' scripts and images finish before the DOM or pixels are taken.
            OsStr::new("--virtual-time-budget=15000"),
        ];
        args.extend_from_slice(extra);
        args.push(OsStr::new(url));
        let out = self.net.run(1, Path::new("timeout"), &args);
        let _ = std::fs::remove_dir_all(&profile);
        assert!(
            out.status.success(),
            "chromium failed on {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn dom(&self, path: &str) -> String {
        let url = format!("http://127.0.0.1:{WEB_PORT}{path}");
        String::from_utf8_lossy(&self.chromium(&url, &[OsStr::new("--dump-dom")])).into_owned()
    }

    /// Polls the page until `missing(dom)` is empty; fails with what is still missing and
    /// keeps the last DOM as an artifact.
    fn page_until_complete(
        &mut self,
        what: &str,
        path: &str,
        missing: impl Fn(&str) -> Vec<String>,
    ) -> String {
        let mut last = (String::new(), Vec::new());
        let got = poll_for(DEADLINE, || {
            self.assert_running();
            let dom = self.dom(path);
            let m = missing(&dom);
            if m.is_empty() {
                return Some(dom);
            }
            last = (dom, m);
            std::thread::sleep(Duration::from_secs(2));
            None
        });
        match got {
            Some(dom) => {
                std::fs::write(self.artifacts.join(format!("{what}.html")), &dom).unwrap();
                dom
            }
            None => {
                let file = self.artifacts.join(format!("{what}-incomplete.html"));
                std::fs::write(&file, &last.0).unwrap();
                panic!(
                    "{what} page ({path}) still lacks {:?} after {DEADLINE:?}; DOM in {}\n\
                     web server log:\n{}",
                    last.1,
                    file.display(),
                    tail(&self.net.log("php"), 40)
                );
            }
        }
    }

    fn screenshot(&self, what: &str, path: &str, (width, height): (u32, u32)) -> PathBuf {
        let file = self.artifacts.join(format!("{what}.png"));
        let _ = std::fs::remove_file(&file);
        let mut shot = std::ffi::OsString::from("--screenshot=");
        shot.push(&file);
        let size = format!("--window-size={width},{height}");
        let url = format!("http://127.0.0.1:{WEB_PORT}{path}");
        self.chromium(&url, &[&shot, OsStr::new(&size)]);
        let png = std::fs::read(&file)
            .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", file.display()));
        png_size(&png).unwrap_or_else(|| panic!("{} is not a PNG", file.display()));
        file
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Width and height of a PNG (signature, then the IHDR chunk), None if it is not one.
fn png_size(b: &[u8]) -> Option<(u32, u32)> {
    const SIG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    if b.len() < 33 || b[..8] != SIG || &b[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(b[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(b[20..24].try_into().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

/// Query-string encoding of the characters Ganglia names may hold.
fn q(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// HTML text escaping as PHP's htmlspecialchars does it for these names.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// configs/gmetad-demo.conf with `rrd_rootdir` set to `rrds` and the data source polled every
/// POLL_STEP seconds; fails if the file no longer has the lines the test relies on.
fn gmetad_conf(rrds: &Path) -> String {
    let shipped = std::fs::read_to_string(repo_root().join("configs/gmetad-demo.conf")).unwrap();
    let want = format!("data_source \"demo\" 15 127.0.0.1:{FEED_PORT}");
    let mut seen = (false, false, false);
    let text: Vec<String> = shipped
        .lines()
        .map(|line| {
            if line == want {
                seen.0 = true;
                format!("data_source \"demo\" {POLL_STEP} 127.0.0.1:{FEED_PORT}")
            } else if line.starts_with("rrd_rootdir ") {
                seen.1 = true;
                format!("rrd_rootdir \"{}\"", rrds.display())
            } else {
                seen.2 |= line == format!("interactive_port {GMETAD_INTERACTIVE_PORT}");
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(
        seen,
        (true, true, true),
        "configs/gmetad-demo.conf lacks `{want}`, rrd_rootdir or interactive_port \
         {GMETAD_INTERACTIVE_PORT}"
    );
    text.join("\n") + "\n"
}

/// Starts the embedded demo in the namespace: simulated hypervisors hv01.. as real gmond-rs
/// daemons on 127.0.0.11.., VMs with per-VM metrics, the balancer; its cluster XML is served on
/// 127.0.0.1:FEED_PORT.
fn start_feed(bed: &mut Bed) {
    bed.spawn(
        "ganglia-demo",
        integration_tests::bin("ganglia-demo"),
        &[
            OsStr::new("--no-tui"),
            OsStr::new("--hosts"),
            OsStr::new(&DEMO_HOSTS.to_string()),
            OsStr::new("--vms"),
            OsStr::new(&DEMO_VMS.to_string()),
            OsStr::new("--port"),
            OsStr::new(&FEED_PORT.to_string()),
            // Longer than the test; the testbed kills it when the test ends.
            OsStr::new("--duration"),
            OsStr::new("3600"),
        ],
    );
}

#[test]
fn ganglia_web_shows_the_cluster_its_vms_and_the_balancer() {
    let gmetad = require_program("gmetad", "gmetad");
    require_program("rrdtool", "rrdtool");
    let php = require_program("php", "php-cli (with ganglia-webfrontend and php-cgi)");
    let chromium = require_program("chromium", "chromium");
    assert!(
        Path::new("/usr/share/ganglia-webfrontend/index.php").exists(),
        "/usr/share/ganglia-webfrontend missing: install Debian's ganglia-webfrontend \
         (tests/run-all.sh does)"
    );
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ganglia-web");
    std::fs::create_dir_all(&artifacts).unwrap();
    let mut bed = Bed {
        procs: Vec::new(),
        net: Cluster::new(1),
        chromium,
        artifacts,
    };

    // 1. The feed, and what it holds.
    start_feed(&mut bed);
    let expect = poll_for(DEADLINE, || {
        bed.assert_running();
        std::thread::sleep(Duration::from_millis(500));
        let doc = read_document(&bed.net.read_tcp(1, "127.0.0.1", FEED_PORT)?).ok()?;
        Expect::from_view(doc.clusters.first()?, DEMO_HOSTS)
    })
    .unwrap_or_else(|| {
        panic!(
            "the feed never showed {DEMO_HOSTS} hosts, a balancer leader and a host with \
             balancer_mode and complete VM metrics; demo log:\n{}",
            tail(&bed.net.log("ganglia-demo"), 40)
        )
    });
    assert!(!expect.vm_metrics.is_empty() && !expect.balancer_graphs.is_empty());
    eprintln!(
        "feed: cluster {:?}, hosts {:?}; checking {}: {} VM metrics, balancer {:?} {:?}",
        expect.cluster,
        expect.hosts,
        expect.host,
        expect.vm_metrics.len(),
        expect.balancer_graphs,
        expect.strings
    );

    // 2. gmetad with the shipped configs/gmetad-demo.conf, only its RRD directory moved to
    //    the scratch dir and its poll interval shortened (a faster test).
    let rrds = bed.net.dir().join("rrds");
    std::fs::create_dir_all(&rrds).unwrap();
    let gconf = bed.net.dir().join("gmetad.conf");
    std::fs::write(&gconf, gmetad_conf(&rrds)).unwrap();
    let pid_file = bed.net.dir().join("gmetad.pid");
    bed.spawn(
        "gmetad",
        &gmetad,
        &[
            OsStr::new("-c"),
            gconf.as_os_str(),
            OsStr::new("-d"),
            OsStr::new("1"),
            OsStr::new("-p"),
            pid_file.as_os_str(),
        ],
    );

    // 3. ganglia-web: a private patched copy, served by PHP's web server on 127.0.0.1.
    let gweb = bed.net.dir().join("gweb");
    let out = std::process::Command::new(repo_root().join("tests/web/prepare-gweb.sh"))
        .arg(&gweb)
        .arg(GMETAD_INTERACTIVE_PORT.to_string())
        .arg(&rrds)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prepare-gweb.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docroot = gweb.join("www");
    // ganglia-web starts a PHP session per request: keep the files out of /var/lib/php.
    let sessions = gweb.join("sessions");
    let mut save_path = std::ffi::OsString::from("session.save_path=");
    save_path.push(&sessions);
    let listen = format!("127.0.0.1:{WEB_PORT}");
    bed.spawn(
        "php",
        &php,
        &[
            // Errors to the server log (checked below), not into the pages; PHP 8.2's
            // deprecation notices about 3.7.5's string interpolation are noise.
            OsStr::new("-d"),
            OsStr::new("display_errors=0"),
            OsStr::new("-d"),
            OsStr::new("log_errors=1"),
            OsStr::new("-d"),
            OsStr::new("error_reporting=8191"),
            OsStr::new("-d"),
            &save_path,
            OsStr::new("-S"),
            OsStr::new(&listen),
            OsStr::new("-t"),
            docroot.as_os_str(),
        ],
    );

    // 4. The cluster page lists every host (the node chooser holds gmetad's host list).
    let c = q(&expect.cluster);
    let cluster_path = format!("/ganglia/?c={c}");
    bed.page_until_complete("cluster", &cluster_path, |dom| {
        expect
            .hosts
            .iter()
            .filter(|h| !dom.contains(&format!("<option value=\"{}\"", html(h))))
            .cloned()
            .collect()
    });

    // 5. The hypervisor's page graphs every per-VM metric and the balancer's numeric metrics
    //    (ganglia-web gives each graph alt="HOST METRIC").
    let h = q(&expect.host);
    let host_path = format!("/ganglia/?c={c}&h={h}");
    let graphs: Vec<&String> = expect
        .vm_metrics
        .iter()
        .chain(&expect.balancer_graphs)
        .collect();
    let graphs_missing = |dom: &str| -> Vec<String> {
        graphs
            .iter()
            .filter(|m| !dom.contains(&format!("alt=\"{} {}\"", html(&expect.host), html(m))))
            .map(|m| m.to_string())
            .collect()
    };
    bed.page_until_complete("host", &host_path, graphs_missing);
    //    Its "Host Overview" (fetched by the page's button) lists the string metrics.
    let overview_path = format!("/ganglia/host_overview.php?h={h}&c={c}");
    bed.page_until_complete("host-overview", &overview_path, |dom| {
        expect
            .strings
            .iter()
            .filter(|(label, val)| {
                let val = val.as_deref().map(html).unwrap_or_default();
                !dom.contains(&format!(">{}</td><td>{val}", html(label)))
            })
            .map(|(l, v)| format!("{l} = {v:?}"))
            .collect()
    });

    // 6. graph.php: the RRD gmetad keeps for a VM metric has data, and is drawn as a PNG.
    let vm_metric = &expect.graph_metric;
    let graph = format!(
        "/ganglia/graph.php?c={c}&h={h}&m={}&r=hour&z=medium",
        q(vm_metric)
    );
    // Screenshots for the README wait for some history, so that the graphs show a line.
    let update_docs = std::env::var_os("UPDATE_SCREENSHOTS").is_some();
    let (want_points, wait) = if update_docs {
        (16, Duration::from_secs(900))
    } else {
        (2, DEADLINE)
    };
    let points = poll_for(wait, || {
        bed.assert_running();
        std::thread::sleep(Duration::from_secs(1));
        let (status, _, body) = bed.http_get(&format!("{graph}&json=1"))?;
        if !status.contains(" 200 ") {
            return None;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        // datapoints are [value, time] pairs; value is "NaN" until gmetad has written data.
        let numeric = text
            .match_indices('[')
            .filter(|(i, _)| text[i + 1..].starts_with(|c: char| c.is_ascii_digit() || c == '-'))
            .count();
        (text.contains("\"datapoints\"") && numeric >= want_points).then_some(text)
    });
    assert!(
        points.is_some(),
        "graph.php?json=1 for {vm_metric} never had {want_points} data points; web server \
         log:\n{}",
        tail(&bed.net.log("php"), 40)
    );
    let (status, headers, png) = bed.http_get(&graph).expect("graph.php answers");
    assert!(status.contains(" 200 "), "graph.php: {status}\n{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: image/png"),
        "graph.php headers: {headers}"
    );
    let (w, hgt) = png_size(&png).unwrap_or_else(|| {
        panic!(
            "graph.php sent no PNG ({} bytes): {:?}",
            png.len(),
            String::from_utf8_lossy(&png[..png.len().min(300)])
        )
    });
    assert!(
        w >= 200 && hgt >= 100 && png.len() > 2000,
        "graph.php PNG {w}x{hgt}, {} bytes",
        png.len()
    );
    std::fs::write(bed.artifacts.join("graph.png"), &png).unwrap();

    // 6b. Issue 15: the RRDs real gmetad wrote from this gmond-rs cluster become a simulator
    //     scenario (`balancer import-rrd`), replayed with a policy (`simulate --scenario DIR`).
    let imported = bed.net.dir().join("imported");
    let import = std::process::Command::new(integration_tests::bin("balancer"))
        .arg("import-rrd")
        .arg("--rrd-root")
        .arg(&rrds)
        .arg("--out")
        .arg(&imported)
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "import-rrd: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    let rec = balancer::sim::recorded::ClusterRecording::load(&imported).unwrap();
    assert_eq!(rec.meta.hosts.len(), DEMO_HOSTS, "{:?}", rec.meta.hosts);
    assert_eq!(rec.meta.interval_s, u64::from(POLL_STEP));
    let sc = rec.to_scenario("imported").unwrap();
    assert!(!sc.vms.is_empty(), "no VM series imported");
    assert!(
        sc.vms.iter().all(|v| v
            .host
            .as_ref()
            .is_some_and(|h| rec.meta.hosts.contains_key(h))),
        "every VM starts on an imported host"
    );
    let report = integration_tests::simulate_recording(&imported, "stabilize");
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["hosts"], DEMO_HOSTS);
    assert_eq!(report["vms"], sc.vms.len());

    // 7. Screenshots, and no PHP fatal error on the way.
    //    The host's own metric groups collapsed, so that the balancer's, the hypervisor's and
    //    the VMs' graphs fit in the picture; taken right after that very page was complete.
    let host_shot_path = format!(
        "{host_path}&mc=3&metric_group=ALLGROUPS_%7C_cpu_%7C_disk_%7C_load_%7C_memory_%7C_network\
         _%7C_process"
    );
    bed.page_until_complete("host-vms", &host_shot_path, graphs_missing);
    let shots = [
        bed.screenshot("host", &host_shot_path, (1600, 2400)),
        bed.screenshot("cluster", &cluster_path, (1400, 1300)),
    ];
    for s in &shots {
        eprintln!("screenshot: {}", s.display());
    }
    if update_docs {
        let docs = repo_root().join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        for s in &shots {
            let name = format!("ganglia-web-{}", s.file_name().unwrap().to_string_lossy());
            std::fs::copy(s, docs.join(&name)).unwrap();
            eprintln!("copied to docs/screenshots/{name}");
        }
    }
    let log = bed.net.log("php");
    let fatal: Vec<&str> = log.lines().filter(|l| l.contains("PHP Fatal")).collect();
    assert!(
        fatal.is_empty(),
        "ganglia-web hit fatal errors:\n{fatal:#?}"
    );
    bed.assert_running();
}

/// A `Key=` line of a shipped unit.
fn unit_key(unit: &str, key: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("configs/systemd").join(unit)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {unit}"))
        .to_owned()
}

/// A shipped unit's ExecStart with `program` for its binary and the files of configs/ for the
/// /etc files it names (/etc/ganglia/gmond.conf, /etc/gmond-rs/balancer-agent.toml).
fn unit_exec(unit: &str, program: &str) -> Vec<String> {
    let exec = unit_key(unit, "ExecStart");
    let mut argv: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        argv[0],
        format!("/usr/local/bin/{}", unit.trim_end_matches(".service"))
    );
    argv[0] = program.to_owned();
    for a in argv.iter_mut() {
        let shipped = match a.as_str() {
            "/etc/ganglia/gmond.conf" => "configs/gmond.conf",
            "/etc/gmond-rs/balancer-agent.toml" => "configs/balancer-agent.toml",
            _ => continue,
        };
        *a = repo_root().join(shipped).display().to_string();
    }
    argv
}

/// gmond-rs as its unit runs it: the unit's command line and user (User=ganglia, no
/// capabilities) with the shipped configs/gmond.conf, i.e. Debian's settings (multicast
/// 239.2.11.71:8649). In a one-host testbed namespace, whose only route out is a bridge with
/// nothing else on it. It must serve its own host with the stock metrics on port 8649.
#[test]
fn gmond_rs_serves_as_its_units_unprivileged_user_with_the_shipped_config() {
    let setpriv = require_program("setpriv", "util-linux");
    let user = unit_key("gmond-rs.service", "User");
    let group = unit_key("gmond-rs.service", "Group");
    let uid = {
        let out = std::process::Command::new("id")
            .args(["-u", &user])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "user {user} missing: Debian's ganglia-monitor creates it"
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let net = Cluster::new(1);
    let argv = unit_exec(
        "gmond-rs.service",
        integration_tests::bin("gmond-rs").to_str().unwrap(),
    );
    let mut args: Vec<std::ffi::OsString> = vec![
        format!("--reuid={user}").into(),
        format!("--regid={group}").into(),
        "--init-groups".into(),
        "--inh-caps=-all".into(),
        "--bounding-set=-all".into(),
    ];
    args.extend(argv.iter().map(Into::into));
    let refs: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let mut d = net.spawn(1, "gmond-rs", &setpriv, &refs);
    let me = poll_for(DEADLINE, || {
        assert!(d.running(), "gmond-rs exited:\n{}", net.log("gmond-rs"));
        std::thread::sleep(Duration::from_millis(500));
        let doc = read_document(&net.read_xml(1, 8649)?).ok()?;
        let h = doc.clusters.first()?.hosts.first()?.clone();
        (h.metric("load_one").is_some() && h.metric("mem_free").is_some()).then_some(h)
    })
    .unwrap_or_else(|| panic!("no own host with stock metrics:\n{}", net.log("gmond-rs")));
    assert_eq!(me.name, "node1");
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace().skip(1).all(|u| u == uid),
        "gmond-rs runs as {uids}, not {user} ({uid})"
    );
}

/// The shipped systemd units pass `systemd-analyze verify` (every key known, every value
/// valid) with their binaries pointed at this build's, and both binaries accept their unit's
/// flags: gmond-rs with -m appended (it parses its flags, lists the metrics and exits; it does
/// not read the file, which the next test checks; run in an empty network namespace all the
/// same), balancer-agent with --help appended (clap rejects an unknown flag before it).
#[test]
fn shipped_systemd_units_verify() {
    let analyze = require_program("systemd-analyze", "systemd");
    let unshare = require_program("unshare", "util-linux");
    let dir = integration_tests::TempDir::new("units");
    let gmond_rs = integration_tests::bin("gmond-rs").to_str().unwrap();
    let agent = integration_tests::bin("balancer-agent").to_str().unwrap();
    let units = repo_root().join("configs/systemd");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&units).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace("/usr/local/bin/gmond-rs", gmond_rs)
            .replace("/usr/local/bin/balancer-agent", agent);
        let name = path.file_name().unwrap().to_owned();
        let copy = dir.path().join(&name);
        std::fs::write(&copy, &text).unwrap();
        let out = std::process::Command::new(&analyze)
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {}: {stderr}",
            path.display()
        );
        names.push(name.to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(names, ["balancer-agent.service", "gmond-rs.service"]);

    // The units read /etc/ganglia/gmond.conf and /etc/gmond-rs/balancer-agent.toml; the files
    // shipped in configs/ stand in for them.
    // balancer-agent: its flags must exist (clap rejects an unknown one before --help).
    let agent_argv = unit_exec("balancer-agent.service", agent);
    let out = std::process::Command::new(&agent_argv[0])
        .args(&agent_argv[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{agent_argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let argv = unit_exec("gmond-rs.service", gmond_rs);
    let out = std::process::Command::new(&unshare)
        .arg("-n")
        .args(&argv)
        .arg("-m")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.contains("load_one"),
        "{argv:?} -m: {}{}",
        listed,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// configs/gmond.conf with its commented libvirt_module block switched on.
fn with_libvirt_enabled(text: &str) -> String {
    let start = text
        .find("Remove the comment markers to enable it:")
        .expect("the libvirt block's comment");
    let end = start
        + text[start..]
            .find("*/")
            .expect("end of the libvirt comment");
    let open = start + "Remove the comment markers to enable it:".len();
    format!(
        "{} */{}{}",
        &text[..open],
        &text[open..end],
        &text[end + 2..]
    )
}

/// The shipped gmond.conf files load in real gmond 3.7.2 (`gmond -c FILE -m` parses the whole
/// file and loads the modules, then lists the metrics and exits; run in an empty network
/// namespace all the same) and in gmond-rs's config loader, also with their commented
/// libvirt_module block switched on: gmond-rs then runs the module with the block's settings,
/// and real gmond still parses the file (it cannot load that module and says so at start-up).
#[test]
fn shipped_gmond_confs_load_in_gmond_and_gmond_rs() {
    let gmond = require_program("gmond", "ganglia-monitor");
    let unshare = require_program("unshare", "util-linux");
    let dir = integration_tests::TempDir::new("confs");
    let real_gmond = |file: &Path| {
        std::process::Command::new(&unshare)
            .arg("-n")
            .arg(&gmond)
            .arg("-c")
            .arg(file)
            .arg("-m")
            .output()
            .unwrap()
    };
    // A file that does not parse must fail, or the checks below prove nothing.
    let broken = dir.path().join("broken.conf");
    std::fs::write(&broken, "globals {\n  daemonize = \n").unwrap();
    assert!(
        !real_gmond(&broken).status.success(),
        "gmond accepted a broken file"
    );
    assert!(gmond_conf::parse_str("globals {\n  daemonize = \n", "broken").is_err());

    for name in ["gmond.conf", "gmond-unicast.conf"] {
        let path = repo_root().join("configs").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let on = with_libvirt_enabled(&text);
        let enabled = dir.path().join(format!("libvirt-{name}"));
        std::fs::write(&enabled, &on).unwrap();
        for (file, text, libvirt) in [(&path, &text, false), (&enabled, &on, true)] {
            let out = real_gmond(file);
            let listed = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && listed.contains("load_one"),
                "gmond -c {} -m: {listed}{}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let cfg = gmond_conf::parse_str(text, &file.display().to_string())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
                .config;
            let module = cfg.libvirt_module();
            assert_eq!(module.is_some(), libvirt, "{}", file.display());
            if let Some(m) = module {
                assert_eq!(m.uri, "qemu:///system");
                assert_eq!(m.collect_every, Duration::from_secs(20));
            }
        }
    }
}
