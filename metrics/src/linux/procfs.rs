//! Pure parsers for the /proc and /sys text files the Linux metrics come from.
//!
//! Each takes the file's text and returns typed fields; none touches the filesystem, so
//! they are tested on literal strings. Where gmond's C code has a lenient quirk that decides
//! a value (substring key search in meminfo, prefix interface filters), the quirk is kept
//! and named at the function. Errors are [`Error::Malformed`]; the collector puts them under
//! the file's path.

use crate::Error;

/// Number of jiffy fields gmond sums into "total" (user..steal; guest is already in user).
pub const CPU_FIELDS: usize = 8;

/// Index of each field in the aggregate `cpu` line of /proc/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuField {
    /// Time in user mode.
    User = 0,
    /// Time in user mode with low priority.
    Nice = 1,
    /// Time in kernel mode.
    System = 2,
    /// Idle time.
    Idle = 3,
    /// Waiting for I/O.
    Iowait = 4,
    /// Servicing interrupts.
    Irq = 5,
    /// Servicing softirqs.
    Softirq = 6,
    /// Stolen by the hypervisor.
    Steal = 7,
}

/// The parts of /proc/stat gmond uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatSnapshot {
    /// user, nice, system, idle, iowait, irq, softirq, steal (missing ones are 0).
    pub jiffies: [u64; CPU_FIELDS],
    /// How many numeric fields the aggregate line has (4 on 2.4 kernels, 10 today).
    pub nstates: usize,
    /// `btime` (boot time, epoch seconds), 0 when absent as in gmond.
    pub btime: u32,
    /// Number of `cpuN` lines (fallback CPU count).
    pub cpu_lines: usize,
}

impl StatSnapshot {
    /// Sum of the fields gmond counts as total: 4 on 2.4-style lines, 7 when the line
    /// has no steal column, otherwise user..steal.
    pub fn total(&self) -> u64 {
        let n = match self.nstates {
            0..=4 => 4,
            5..=7 => 7,
            _ => CPU_FIELDS,
        };
        self.jiffies[..n]
            .iter()
            .fold(0u64, |acc, j| acc.wrapping_add(*j))
    }

    /// One field, by name.
    pub fn get(&self, field: CpuField) -> u64 {
        self.jiffies[field as usize]
    }

    /// Whether the kernel reports the 2.6+ states (iowait, irq, softirq).
    pub fn has_26_states(&self) -> bool {
        self.nstates > 4
    }
}

/// Parses /proc/stat. Errors when the aggregate `cpu` line is missing or malformed.
pub fn parse_stat(text: &str) -> Result<StatSnapshot, Error> {
    let bad = |detail: String| Error::Malformed {
        what: "/proc/stat",
        detail,
    };
    let mut jiffies = [0u64; CPU_FIELDS];
    let mut nstates = None;
    let mut btime = 0u32;
    let mut cpu_lines = 0usize;
    for line in text.lines() {
        let mut tokens = line.split_ascii_whitespace();
        match tokens.next() {
            Some("cpu") if nstates.is_none() => {
                let mut n = 0;
                for (i, tok) in tokens.enumerate() {
                    let v = parse_jiffies(tok).ok_or_else(|| {
                        bad(format!("cpu field {} is not a number: {tok:?}", i + 1))
                    })?;
                    if let Some(slot) = jiffies.get_mut(i) {
                        *slot = v;
                    }
                    n += 1;
                }
                if n < 4 {
                    return Err(bad(format!("cpu line has {n} fields, expected at least 4")));
                }
                nstates = Some(n);
            }
            Some(tok) if tok.starts_with("cpu") && tok[3..].bytes().all(|b| b.is_ascii_digit()) => {
                cpu_lines += 1;
            }
            Some("btime") => {
                // gmond uses atoi: a malformed value reads as 0 rather than failing.
                btime = tokens.next().and_then(|t| t.parse().ok()).unwrap_or(0);
            }
            _ => {}
        }
    }
    let nstates = nstates.ok_or_else(|| bad("no aggregate \"cpu\" line".to_string()))?;
    Ok(StatSnapshot {
        jiffies,
        nstates,
        btime,
        cpu_lines,
    })
}

