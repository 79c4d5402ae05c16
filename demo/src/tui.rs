//! The live view: one layout drawn with ratatui, either on the terminal ([`Screen`]: alternate
//! screen, colours, redrawn to the terminal's size) or into an off-screen buffer turned into
//! plain text ([`plain`], what `--capture` writes and the unit tests read).
//!
//! From top to bottom: the header (what runs where, simulated time, leader, migrations), one
//! row pair per host (CPU and memory bars, VM count, balancer; below them the CPU history as a
//! sparkline and the host's VMs), the latest events, a footer. When the terminal is short, each
//! host gets one row and the events what is left.

use crate::view::{ClusterView, HostRow};
use crate::Error;
use ratatui::backend::CrosstermBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Padding, Paragraph, Sparkline, SparklineBar, Widget};
use ratatui::Terminal;
use std::collections::{BTreeMap, VecDeque};
use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Simulated time per bar of the CPU history.
pub const HISTORY_STEP_MS: u64 = 10_000;
/// Bars kept per host: an hour of simulated time.
const HISTORY_LEN: usize = 360;
/// Width of the plain-text frames.
pub const PLAIN_WIDTH: u16 = 120;
/// Continuation lines of a wrapped event start under its text, after the time stamp.
const EVENT_INDENT: usize = 10;

/// Everything a frame shows besides the feed and the history.
#[derive(Debug, Clone, Default)]
pub struct FrameInfo {
    /// Title of the header box.
    pub title: String,
    /// What runs where (one line each).
    pub header: Vec<String>,
    /// Simulated time, leader, migration counts.
    pub status: String,
    /// Most recent events, oldest first.
    pub events: Vec<String>,
    /// Line at the bottom.
    pub footer: String,
    /// CPU utilisation drawn as overloaded.
    pub threshold: f64,
}

/// Each host's CPU utilisation (as the view reads it from the feed), one value per
/// [`HISTORY_STEP_MS`] of simulated time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Per host, oldest first.
    hosts: BTreeMap<String, VecDeque<f64>>,
    /// The step of the newest value.
    last_step: Option<u64>,
}

impl History {
    /// Records `view` at simulated time `sim_ms`. Steps the view skipped (a faster speed-up
    /// than the view's refresh) repeat the value, so every bar stands for the same time.
    pub fn record(&mut self, sim_ms: u64, view: &ClusterView) {
        let step = sim_ms / HISTORY_STEP_MS;
        let repeat = match self.last_step {
            Some(last) if step <= last => return,
            Some(last) => (step - last).min(HISTORY_LEN as u64) as usize,
            None => 1,
        };
        self.last_step = Some(step);
        for h in &view.hosts {
            let series = self.hosts.entry(h.name.clone()).or_default();
            series.extend(std::iter::repeat_n(h.cpu, repeat));
            while series.len() > HISTORY_LEN {
                series.pop_front();
            }
        }
    }

    /// The last `n` values of `host`, oldest first.
    fn last(&self, host: &str, n: usize) -> Vec<f64> {
        self.hosts.get(host).map_or_else(Vec::new, |s| {
            s.iter().skip(s.len().saturating_sub(n)).copied().collect()
        })
    }

    /// The highest value of any host, for one scale shared by every sparkline.
    fn peak(&self) -> f64 {
        self.hosts
            .values()
            .flat_map(|s| s.iter().copied())
            .fold(0.0, f64::max)
    }
}

/// What one frame draws.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    /// Header, events, footer.
    pub info: &'a FrameInfo,
    /// The cluster as its feed shows it.
    pub view: &'a ClusterView,
    /// CPU history per host.
    pub history: &'a History,
}

/// The frame as plain lines, `width` columns wide and as tall as it needs to show every host
/// with its history and every event: what `--capture` writes. Trailing spaces are trimmed.
pub fn plain(model: &Model, width: u16) -> Vec<String> {
    let inner = usize::from(width.saturating_sub(4));
    let event_lines: usize = model
        .info
        .events
        .iter()
        .map(|e| wrap(e, inner, EVENT_INDENT).len())
        .sum();
    let height = header_height(model.info)
        + 3
        + 2 * model.view.hosts.len().max(1) as u16
        + 2
        + event_lines.max(1) as u16
        + 1;
    let area = Rect::new(0, 0, width, height);
    let mut buf = Buffer::empty(area);
    draw(model, area, &mut buf);
    (0..height)
        .map(|y| {
            let row: String = (0..width).map(|x| buf[(x, y)].symbol()).collect();
            row.trim_end().to_owned()
        })
        .collect()
}

