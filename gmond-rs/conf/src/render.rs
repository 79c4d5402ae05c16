//! [`Config`] back to gmond.conf text that both gmond-rs and real gmond read as the same config.
//!
//! Used to show the effective config (includes merged, defaults filled in) and, in tests, to
//! check that resolving is consistent: `parse(render(c)) == c`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::acl::{Acl, AclAction, Subnet};
use crate::collect::MetricMatch;
use crate::config::{Config, Family, SendTarget};

/// Renders `config` as gmond.conf text with every option spelled out.
pub fn render(config: &Config) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the Result only exists for the fmt::Write signature.
    let _ = render_into(config, &mut out);
    out
}

fn render_into(c: &Config, o: &mut String) -> std::fmt::Result {
    let g = &c.globals;
    writeln!(o, "globals {{")?;
    writeln!(o, "  daemonize = {}", yn(g.daemonize))?;
    writeln!(o, "  setuid = {}", yn(g.setuid))?;
    writeln!(o, "  user = {}", q(&g.user))?;
    writeln!(o, "  debug_level = {}", g.debug_level)?;
    writeln!(o, "  max_udp_msg_len = {}", g.max_udp_msg_len)?;
    writeln!(o, "  mute = {}", yn(g.mute))?;
    writeln!(o, "  deaf = {}", yn(g.deaf))?;
    writeln!(o, "  allow_extra_data = {}", yn(g.allow_extra_data))?;
    writeln!(o, "  host_dmax = {}", secs(g.host_dmax))?;
    writeln!(o, "  host_tmax = {}", g.host_tmax.as_secs())?;
    writeln!(o, "  cleanup_threshold = {}", g.cleanup_threshold.as_secs())?;
    writeln!(o, "  gexec = {}", yn(g.gexec))?;
    writeln!(
        o,
        "  send_metadata_interval = {}",
        secs(g.send_metadata_interval)
    )?;
    opt_str(o, "module_dir", g.module_dir.as_deref())?;
    opt_str(o, "override_hostname", g.override_hostname.as_deref())?;
    opt_str(o, "override_ip", g.override_ip.as_deref())?;
    opt_str(o, "tags", g.tags.as_deref())?;
    writeln!(o, "}}\n")?;

    writeln!(o, "cluster {{")?;
    writeln!(o, "  name = {}", q(&c.cluster.name))?;
    writeln!(o, "  owner = {}", q(&c.cluster.owner))?;
    writeln!(o, "  latlong = {}", q(&c.cluster.latlong))?;
    writeln!(o, "  url = {}", q(&c.cluster.url))?;
    writeln!(o, "}}\n")?;
    writeln!(o, "host {{\n  location = {}\n}}\n", q(&c.host.location))?;

    for s in &c.udp_send {
        writeln!(o, "udp_send_channel {{")?;
        match &s.target {
            SendTarget::Multicast(ip) => writeln!(o, "  mcast_join = {}", q(&ip.to_string()))?,
            SendTarget::Unicast(h) => writeln!(o, "  host = {}", q(h))?,
        }
        writeln!(o, "  port = {}", s.port)?;
        writeln!(o, "  ttl = {}", s.ttl)?;
        opt_str(o, "mcast_if", s.mcast_if.as_deref())?;
        opt_str(o, "bind", s.bind.as_deref())?;
        writeln!(o, "  bind_hostname = {}", yn(s.bind_hostname))?;
        writeln!(o, "}}\n")?;
    }
    for r in &c.udp_recv {
        writeln!(o, "udp_recv_channel {{")?;
        if let Some(ip) = r.mcast_join {
            writeln!(o, "  mcast_join = {}", q(&ip.to_string()))?;
        }
        opt_str(o, "mcast_if", r.mcast_if.as_deref())?;
        opt_str(o, "bind", r.bind.as_deref())?;
        writeln!(o, "  port = {}", r.port)?;
        writeln!(o, "  family = {}", family(r.family))?;
        writeln!(o, "  retry_bind = {}", yn(r.retry_bind))?;
        writeln!(o, "  buffer = {}", r.buffer.unwrap_or(0))?;
        acl(o, r.acl.as_ref())?;
        writeln!(o, "}}\n")?;
    }
    for t in &c.tcp_accept {
        writeln!(o, "tcp_accept_channel {{")?;
        opt_str(o, "bind", t.bind.as_deref())?;
        writeln!(o, "  port = {}", t.port)?;
        opt_str(o, "interface", t.interface.as_deref())?;
        writeln!(o, "  family = {}", family(t.family))?;
        let timeout = t
            .timeout
            .map_or(-1, |d| i128::try_from(d.as_micros()).unwrap_or(-1));
        writeln!(o, "  timeout = {timeout}")?;
        writeln!(o, "  gzip_output = {}", yn(t.gzip_output))?;
        acl(o, t.acl.as_ref())?;
        writeln!(o, "}}\n")?;
    }

    writeln!(o, "modules {{")?;
    for m in &c.modules {
        writeln!(o, "  module {{")?;
        writeln!(o, "    name = {}", q(&m.name))?;
        if let Some(p) = &m.path {
            writeln!(o, "    path = {}", q(p))?;
        }
        if let Some(l) = &m.language {
            writeln!(o, "    language = {}", q(l))?;
        }
        writeln!(o, "    enabled = {}", yn(m.enabled))?;
        if let Some(p) = &m.params {
            writeln!(o, "    params = {}", q(p))?;
        }
        for p in &m.param {
            match &p.value {
                Some(v) => writeln!(o, "    param {} {{ value = {} }}", q(&p.name), q(v))?,
                None => writeln!(o, "    param {} {{ }}", q(&p.name))?,
            }
        }
        writeln!(o, "  }}")?;
    }
    writeln!(o, "}}\n")?;

    for grp in &c.collection_groups {
        writeln!(o, "collection_group {{")?;
        writeln!(o, "  collect_once = {}", yn(grp.collect_once))?;
        writeln!(o, "  collect_every = {}", grp.collect_every.as_secs())?;
        writeln!(o, "  time_threshold = {}", grp.time_threshold.as_secs())?;
        for m in &grp.metrics {
            writeln!(o, "  metric {{")?;
            match &m.matcher {
                MetricMatch::Name(n) => writeln!(o, "    name = {}", q(n))?,
                MetricMatch::Pattern(p) => writeln!(o, "    name_match = {}", q(p.as_str()))?,
            }
            if let Some(v) = m.value_threshold {
                // `{:?}` prints the shortest text that reads back as the same f64.
                writeln!(o, "    value_threshold = {v:?}")?;
            }
            if let Some(t) = &m.title {
                writeln!(o, "    title = {}", q(t))?;
            }
            writeln!(o, "  }}")?;
        }
        writeln!(o, "}}\n")?;
    }

    let s = &c.sflow;
    writeln!(o, "sflow {{")?;
    writeln!(o, "  udp_port = {}", s.udp_port)?;
    writeln!(o, "  accept_vm_metrics = {}", yn(s.accept_vm_metrics))?;
    writeln!(o, "  accept_http_metrics = {}", yn(s.accept_http_metrics))?;
    writeln!(
        o,
        "  multiple_http_instances = {}",
        yn(s.multiple_http_instances)
    )?;
    writeln!(
        o,
        "  accept_memcache_metrics = {}",
        yn(s.accept_memcache_metrics)
    )?;
    writeln!(
        o,
        "  multiple_memcache_instances = {}",
        yn(s.multiple_memcache_instances)
    )?;
    writeln!(o, "  accept_jvm_metrics = {}", yn(s.accept_jvm_metrics))?;
    writeln!(
        o,
        "  multiple_jvm_instances = {}",
        yn(s.multiple_jvm_instances)
    )?;
    writeln!(o, "}}")
}

