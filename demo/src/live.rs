//! The demo's foreground until it stops: read the cluster's own XML feed, draw it (the live
//! view) or log it (plain output), keep each host's CPU history, and write `--capture` frames.

use crate::state::Shared;
use crate::tui::{self, FrameInfo, History, Input, Model, Screen};
use crate::view::ClusterView;
use crate::{net, Error, Summary};
use gmond_rs::daemon::StopHandle;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many events the live view keeps at hand (the terminal shows those that fit).
const EVENTS_SHOWN: usize = 12;
/// Wall time between plain status lines.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Wall time between capture frames.
const CAPTURE_EVERY: Duration = Duration::from_secs(10);

/// What the foreground shows and how.
pub(crate) struct Setup<'a> {
    pub shared: &'a Shared,
    /// The cluster's XML feed.
    pub feed: SocketAddr,
    /// Title and first lines of every frame.
    pub title: String,
    pub header: Vec<String>,
    /// CPU utilisation drawn as overloaded.
    pub threshold: f64,
    pub speedup: f64,
    pub wall_start: Instant,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Draw on the terminal (else log a status line every few seconds).
    pub tui: bool,
    /// A VM's entries on a host it left are no longer refreshed: older than this (s), they
    /// are stale.
    pub stale_s: u64,
}

/// Runs until `stop` (also set by `q` or Ctrl-C in the live view) or the duration; the
/// terminal is restored before it returns.
pub(crate) fn run(
    setup: &Setup,
    mut capture: Option<&mut Capture>,
    stop: &StopHandle,
) -> Result<(), Error> {
    let mut screen = if setup.tui {
        Some(Screen::enter()?)
    } else {
        None
    };
    let mut view = ClusterView::default();
    let mut history = History::default();
    let mut last_log = Instant::now();
    loop {
        let stopping = stop.is_stopped()
            || setup
                .duration
                .is_some_and(|d| setup.wall_start.elapsed() >= d);
        refresh(&mut view, setup);
        let info = frame_info(setup, &view);
        history.record(setup.shared.figures(setup.speedup).sim_ms, &view);
        let model = Model {
            info: &info,
            view: &view,
            history: &history,
        };
        match screen.as_mut() {
            Some(s) => s.draw(&model)?,
            None if last_log.elapsed() >= LOG_EVERY => {
                last_log = Instant::now();
                log_status(&view);
            }
            None => {}
        }
        if let Some(c) = capture.as_deref_mut() {
            c.frame_if_due(&model, stopping);
        }
        if stopping {
            return Ok(());
        }
        match screen.as_mut() {
            Some(s) => {
                if s.wait(Duration::from_millis(250))? == Input::Quit {
                    stop.stop();
                }
            }
            None => {
                stop.sleep(Duration::from_millis(500));
            }
        }
    }
}

/// The feed as it is now; the last good view if it cannot be read.
fn refresh(view: &mut ClusterView, setup: &Setup) {
    if let Some(xml) = net::read_feed(setup.feed) {
        match ClusterView::from_xml(&xml, setup.stale_s) {
            Ok(v) => *view = v,
            Err(e) => tracing::warn!(error = %e, "own feed unreadable"),
        }
    }
}

fn frame_info(setup: &Setup, view: &ClusterView) -> FrameInfo {
    let f = setup.shared.figures(setup.speedup);
    let status = format!(
        "simulated time {} (x{}, {:.0} s wall)   leader: {}   migrations: {} done, {} failed, \
         {} in flight",
        hms(f.sim_ms),
        setup.speedup,
        setup.wall_start.elapsed().as_secs_f64(),
        view.leader().unwrap_or("(none yet)"),
        f.done,
        f.failed,
        f.inflight
    );
    let events = setup
        .shared
        .latest_events(f.sim_ms.max(1), EVENTS_SHOWN)
        .into_iter()
        .map(|e| format!("{}  {}", hms(e.sim_ms), e.text))
        .collect();
    FrameInfo {
        title: setup.title.clone(),
        header: setup.header.clone(),
        status,
        events,
        footer: "q or Ctrl-C stops and prints a summary.  CPU = VM demand / host capacity \
                 (above 100 %: overcommitted); * = leader"
            .into(),
        threshold: setup.threshold,
    }
}

fn hms(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn log_status(view: &ClusterView) {
    let hosts: Vec<String> = view
        .hosts
        .iter()
        .map(|h| {
            format!(
                "{} cpu={:.0}% mem={:.0}% vms={}",
                h.name,
                h.cpu * 100.0,
                h.mem * 100.0,
                h.vms.len()
            )
        })
        .collect();
    tracing::info!(
        leader = view.leader().unwrap_or("-"),
        "{}",
        hosts.join(" | ")
    );
}

/// `--capture FILE`: plain-text frames of the live view, every 10 s of wall time from the 10th
/// on (the first frames are still empty) and at the end, then the summary. A capture that
/// cannot be written is a warning, never a reason to stop the demo.
pub(crate) struct Capture {
    path: PathBuf,
    wall_start: Instant,
    next: Duration,
}

impl Capture {
    /// Replaces `path` with a header saying how the capture was made.
    pub fn create(path: &Path, wall_start: Instant) -> Capture {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let head = format!(
            "# Frames of the gmond-rs demo's live view as plain text ({} columns), every 10 s of \
             wall time,\n# then the summary. Made by: ganglia-demo {}\n",
            tui::PLAIN_WIDTH,
            args.join(" ")
        );
        if let Err(e) = std::fs::write(path, head) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write capture");
        }
        Capture {
            path: path.to_owned(),
            wall_start,
            next: CAPTURE_EVERY,
        }
    }

    fn frame_if_due(&mut self, model: &Model, last: bool) {
        if last || self.wall_start.elapsed() >= self.next {
            self.next += CAPTURE_EVERY;
            self.append(&tui::plain(model, tui::PLAIN_WIDTH));
        }
    }

    pub fn summary(&self, summary: &Summary) {
        let text: Vec<String> = summary.to_string().lines().map(str::to_owned).collect();
        self.append(&text);
    }

    fn append(&self, lines: &[String]) {
        let mut text = format!(
            "---- {:.0} s (wall) after start ----\n",
            self.wall_start.elapsed().as_secs_f64()
        );
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        let written = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write capture");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_minutes_seconds() {
        assert_eq!(hms(0), "00:00:00");
        assert_eq!(hms(3_723_999), "01:02:03");
    }
}
