//! The terminal live view: a frame rendered as plain lines (pure, testable, also what the text
//! capture holds) and a tiny ANSI screen that redraws it in place. A handful of escape
//! sequences do the job, so no TUI crate is pulled in.

use crate::view::ClusterView;
use std::io::Write;

/// Width of the load bars, characters.
const BAR: usize = 24;

/// Everything one frame shows besides the feed itself.
#[derive(Debug, Clone, Default)]
pub struct FrameInfo {
    /// Lines above the table (what runs where, simulated time, ...).
    pub header: Vec<String>,
    /// Most recent events, oldest first.
    pub events: Vec<String>,
    /// Line at the bottom.
    pub footer: String,
    /// CPU utilisation drawn as overloaded.
    pub threshold: f64,
}

/// A load bar: `[#####...]` clipped at 100 %, with the figure (which may exceed 100 %).
fn bar(frac: f64, threshold: f64, color: bool) -> String {
    let filled = ((frac.clamp(0.0, 1.0) * BAR as f64).round() as usize).min(BAR);
    let body = format!("{}{}", "#".repeat(filled), ".".repeat(BAR - filled));
    let pct = format!("{:>4.0}%", frac * 100.0);
    if !color {
        return format!("[{body}]{pct}");
    }
    let c = if frac > threshold {
        "31;1"
    } else if frac > threshold * 0.8 {
        "33"
    } else {
        "32"
    };
    format!("[\x1b[{c}m{body}\x1b[0m]{pct}")
}

/// The frame as lines; `color` adds ANSI colours to the bars and the leader.
pub fn render(info: &FrameInfo, view: &ClusterView, color: bool) -> Vec<String> {
    let mut out = info.header.clone();
    out.push(String::new());
    out.push(format!(
        "{:<6} {:<11} {:<31} {:<31} {:>3}  BALANCER",
        "HOST", "ADDRESS", "CPU (VM demand)", "MEMORY (VM size)", "VMs"
    ));
    let leader = view.leader();
    for h in &view.hosts {
        let is_leader = leader == Some(h.name.as_str());
        let bal = match &h.balancer {
            None => "-".to_string(),
            Some(b) => format!(
                "{}{} done {} failed {}{}",
                if b.leader { "LEADER " } else { "" },
                b.mode,
                b.done,
                b.failed,
                if b.inflight > 0 {
                    format!(" moving {}", b.inflight)
                } else {
                    String::new()
                }
            ),
        };
        let name = if is_leader && color {
            format!("\x1b[1m{:<6}\x1b[0m", format!("{}*", h.name))
        } else if is_leader {
            format!("{:<6}", format!("{}*", h.name))
        } else {
            format!("{:<6}", h.name)
        };
        out.push(format!(
            "{name} {:<11} {} {} {:>3}  {}{}",
            h.ip,
            bar(h.cpu, info.threshold, color),
            bar(h.mem, 0.95, color),
            h.vms.len(),
            if h.up { "" } else { "DOWN " },
            bal
        ));
    }
    if view.hosts.is_empty() {
        out.push("(waiting for the first heartbeats)".into());
    }
    out.push(String::new());
    out.push("Events".into());
    out.extend(info.events.iter().map(|e| format!("  {e}")));
    out.push(String::new());
    out.push(info.footer.clone());
    out
}

/// The terminal while the live view runs: alternate screen, hidden cursor; restored on drop
/// (also when the demo stops on an error).
pub struct Screen {
    out: std::io::Stdout,
}

impl Screen {
    /// Switches to the alternate screen.
    pub fn enter() -> Screen {
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x1b[?1049h\x1b[?25l\x1b[2J");
        let _ = out.flush();
        Screen { out }
    }

    /// Redraws in place: each line overwrites the old one and clears what is left of it.
    pub fn draw(&mut self, lines: &[String]) {
        let mut buf = String::from("\x1b[H");
        for l in lines {
            buf.push_str(l);
            buf.push_str("\x1b[K\r\n");
        }
        buf.push_str("\x1b[J");
        let _ = self.out.write_all(buf.as_bytes());
        let _ = self.out.flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{BalancerRow, HostRow};

    fn row(name: &str, cpu: f64, leader: bool) -> HostRow {
        HostRow {
            name: name.into(),
            ip: "127.0.0.11".into(),
            up: true,
            cpu,
            mem: 0.25,
            vms: vec!["vm01".into(), "vm05".into()],
            balancer: Some(BalancerRow {
                mode: "auto".into(),
                leader,
                done: 2,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn bars_clip_but_figures_do_not() {
        assert_eq!(
            bar(0.5, 0.85, false),
            format!("[{}{}]  50%", "#".repeat(12), ".".repeat(12))
        );
        assert_eq!(bar(1.9, 0.85, false), format!("[{}] 190%", "#".repeat(24)));
        assert!(bar(1.9, 0.85, true).contains("\x1b[31;1m"));
        assert!(bar(0.1, 0.85, true).contains("\x1b[32m"));
    }

    #[test]
    fn frame_marks_the_leader_and_lists_events() {
        let view = ClusterView {
            cluster: "demo".into(),
            localtime: 1,
            hosts: vec![row("hv01", 0.2, true), row("hv02", 1.9, false)],
        };
        let info = FrameInfo {
            header: vec!["gmond-rs demo".into()],
            events: vec!["vm02 hv02 -> hv03".into()],
            footer: "Ctrl-C stops".into(),
            threshold: 0.85,
        };
        let lines = render(&info, &view, false);
        let hv01 = lines.iter().find(|l| l.starts_with("hv01")).unwrap();
        assert!(hv01.starts_with("hv01* "), "{hv01}");
        assert!(hv01.contains("LEADER auto done 2"), "{hv01}");
        let hv02 = lines.iter().find(|l| l.starts_with("hv02")).unwrap();
        assert!(hv02.contains("190%") && !hv02.contains("LEADER"), "{hv02}");
        assert!(lines.contains(&"  vm02 hv02 -> hv03".to_string()));
        assert_eq!(lines.last().unwrap(), "Ctrl-C stops");
        assert!(!lines.concat().contains('\x1b'));
    }
}