/// Draws the frame into `area` of `buf`.
pub fn draw(model: &Model, area: Rect, buf: &mut Buffer) {
    let header_h = header_height(model.info).min(area.height);
    let room = area.height.saturating_sub(header_h + 1 + 3);
    let n = model.view.hosts.len().max(1) as u16;
    let rows_per_host = if 3 + 2 * n <= room { 2 } else { 1 };
    let hosts_h = (3 + rows_per_host * n).min(room.max(3));
    let [head, hosts, events, foot] = Layout::vertical([
        Constraint::Length(header_h),
        Constraint::Length(hosts_h),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(model.info, head, buf);
    draw_hosts(model, rows_per_host, hosts, buf);
    draw_events(&model.info.events, events, buf);
    Paragraph::new(Line::styled(
        model.info.footer.as_str(),
        Style::new().fg(Color::DarkGray),
    ))
    .render(foot, buf);
}

/// A box with a title and a column of space inside each side.
fn boxed<'a>(title: impl Into<Line<'a>>) -> Block<'a> {
    Block::new()
        .borders(Borders::ALL)
        .padding(Padding::horizontal(1))
        .title(title.into())
}

fn header_height(info: &FrameInfo) -> u16 {
    info.header.len() as u16 + 1 + 2
}

fn draw_header(info: &FrameInfo, area: Rect, buf: &mut Buffer) {
    let mut lines: Vec<Line> = info.header.iter().map(|l| Line::raw(l.as_str())).collect();
    lines.push(Line::styled(
        info.status.as_str(),
        Style::new().add_modifier(Modifier::BOLD),
    ));
    Paragraph::new(lines)
        .block(boxed(Span::styled(
            format!(" {} ", info.title),
            Style::new().add_modifier(Modifier::BOLD),
        )))
        .render(area, buf);
}

/// Widths of a host row's columns: name, address, CPU, memory, VM count, balancer. The address
/// goes first when the terminal is narrow.
fn columns(width: u16) -> [u16; 6] {
    let ip = if width >= 80 { 12 } else { 0 };
    let bal = (width / 4).clamp(14, 34);
    let rest = width.saturating_sub(7 + ip + 5 + bal);
    let cpu = rest * 3 / 5;
    [7, ip, cpu, rest - cpu, 5, bal]
}

fn split_columns(area: Rect) -> [Rect; 6] {
    Layout::horizontal(columns(area.width).map(Constraint::Length)).areas(area)
}

fn draw_hosts(model: &Model, rows_per_host: u16, area: Rect, buf: &mut Buffer) {
    let block = boxed(" Hosts ");
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 {
        return;
    }
    let cols = split_columns(Rect { height: 1, ..inner });
    let bars = usize::from(cols[2].width.saturating_sub(7));
    let minutes = bars as u64 * HISTORY_STEP_MS / 60_000;
    let history = format!("CPU (VM demand); below: last {minutes} min");
    let cpu: &[&str] = if rows_per_host == 2 {
        &[&history, "CPU (VM demand)", "CPU"]
    } else {
        &["CPU (VM demand)", "CPU"]
    };
    let titles: [&[&str]; 6] = [
        &["HOST"],
        &["ADDRESS"],
        cpu,
        &["MEMORY (VM size)", "MEMORY", "MEM"],
        &["VMs"],
        &["BALANCER"],
    ];
    let bold = Style::new().add_modifier(Modifier::BOLD);
    for (c, t) in cols.iter().zip(titles) {
        // The longest title that leaves a space before the next column.
        let fits = t
            .iter()
            .find(|t| t.chars().count() < usize::from(c.width))
            .or(t.last());
        Paragraph::new(Span::styled(fits.copied().unwrap_or_default(), bold)).render(*c, buf);
    }
    if model.view.hosts.is_empty() {
        let row = Rect {
            y: inner.y + 1,
            height: 1,
            ..inner
        };
        Paragraph::new("(waiting for the first heartbeats)").render(row, buf);
        return;
    }
    let leader = model.view.leader();
    let scale = model.history.peak().max(1.0);
    let fits = usize::from(inner.height.saturating_sub(1) / rows_per_host);
    for (i, h) in model.view.hosts.iter().take(fits).enumerate() {
        let y = inner.y + 1 + i as u16 * rows_per_host;
        let row = Rect {
            y,
            height: 1,
            ..inner
        };
        draw_host(
            h,
            leader == Some(h.name.as_str()),
            model.info.threshold,
            row,
            buf,
        );
        if rows_per_host == 2 {
            let below = Rect { y: y + 1, ..row };
            let cpu = model.history.last(&h.name, bars);
            draw_history(h, &cpu, scale, model.info.threshold, below, buf);
        }
    }
}

