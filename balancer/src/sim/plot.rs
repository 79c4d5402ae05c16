//! `--plot`: draws a [`Recording`] (host CPU utilisation over simulated time, migrations, the
//! policy's threshold) as a PNG with plotters' bitmap backend.
//!
//! No text is drawn through plotters: its font features pull in system libraries
//! (fontconfig/freetype). The few axis numbers are drawn with a built-in 3x5 pixel digit font
//! instead, so the build stays pure Rust.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::engine::Recording;
use crate::error::{BalancerError, Result};
use crate::policy::{Detector, PolicySpec};

/// Above this many hosts only the min/mean/max envelope and the busiest hosts are drawn: a few
/// hundred overlapping lines are unreadable and slow.
pub const MAX_HOST_LINES: usize = 12;
/// Hosts drawn individually in the envelope mode.
pub const BUSIEST_HOSTS: usize = 10;

/// Default image size.
pub const DEFAULT_SIZE: (u32, u32) = (1200, 600);

/// The single CPU threshold above which the policy calls a host overloaded, if it has one
/// (adaptive detectors such as IQR/MAD/LR have none to draw).
pub fn overload_threshold(spec: &PolicySpec) -> Option<f64> {
    match spec.policy.as_str() {
        "naive-threshold" => Some(spec.naive.threshold),
        "hotspot" => Some(spec.hotspot.threshold),
        "consolidate" | "composed" if spec.beloglazov_detector() == Some(Detector::Thr) => {
            Some(spec.consolidate.threshold)
        }
        _ => None,
    }
}