/// gmond reads jiffies with strtod and truncates to an integer; integers parse directly.
fn parse_jiffies(tok: &str) -> Option<u64> {
    tok.parse::<u64>().ok().or_else(|| {
        tok.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            // Truncation toward zero is what the C cast does; the filter keeps it in range.
            .map(|v| v as u64)
    })
}

/// Looks up a /proc/meminfo value (kB) the way gmond does: the first occurrence of `key`
/// (for example `"Cached:"`) anywhere in the text, then the next token.
///
/// `Ok(None)` when the key does not occur (gmond then reports 0); an error when it occurs
/// but no number follows.
pub fn meminfo_kb(text: &str, key: &str) -> Result<Option<f64>, Error> {
    let Some(pos) = text.find(key) else {
        return Ok(None);
    };
    let rest = &text[pos + key.len()..];
    leading_f64(rest).map(Some).ok_or_else(|| Error::Malformed {
        what: "/proc/meminfo",
        detail: format!("{key} is not followed by a number"),
    })
}

/// The longest prefix of `s` (after blanks) that parses as a float, like C's atof/strtod.
pub fn leading_f64(s: &str) -> Option<f64> {
    let s = s.trim_start_matches([' ', '\t']);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E')))
        .unwrap_or(s.len());
    let mut cand = &s[..end];
    while !cand.is_empty() {
        if let Ok(v) = cand.parse::<f64>() {
            return Some(v);
        }
        cand = &cand[..cand.len() - 1];
    }
    None
}

/// The fields of /proc/loadavg.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAvg {
    /// 1-minute load average.
    pub one: f32,
    /// 5-minute load average.
    pub five: f32,
    /// 15-minute load average.
    pub fifteen: f32,
    /// Currently runnable scheduling entities (including the reader).
    pub running: u32,
    /// Existing scheduling entities (threads).
    pub total: u32,
}

/// Parses /proc/loadavg (`0.01 0.15 0.10 1/84 8564`).
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, Error> {
    let bad = |detail: String| Error::Malformed {
        what: "/proc/loadavg",
        detail,
    };
    let mut t = text.split_ascii_whitespace();
    let mut load = |what: &str| -> Result<f32, Error> {
        let tok = t.next().ok_or_else(|| bad(format!("missing {what}")))?;
        tok.parse::<f32>()
            .map_err(|_| bad(format!("{what} is not a number: {tok:?}")))
    };
    let one = load("1-minute load")?;
    let five = load("5-minute load")?;
    let fifteen = load("15-minute load")?;
    let procs = t
        .next()
        .ok_or_else(|| bad("missing running/total field".to_string()))?;
    let (r, tot) = procs
        .split_once('/')
        .ok_or_else(|| bad(format!("process field without '/': {procs:?}")))?;
    let num = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| bad(format!("process count is not a number: {procs:?}")))
    };
    Ok(LoadAvg {
        one,
        five,
        fifteen,
        running: num(r)?,
        total: num(tot)?,
    })
}

/// Counters of one /proc/net/dev line that gmond uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IfCounters {
    /// Received bytes.
    pub rx_bytes: u64,
    /// Received packets.
    pub rx_packets: u64,
    /// Transmitted bytes.
    pub tx_bytes: u64,
    /// Transmitted packets.
    pub tx_packets: u64,
}

/// Parses /proc/net/dev into (interface name, counters), skipping the two header lines.
pub fn parse_net_dev(text: &str) -> Result<Vec<(String, IfCounters)>, Error> {
    let bad = |detail: String| Error::Malformed {
        what: "/proc/net/dev",
        detail,
    };
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        if line.trim().is_empty() {
            continue;
        }
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("interface line without ':': {line:?}")))?;
        let fields: Vec<u64> = rest
            .split_ascii_whitespace()
            .map(|t| t.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad(format!("non-numeric counter in {line:?}")))?;
        if fields.len() < 10 {
            return Err(bad(format!(
                "interface line has {} counters: {line:?}",
                fields.len()
            )));
        }
        out.push((
            name.trim().to_string(),
            IfCounters {
                rx_bytes: fields[0],
                rx_packets: fields[1],
                tx_bytes: fields[8],
                tx_packets: fields[9],
            },
        ));
    }
    Ok(out)
}