/// A host's first row: name (`*` for the leader), address, CPU and memory bars, VMs, balancer.
fn draw_host(h: &HostRow, is_leader: bool, threshold: f64, row: Rect, buf: &mut Buffer) {
    let c = split_columns(row);
    let name = format!("{}{}", h.name, if is_leader { "*" } else { "" });
    let name_style = if is_leader {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    Paragraph::new(Span::styled(name, name_style)).render(c[0], buf);
    Paragraph::new(h.ip.as_str()).render(c[1], buf);
    Paragraph::new(bar(h.cpu, threshold, c[2].width)).render(c[2], buf);
    Paragraph::new(bar(h.mem, 0.95, c[3].width)).render(c[3], buf);
    Paragraph::new(format!("{:>3}", h.vms.len())).render(c[4], buf);
    Paragraph::new(balancer_text(h)).render(c[5], buf);
}

/// A host's second row: its CPU history under the CPU bar, its VMs to the right.
fn draw_history(h: &HostRow, cpu: &[f64], scale: f64, threshold: f64, row: Rect, buf: &mut Buffer) {
    let c = split_columns(row);
    // Under the bar itself: after the figure, one column short of the memory bar.
    let spark = Rect {
        x: c[2].x + 6,
        width: c[2].width.saturating_sub(7),
        ..c[2]
    };
    // Newest at the right edge; a host that is busy at all shows at least the lowest bar.
    let missing = usize::from(spark.width).saturating_sub(cpu.len());
    let data: Vec<SparklineBar> = std::iter::repeat_n(SparklineBar::from(None), missing)
        .chain(cpu.iter().map(|&u| {
            let level = if u > 0.005 {
                (u / scale * 1000.0).clamp(125.0, 1000.0)
            } else {
                0.0
            };
            SparklineBar::from(level.round() as u64)
                .style(Some(Style::new().fg(load_color(u, threshold))))
        }))
        .collect();
    Sparkline::default().data(data).max(1000).render(spark, buf);
    let vms_area = Rect {
        width: c[3].width + c[4].width + c[5].width,
        ..c[3]
    };
    let vms = fit_list(&h.vms, usize::from(vms_area.width));
    Paragraph::new(Span::styled(vms, Style::new().fg(Color::Cyan))).render(vms_area, buf);
}

/// Green below 80 % of the threshold, yellow up to it, red above.
fn load_color(frac: f64, threshold: f64) -> Color {
    if frac > threshold {
        Color::Red
    } else if frac > threshold * 0.8 {
        Color::Yellow
    } else {
        Color::Green
    }
}

/// A bar `width` wide: the figure (which may exceed 100 %), then the fill clipped at 100 %.
/// Filled and empty parts differ in their characters, so the plain text shows them too.
fn bar(frac: f64, threshold: f64, width: u16) -> Line<'static> {
    let len = usize::from(width.saturating_sub(7));
    let filled = ((frac.clamp(0.0, 1.0) * len as f64).round() as usize).min(len);
    Line::from(vec![
        Span::raw(format!("{:>4.0}% ", frac * 100.0)),
        Span::styled(
            "█".repeat(filled),
            Style::new().fg(load_color(frac, threshold)),
        ),
        Span::styled("░".repeat(len - filled), Style::new().fg(Color::DarkGray)),
    ])
}