fn draw_err<E: std::error::Error + Send + Sync>(
    path: &Path,
    e: DrawingAreaErrorKind<E>,
) -> BalancerError {
    BalancerError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Per-tick (min, mean, max) over hosts.
fn envelope(rec: &Recording) -> Vec<(f64, f64, f64)> {
    (0..rec.times_s.len())
        .map(|k| {
            let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
            for s in &rec.util {
                let u = s.get(k).copied().unwrap_or(0.0);
                lo = lo.min(u);
                hi = hi.max(u);
                sum += u;
            }
            let n = rec.util.len().max(1) as f64;
            (lo.min(hi), sum / n, hi.max(lo))
        })
        .collect()
}

/// Hosts to draw as their own line: all of them in small clusters, else the busiest by mean
/// utilisation (ties by index, so the choice is deterministic).
pub fn hosts_drawn(rec: &Recording) -> Vec<usize> {
    if rec.util.len() <= MAX_HOST_LINES {
        return (0..rec.util.len()).collect();
    }
    let mut by_mean: Vec<(f64, usize)> = rec
        .util
        .iter()
        .enumerate()
        .map(|(h, s)| (s.iter().sum::<f64>() / s.len().max(1) as f64, h))
        .collect();
    by_mean.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut v: Vec<usize> = by_mean
        .into_iter()
        .take(BUSIEST_HOSTS)
        .map(|(_, h)| h)
        .collect();
    v.sort_unstable();
    v
}

/// Draws `rec` into a `width` x `height` PNG at `path`: x = simulated time, y = host CPU
/// utilisation; one thin line per host (or the envelope plus the busiest hosts), red ticks
/// along the bottom for migrations (taller where more started in that round) with dots on the
/// source host's line where it is drawn, and an orange line at the policy's threshold. The y
/// axis is labelled every 0.25, the x axis in hours.
pub fn render_png(rec: &Recording, path: &Path, width: u32, height: u32) -> Result<()> {
    check_size(width, height)?;
    let e = |x| draw_err(path, x);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let axes = Axes::of(rec);
    let m = MARGIN;
    let plot_area = root.margin(m.top as u32, m.bottom as u32, m.left as u32, m.right as u32);
    let mut chart = ChartBuilder::on(&plot_area)
        .build_cartesian_2d(0f64..axes.t_end, 0f64..axes.y_max)
        .map_err(e)?;
    draw_grid(&mut chart, &axes).map_err(e)?;
    let drawn = hosts_drawn(rec);
    draw_hosts(&mut chart, rec, &drawn, &axes).map_err(e)?;
    draw_migrations(&mut chart, rec, &drawn, &axes).map_err(e)?;
    draw_frame(&root, &axes, (width, height)).map_err(e)?;
    root.present().map_err(e)?;
    tracing::info!(path = %path.display(), hosts = rec.util.len(), drawn = drawn.len(),
        migrations = rec.migrations.len(), "plot written");
    Ok(())
}

/// What drawing into a plotters area returns.
type Drawn<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// The chart: simulated seconds by utilisation.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Space around the chart for the axis numbers, pixels.
struct Margin {
    left: i32,
    bottom: i32,
    top: i32,
    right: i32,
}

const MARGIN: Margin = Margin {
    left: 44,
    bottom: 30,
    top: 12,
    right: 12,
};

/// What the axes span and where their grid lines fall.
struct Axes {
    /// Last simulated second (at least 1).
    t_end: f64,
    /// Top of the y axis: the highest utilisation (at least 1, at most 4) rounded up to 0.25.
    y_max: f64,
    /// Grid lines across the y axis, every 0.25.
    ticks_y: Vec<f64>,
    /// Grid lines across the x axis, every [`hour_step`] hours.
    ticks_x: Vec<f64>,
}

impl Axes {
    fn of(rec: &Recording) -> Axes {
        let t_end = rec.times_s.last().copied().unwrap_or(0).max(1) as f64;
        let u_max = rec
            .util
            .iter()
            .flatten()
            .copied()
            .filter(|u| u.is_finite())
            .fold(1.0f64, f64::max)
            .min(4.0);
        let y_max = (u_max * 1.05 * 4.0).ceil() / 4.0;
        let ticks_y = (0..)
            .map(|i| f64::from(i) * 0.25)
            .take_while(|y| *y <= y_max + 1e-9)
            .collect();
        let hour_step = hour_step(t_end);
        let ticks_x = (0..)
            .map(|i| f64::from(i) * hour_step * 3600.0)
            .take_while(|x| *x <= t_end)
            .collect();
        Axes {
            t_end,
            y_max,
            ticks_y,
            ticks_x,
        }
    }
}

fn draw_grid<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, axes: &Axes) -> Drawn<DB> {
    let grid = RGBColor(225, 225, 225);
    let (t_end, y_max) = (axes.t_end, axes.y_max);
    for &y in &axes.ticks_y {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, y), (t_end, y)],
            grid,
        )))?;
    }
    for &x in &axes.ticks_x {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, y_max)],
            grid,
        )))?;
    }
    Ok(())
}

/// The hosts' lines (with the envelope when not all are drawn) and the policy's threshold.
fn draw_hosts<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    rec: &Recording,
    drawn: &[usize],
    axes: &Axes,
) -> Drawn<DB> {
    let times: Vec<f64> = rec.times_s.iter().map(|&t| t as f64).collect();
    if drawn.len() < rec.util.len() {
        let env = envelope(rec);
        let mut band: Vec<(f64, f64)> = times.iter().zip(&env).map(|(&t, m)| (t, m.2)).collect();
        band.extend(times.iter().zip(&env).rev().map(|(&t, m)| (t, m.0)));
        chart.draw_series(std::iter::once(Polygon::new(band, RGBColor(200, 215, 235))))?;
        chart.draw_series(LineSeries::new(
            times.iter().zip(&env).map(|(&t, m)| (t, m.1)),
            BLACK.stroke_width(2),
        ))?;
    }
    for (i, &h) in drawn.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart.draw_series(LineSeries::new(
            times.iter().copied().zip(rec.util[h].iter().copied()),
            colour.stroke_width(1),
        ))?;
    }
    if let Some(thr) = rec.threshold {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, thr), (axes.t_end, thr)],
            RGBColor(255, 140, 0).stroke_width(2),
        )))?;
    }
    Ok(())
}