/// gmond leaves out loopback and bonding masters by name *prefix* ("lo", "bond"), so an
/// interface named `lower0` is skipped too; VLAN sub-interfaces are checked separately.
pub fn interface_counted_by_name(name: &str) -> bool {
    !(name.starts_with("lo") || name.starts_with("bond"))
}

/// One /proc/mounts entry that gmond would count for disk space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMount {
    /// Device (`/dev/vda`).
    pub device: String,
    /// Mount point, as written in /proc/mounts (octal escapes such as `\040` kept).
    pub mount_point: String,
}

/// The mounts gmond sums: read-write, local, and backed by a `/dev/` (or `/dev2/`) device,
/// in file order. Duplicate devices are kept here; the caller counts each device once.
pub fn local_mounts(text: &str) -> Vec<LocalMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        // gmond splits at single spaces and skips lines with fewer than four fields.
        let mut parts = line.splitn(5, ' ');
        let (Some(device), Some(mount), Some(fstype), Some(opts)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if opts.starts_with("ro") || is_remote_mount(device, fstype) {
            continue;
        }
        if !(device.starts_with("/dev/") || device.starts_with("/dev2/")) {
            continue;
        }
        out.push(LocalMount {
            device: device.to_string(),
            mount_point: mount.to_string(),
        });
    }
    out
}

/// gmond's notion of a network file system (from coreutils' ME_REMOTE, widened).
fn is_remote_mount(device: &str, fstype: &str) -> bool {
    device.contains(':')
        || (fstype == "smbfs" && device.starts_with("//"))
        || fstype.starts_with("nfs")
        || matches!(fstype, "autofs" | "gfs" | "none")
}

/// Counts CPUs in a kernel CPU list such as `0-3,6,8-9` (sysfs `online`).
pub fn count_cpu_list(text: &str) -> Result<u32, Error> {
    let mut n = 0u32;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || Error::Malformed {
            what: "CPU list",
            detail: format!("bad entry {part:?}"),
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.parse::<u32>().map_err(|_| bad())?,
                b.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let a = part.parse::<u32>().map_err(|_| bad())?;
                (a, a)
            }
        };
        if b < a {
            return Err(bad());
        }
        n = n.saturating_add((b - a).saturating_add(1));
    }
    if n == 0 {
        return Err(Error::Malformed {
            what: "CPU list",
            detail: "empty".to_string(),
        });
    }
    Ok(n)
}