fn acl(o: &mut String, acl: Option<&Acl>) -> std::fmt::Result {
    let Some(acl) = acl else { return Ok(()) };
    writeln!(o, "  acl {{")?;
    writeln!(o, "    default = {}", action(acl.default))?;
    for e in &acl.entries {
        let (ip, mask) = match e.subnet {
            Subnet::V4 { network, mask } => (
                Ipv4Addr::from(network).to_string(),
                Ipv4Addr::from(mask).to_string(),
            ),
            // IPv6 masks only come from a bit count, so they are contiguous.
            Subnet::V6 { network, mask } => (
                Ipv6Addr::from(network).to_string(),
                mask.count_ones().to_string(),
            ),
        };
        writeln!(
            o,
            "    access {{ ip = {} mask = {} action = {} }}",
            q(&ip),
            q(&mask),
            action(e.action)
        )?;
    }
    writeln!(o, "  }}")
}

fn action(a: AclAction) -> &'static str {
    match a {
        AclAction::Allow => "\"allow\"",
        AclAction::Deny => "\"deny\"",
    }
}

fn family(f: Family) -> &'static str {
    match f {
        Family::Inet4 => "inet4",
        Family::Inet6 => "inet6",
    }
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn secs(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| d.as_secs())
}

fn opt_str(o: &mut String, key: &str, v: Option<&str>) -> std::fmt::Result {
    match v {
        Some(v) => writeln!(o, "  {key} = {}", q(v)),
        None => Ok(()),
    }
}

/// A double-quoted string that libconfuse reads back as `s` (no `${}` expansion, no escapes).
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_lexer() {
        let tricky = "a \"b\" \\c ${HOME} \t\n\u{1} é";
        let text = format!("cluster {{ name = {} }}", q(tricky));
        let l = crate::parse_str_with(
            &text,
            "q.conf",
            &crate::MemSource::new().with_env("HOME", "/h"),
            &crate::LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(l.config.cluster.name, tricky);
    }

    #[test]
    fn default_config_renders_and_reads_back() {
        let c = Config::default();
        let text = render(&c);
        let back = crate::parse_str_with(
            &text,
            "r.conf",
            &crate::MemSource::new(),
            &crate::LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(back.config, c);
    }
}