/// Red ticks along the bottom and dots on the source hosts' lines.
fn draw_migrations<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    rec: &Recording,
    drawn: &[usize],
    axes: &Axes,
) -> Drawn<DB> {
    // One tick per decision round with moves, its height scaled by how many started then, so
    // that busy runs read as a histogram rather than a solid bar.
    let mut per_round: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    for m in &rec.migrations {
        *per_round.entry(m.t_s).or_default() += 1;
    }
    let busiest = per_round.values().copied().max().unwrap_or(1) as f64;
    let mark = axes.y_max * 0.08;
    chart.draw_series(per_round.iter().map(|(&t, &n)| {
        let x = t as f64;
        let h = mark * (0.3 + 0.7 * n as f64 / busiest);
        PathElement::new(vec![(x, 0.0), (x, h)], RED.stroke_width(1))
    }))?;
    chart.draw_series(rec.migrations.iter().filter_map(|m| {
        let k = rec.times_s.binary_search(&m.t_s).ok()?;
        drawn.binary_search(&m.from).ok()?;
        let u = rec.util.get(m.from)?.get(k).copied()?;
        Some(Circle::new((m.t_s as f64, u), 3, RED.filled()))
    }))?;
    Ok(())
}

/// The frame and the axis numbers, in backend pixels.
fn draw_frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    axes: &Axes,
    (width, height): (u32, u32),
) -> Drawn<DB> {
    let (x0, y0) = (MARGIN.left, MARGIN.top);
    let (x1, y1) = (width as i32 - MARGIN.right, height as i32 - MARGIN.bottom);
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK))?;
    let px_y = |y: f64| y1 - ((y / axes.y_max) * f64::from(y1 - y0)).round() as i32;
    let px_x = |x: f64| x0 + ((x / axes.t_end) * f64::from(x1 - x0)).round() as i32;
    for &y in &axes.ticks_y {
        let label = format!("{y:.2}");
        let w = text_width(&label);
        draw_text(root, &label, x0 - 4 - w, px_y(y) - 5)?;
    }
    for &x in &axes.ticks_x {
        let label = hours_label(x / 3600.0);
        let w = text_width(&label);
        draw_text(root, &label, px_x(x) - w / 2, y1 + 6)?;
    }
    draw_text(root, "h", x1 - text_width("h"), y1 + 18)
}

/// Refuses image sizes too small for the axes or too large to allocate (checked by the binary
/// before a long simulation, too).
pub fn check_size(width: u32, height: u32) -> Result<()> {
    if !(200..=8192).contains(&width) || !(150..=8192).contains(&height) {
        return Err(BalancerError::Config(format!(
            "plot size {width}x{height} outside 200x150..8192x8192"
        )));
    }
    Ok(())
}

/// Hours between vertical grid lines: about ten lines whatever the run length.
fn hour_step(t_end_s: f64) -> f64 {
    let hours = t_end_s / 3600.0;
    [0.25, 0.5, 1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, 168.0]
        .into_iter()
        .find(|s| hours / s <= 12.0)
        .unwrap_or(720.0)
}

/// `1.5` -> "1.5", `2.0` -> "2", `0.25` -> "0.25".
fn hours_label(h: f64) -> String {
    let s = format!("{h:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Pixel size of one font dot.
const DOT: i32 = 2;

/// 3x5 glyphs, one row per `u8` (bit 2 = left column).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        'h' => [4, 4, 7, 5, 5],
        _ => return None,
    })
}

fn text_width(s: &str) -> i32 {
    s.chars().count() as i32 * 4 * DOT
}

fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    s: &str,
    x: i32,
    y: i32,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (i, c) in s.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        let cx = x + i as i32 * 4 * DOT;
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    let (px, py) = (cx + col * DOT, y + r as i32 * DOT);
                    area.draw(&Rectangle::new(
                        [(px, py), (px + DOT - 1, py + DOT - 1)],
                        BLACK.filled(),
                    ))?;
                }
            }
        }
    }
    Ok(())
}