fn balancer_text(h: &HostRow) -> Line<'static> {
    let Some(b) = &h.balancer else {
        return Line::raw("-");
    };
    let mut spans = Vec::new();
    if !h.up {
        spans.push(Span::styled("DOWN ", Style::new().fg(Color::Red)));
    }
    if b.leader {
        spans.push(Span::styled(
            "LEADER ",
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
    }
    let mut text = format!("{}, {} done", b.mode, b.done);
    if b.failed > 0 {
        text.push_str(&format!(", {} failed", b.failed));
    }
    spans.push(Span::raw(text));
    if b.inflight > 0 {
        spans.push(Span::styled(
            format!(", {} moving", b.inflight),
            Style::new().fg(Color::Yellow),
        ));
    }
    Line::from(spans)
}

/// `items` separated by spaces in at most `width` characters, the rest counted: `a b (+3)`.
fn fit_list(items: &[String], width: usize) -> String {
    let mut out = String::new();
    for (i, it) in items.iter().enumerate() {
        let more = items.len() - i;
        let tail = if more > 1 {
            format!(" (+{})", more - 1)
        } else {
            String::new()
        };
        let sep = usize::from(!out.is_empty());
        if out.len() + sep + it.len() + tail.len() > width && more > 1 {
            let rest = format!("(+{more})");
            if out.len() + sep + rest.len() <= width {
                out.push_str(&" ".repeat(sep));
                out.push_str(&rest);
            }
            return out;
        }
        out.push_str(&" ".repeat(sep));
        out.push_str(it);
    }
    out
}

fn draw_events(events: &[String], area: Rect, buf: &mut Buffer) {
    let block = boxed(" Events ");
    let inner = block.inner(area);
    block.render(area, buf);
    // The newest events that fit, each wrapped under its text.
    let mut lines: Vec<Line> = Vec::new();
    for e in events.iter().rev() {
        let style = Style::new().fg(event_color(e));
        let wrapped = wrap(e, usize::from(inner.width), EVENT_INDENT);
        if lines.len() + wrapped.len() > usize::from(inner.height) {
            break;
        }
        for l in wrapped.into_iter().rev() {
            lines.push(Line::styled(l, style));
        }
    }
    lines.reverse();
    Paragraph::new(lines).render(inner, buf);
}

/// Spikes and failures red, decisions yellow, arrivals green.
fn event_color(e: &str) -> Color {
    if e.contains("FAILED") || e.contains("did not complete") || e.contains("spike") {
        Color::Red
    } else if e.contains("decides") {
        Color::Yellow
    } else if e.contains("arrived") {
        Color::Green
    } else {
        Color::Reset
    }
}

/// `text` broken at spaces into lines of at most `width` characters; continuation lines start
/// with `indent` spaces. A word longer than a line is cut.
fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let width = width.max(indent + 10);
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        let has_text = !cur.trim().is_empty();
        let fits = cur.chars().count() + 1 + word.chars().count() <= width;
        if has_text && !fits {
            lines.push(std::mem::take(&mut cur));
            cur = " ".repeat(indent);
        } else if has_text {
            cur.push(' ');
        }
        cur.push_str(word);
        while cur.chars().count() > width {
            let head: String = cur.chars().take(width).collect();
            let rest: String = cur.chars().skip(width).collect();
            lines.push(head);
            cur = format!("{}{rest}", " ".repeat(indent));
        }
    }
    lines.push(cur);
    lines
}

/// Whether the terminal is in the live view's mode; the drop and the panic hook restore it
/// once, whichever comes first.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leaves raw mode and the alternate screen and shows the cursor, if the view set them.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
    }
}

/// What the user did while the view waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Nothing, or nothing that matters.
    None,
    /// `q`, Esc or Ctrl-C: stop the demo.
    Quit,
    /// The terminal changed size: redraw now.
    Resized,
}