/// The integer part of the first `cpu MHz` value in /proc/cpuinfo (x86 layout), as gmond
/// reads it with strtol; `None` when there is none.
pub fn cpuinfo_mhz(text: &str) -> Option<u32> {
    let pos = text.find("cpu MHz")?;
    let after = &text[pos..];
    let colon = after.find(':')?;
    let digits: String = after[colon + 1..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// cpufreq's `scaling_max_freq` (kHz) as whole MHz, as gmond divides it.
pub fn cpufreq_mhz(text: &str) -> Option<u32> {
    let khz: u64 = text.trim().parse().ok()?;
    u32::try_from(khz / 1000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  11584 0 3080 141640 258 0 85 104 7 0\n\
        cpu0 5719 0 1421 71088 46 0 20 53 0 0\n\
        cpu1 5864 0 1659 70552 212 0 64 51 0 0\n\
        intr 1 2 3\nctxt 99\nbtime 1795300000\nprocesses 8600\n";

    #[test]
    fn stat_fields_total_and_btime() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.jiffies, [11584, 0, 3080, 141640, 258, 0, 85, 104]);
        assert_eq!(s.nstates, 10);
        // guest (7) is not added: it is already part of user.
        assert_eq!(s.total(), 11584 + 3080 + 141640 + 258 + 85 + 104);
        assert_eq!(s.btime, 1_795_300_000);
        assert_eq!(s.cpu_lines, 2);
    }

    #[test]
    fn stat_24_kernel_has_four_states() {
        let s = parse_stat("cpu 10 20 30 40\ncpu0 10 20 30 40\n").unwrap();
        assert_eq!(s.nstates, 4);
        assert_eq!(s.total(), 100);
        assert!(!s.has_26_states());
        assert_eq!(s.btime, 0);
    }

    #[test]
    fn stat_without_cpu_line_is_an_error() {
        assert!(parse_stat("intr 1\n").is_err());
        assert!(parse_stat("cpu 1 2 x 4\n").is_err());
        assert!(parse_stat("cpu 1 2\n").is_err());
    }

    #[test]
    fn meminfo_uses_first_substring_match() {
        let m = "MemTotal: 100 kB\nCached:  40 kB\nSwapCached: 7 kB\n";
        assert_eq!(meminfo_kb(m, "Cached:").unwrap(), Some(40.0));
        assert_eq!(meminfo_kb(m, "MemShared:").unwrap(), None);
        // gmond's strstr would find "Cached:" inside "SwapCached:" if that came first.
        assert_eq!(
            meminfo_kb("SwapCached: 7 kB\nCached: 40 kB\n", "Cached:").unwrap(),
            Some(7.0)
        );
        assert!(meminfo_kb("MemTotal: kB\n", "MemTotal:").is_err());
    }

    #[test]
    fn leading_float_is_like_atof() {
        assert_eq!(leading_f64("  12.5kB"), Some(12.5));
        assert_eq!(leading_f64("3e"), Some(3.0));
        assert_eq!(leading_f64("x"), None);
    }

    #[test]
    fn loadavg_fields() {
        let l = parse_loadavg("0.92 0.15 1.10 3/100 8564\n").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (0.92, 0.15, 1.10));
        assert_eq!((l.running, l.total), (3, 100));
        assert!(parse_loadavg("0.1 0.2 0.3 5\n").is_err());
        assert!(parse_loadavg("0.1 0.2\n").is_err());
    }

    #[test]
    fn net_dev_fields() {
        let t = "Inter-| Receive | Transmit\n face |bytes packets ...\n\
            \x20   lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n\
            \x20 eth0: 71748382    4236    0    0    0     0          0         0   342380    3786    0    0    0     0       0          0\n";
        let v = parse_net_dev(t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].0, "eth0");
        assert_eq!(
            v[1].1,
            IfCounters {
                rx_bytes: 71748382,
                rx_packets: 4236,
                tx_bytes: 342380,
                tx_packets: 3786
            }
        );
        assert!(parse_net_dev("h\nh\neth0: 1 2 3\n").is_err());
    }

    #[test]
    fn interface_name_filter_is_prefix_based() {
        assert!(!interface_counted_by_name("lo"));
        assert!(!interface_counted_by_name("lower0"));
        assert!(!interface_counted_by_name("bond0"));
        assert!(interface_counted_by_name("eth0"));
        assert!(interface_counted_by_name("ifb0"));
    }

    #[test]
    fn mounts_filter_like_gmond() {
        let t = "proc /proc proc rw,relatime 0 0\n\
            /dev/vda / ext4 rw,relatime 0 0\n\
            /dev/vdb /ro ext4 ro,relatime 0 0\n\
            server:/x /nfs nfs4 rw 0 0\n\
            /dev/vdc /n nfs rw 0 0\n\
            /dev/vdd /none none rw 0 0\n\
            /dev2/x /d2 xfs rw 0 0\n\
            /dev/vda /again ext4 rw 0 0\n\
            short line\n";
        let m = local_mounts(t);
        let got: Vec<_> = m
            .iter()
            .map(|m| (m.device.as_str(), m.mount_point.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/dev/vda", "/"),
                ("/dev2/x", "/d2"),
                ("/dev/vda", "/again")
            ]
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-1\n").unwrap(), 2);
        assert_eq!(count_cpu_list("0-3,6,8-9").unwrap(), 7);
        assert!(matches!(
            count_cpu_list("3-1"),
            Err(Error::Malformed { what: "CPU list", detail }) if detail.contains("\"3-1\"")
        ));
        assert_eq!(count_cpu_list("0-4294967295,7").unwrap(), u32::MAX);
        assert!(count_cpu_list("\n").is_err());
    }

    #[test]
    fn cpu_speed_sources() {
        let c = "processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2445.402\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.000\n";
        assert_eq!(cpuinfo_mhz(c), Some(2445));
        assert_eq!(cpuinfo_mhz("processor : 0\n"), None);
        assert_eq!(cpufreq_mhz("3400000\n"), Some(3400));
        assert_eq!(cpufreq_mhz("junk"), None);
    }
}