/// The terminal while the live view runs: raw mode (so keys do not echo over the view, and
/// Ctrl-C arrives as a key), alternate screen, hidden cursor. Restored on drop, and by a panic
/// hook before the panic message is printed.
pub struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Switches the terminal to the live view.
    pub fn enter() -> Result<Screen, Error> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        ACTIVE.store(true, Ordering::SeqCst);
        terminal::enable_raw_mode().map_err(Error::Terminal)?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .map_err(Error::Terminal)?;
        let terminal =
            Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(Error::Terminal)?;
        Ok(Screen { terminal })
    }

    /// Draws a frame at the terminal's current size.
    pub fn draw(&mut self, model: &Model) -> Result<(), Error> {
        self.terminal
            .draw(|f| draw(model, f.area(), f.buffer_mut()))
            .map(|_| ())
            .map_err(Error::Terminal)
    }

    /// Waits up to `timeout` for a key or a resize.
    pub fn wait(&mut self, timeout: Duration) -> Result<Input, Error> {
        if !event::poll(timeout).map_err(Error::Terminal)? {
            return Ok(Input::None);
        }
        Ok(match event::read().map_err(Error::Terminal)? {
            Event::Key(k) if k.kind == KeyEventKind::Press => match k.code {
                KeyCode::Char('q') | KeyCode::Esc => Input::Quit,
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Input::Quit,
                _ => Input::None,
            },
            Event::Resize(..) => Input::Resized,
            _ => Input::None,
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::BalancerRow;

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

    fn info(events: Vec<String>) -> FrameInfo {
        FrameInfo {
            title: "gmond-rs demo".into(),
            header: vec!["4 hypervisors".into()],
            status: "simulated time 00:01:00".into(),
            events,
            footer: "Ctrl-C stops".into(),
            threshold: 0.85,
        }
    }

    fn view() -> ClusterView {
        ClusterView {
            cluster: "demo".into(),
            localtime: 1,
            hosts: vec![row("hv01", 0.2, true), row("hv02", 1.9, false)],
        }
    }

    #[test]
    fn bars_clip_but_figures_do_not() {
        let text = |l: Line| {
            l.spans
                .iter()
                .map(|s| s.content.to_string())
                .collect::<String>()
        };
        assert_eq!(
            text(bar(0.5, 0.85, 31)),
            format!("  50% {}{}", "█".repeat(12), "░".repeat(12))
        );
        let hot = bar(1.9, 0.85, 31);
        assert_eq!(text(hot.clone()), format!(" 190% {}", "█".repeat(24)));
        assert_eq!(hot.spans[1].style.fg, Some(Color::Red));
        assert_eq!(bar(0.1, 0.85, 31).spans[1].style.fg, Some(Color::Green));
    }

    #[test]
    fn plain_frame_marks_the_leader_and_lists_events() {
        let long = format!(
            "00:02:19  hv01 decides: move vm02 {}",
            "because ".repeat(30)
        );
        let info = info(vec!["vm02 hv02 -> hv03".into(), long]);
        let mut history = History::default();
        for t in 0..20 {
            history.record(t * HISTORY_STEP_MS, &view());
        }
        let view = view();
        let lines = plain(
            &Model {
                info: &info,
                view: &view,
                history: &history,
            },
            PLAIN_WIDTH,
        );
        let text = lines.join("\n");
        let find = |p: &str| {
            lines
                .iter()
                .find(|l| l.contains(p))
                .unwrap_or_else(|| panic!("no {p:?} in\n{text}"))
        };
        let hv01 = find("hv01*");
        assert!(hv01.contains("LEADER auto, 2 done"), "{hv01}");
        let hv02 = find("hv02 ");
        assert!(
            hv02.contains(" 190% ") && !hv02.contains("LEADER"),
            "{hv02}"
        );
        // The history row under each host: a sparkline, then its VMs.
        let below = lines.iter().position(|l| l == hv02).unwrap() + 1;
        assert!(lines[below].contains('█') && lines[below].contains("vm01 vm05"));
        assert!(text.contains("vm02 hv02 -> hv03"));
        // A long event wraps under its text instead of being cut.
        assert!(text.contains("because because"));
        assert_eq!(text.matches("because").count(), 30, "{text}");
        assert!(lines
            .iter()
            .all(|l| l.chars().count() <= usize::from(PLAIN_WIDTH)));
        assert!(text.contains("Ctrl-C stops") && text.contains("simulated time 00:01:00"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn a_short_terminal_keeps_one_row_per_host_and_the_newest_events() {
        let events: Vec<String> = (0..30).map(|i| format!("event {i}")).collect();
        let info = info(events);
        let view = view();
        let history = History::default();
        let model = Model {
            info: &info,
            view: &view,
            history: &history,
        };
        let area = Rect::new(0, 0, 70, 14);
        let mut buf = Buffer::empty(area);
        draw(&model, area, &mut buf);
        let rows: Vec<String> = (0..area.height)
            .map(|y| (0..area.width).map(|x| buf[(x, y)].symbol()).collect())
            .collect();
        let text = rows.join("\n");
        assert!(text.contains("hv01*") && text.contains("hv02"), "{text}");
        assert!(!text.contains("vm01 vm05"), "no history rows:\n{text}");
        assert!(
            text.contains("event 29") && !text.contains("event 0 "),
            "{text}"
        );
    }

    #[test]
    fn history_repeats_skipped_steps_and_is_bounded() {
        let mut h = History::default();
        h.record(0, &view());
        h.record(5_000, &view());
        h.record(35_000, &view());
        assert_eq!(h.last("hv02", 100), vec![1.9; 4]);
        h.record(100 * 3_600_000, &view());
        assert_eq!(h.last("hv02", 1000).len(), HISTORY_LEN);
        assert_eq!(h.peak(), 1.9);
    }

    #[test]
    fn lists_and_lines_fit() {
        let vms: Vec<String> = (1..=9).map(|i| format!("vm{i:02}")).collect();
        assert_eq!(fit_list(&vms[..2], 40), "vm01 vm02");
        assert_eq!(fit_list(&vms, 20), "vm01 vm02 vm03 (+6)");
        assert!(fit_list(&vms, 20).len() <= 20);
        let w = wrap("0123 5678 abcd efgh ijkl", 14, 2);
        assert_eq!(w, ["0123 5678 abcd", "  efgh ijkl"]);
        assert_eq!(wrap("short", 80, 10), ["short"]);
    }
}
