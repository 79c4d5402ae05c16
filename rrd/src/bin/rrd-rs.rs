//! `rrd-rs`: an rrdtool-like command line (create, update, fetch, info, last) over the rrd crate.

use std::process::ExitCode;

use rrd::{Cf, Layout, Rrd, RrdFile, Update};

const USAGE: &str = "usage:
  rrd-rs create FILE [--step|-s N] [--start|-b T] [--no-overwrite|-O] DS:name:TYPE:hb:min:max... RRA:CF:xff:steps:rows...
  rrd-rs update FILE [--template|-t ds1:ds2...] T:V[:V...]...
  rrd-rs fetch FILE CF [--start|-s T] [--end|-e T] [--resolution|-r N]
  rrd-rs info FILE
  rrd-rs last FILE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("ERROR: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Integer seconds, `now`/`N`, or a negative offset from now.
fn parse_time(s: &str) -> Result<i64, String> {
    if s == "now" || s == "N" {
        return Ok(now());
    }
    let v: i64 = s.parse().map_err(|_| format!("cannot parse time {s:?}"))?;
    Ok(if v < 0 { now() + v } else { v })
}

/// Options (long name, value) and positional arguments.
type Parsed<'a> = (Vec<(&'static str, Option<&'a str>)>, Vec<&'a str>);

/// Splits `--opt value`, `--opt=value` and `-o value` options from positional arguments.
fn options<'a>(
    args: &'a [String],
    with_value: &[(&'static str, &'static str)],
    flags: &[(&'static str, &'static str)],
) -> Result<Parsed<'a>, String> {
    let mut opts = Vec::new();
    let mut pos = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (a, None),
        };
        if a == "--" {
            pos.extend(args[i + 1..].iter().map(String::as_str));
            break;
        }
        if let Some((long, _)) = with_value.iter().find(|(l, s)| *l == name || *s == name) {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .map(String::as_str)
                        .ok_or_else(|| format!("option {name} needs a value"))?
                }
            };
            opts.push((*long, Some(v)));
        } else if let Some((long, _)) = flags.iter().find(|(l, s)| *l == name || *s == name) {
            opts.push((*long, None));
        } else if a.starts_with("--") || (a.starts_with('-') && a.len() == 2) {
            return Err(format!("unknown option {a}"));
        } else {
            pos.push(a);
        }
        i += 1;
    }
    Ok((opts, pos))
}

fn load(file: &str) -> Result<Rrd, String> {
    let b = std::fs::read(file).map_err(|e| format!("opening '{file}': {e}"))?;
    Rrd::from_bytes(&b).map_err(|e| format!("{file}: {e}"))
}

fn run(args: &[String]) -> Result<String, String> {
    let Some(cmd) = args.first() else {
        return Err(USAGE.to_string());
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "create" => {
            let (opts, pos) = options(
                rest,
                &[("--step", "-s"), ("--start", "-b")],
                &[("--no-overwrite", "-O")],
            )?;
            let (file, specs) = pos.split_first().ok_or(USAGE)?;
            let mut step = 300;
            let mut start = now() - 10;
            let mut no_overwrite = false;
            for (k, v) in opts {
                match (k, v) {
                    ("--step", Some(v)) => {
                        step = v.parse().map_err(|_| format!("bad step {v:?}"))?;
                    }
                    ("--start", Some(v)) => start = parse_time(v)?,
                    ("--no-overwrite", _) => no_overwrite = true,
                    _ => {}
                }
            }
            let layout = Layout::from_specs(step, start, specs).map_err(|e| e.to_string())?;
            let r = if no_overwrite {
                RrdFile::create_new(file, &layout)
            } else {
                RrdFile::create(file, &layout)
            };
            r.map_err(|e| e.to_string())?;
            Ok(String::new())
        }
        "update" => {
            let (opts, pos) = options(rest, &[("--template", "-t")], &[])?;
            let (file, ups) = pos.split_first().ok_or(USAGE)?;
            if ups.is_empty() {
                return Err("Not enough arguments".to_string());
            }
            let mut f = RrdFile::open(file).map_err(|e| e.to_string())?;
            let template = match opts.iter().find(|(k, _)| *k == "--template") {
                Some((_, Some(t))) => {
                    Some(rrd::Template::new(t, f.ds()).map_err(|e| format!("{file}: {e}"))?)
                }
                _ => None,
            };
            // Parse lazily so a malformed argument stops the batch where rrdtool would.
            let mut parsed = Vec::with_capacity(ups.len());
            let mut parse_err = None;
            for u in ups {
                let parsed_one = match &template {
                    Some(t) => t.parse(u),
                    None => Update::parse(u),
                };
                match parsed_one {
                    Ok(u) => parsed.push(u),
                    Err(e) => {
                        parse_err = Some(e);
                        break;
                    }
                }
            }
            f.update_many(&parsed).map_err(|e| format!("{file}: {e}"))?;
            match parse_err {
                Some(e) => Err(format!("{file}: {e}")),
                None => Ok(String::new()),
            }
        }
        "fetch" => {
            let (opts, pos) = options(
                rest,
                &[("--start", "-s"), ("--end", "-e"), ("--resolution", "-r")],
                &[],
            )?;
            let [file, cf] = pos[..] else {
                return Err(USAGE.to_string());
            };
            let mut end = now();
            let mut start = None;
            let mut res = 1;
            for (k, v) in opts {
                match (k, v) {
                    ("--start", Some(v)) => start = Some(v),
                    ("--end", Some(v)) => end = parse_time(v)?,
                    ("--resolution", Some(v)) => {
                        res = v.parse().map_err(|_| format!("bad resolution {v:?}"))?;
                    }
                    _ => {}
                }
            }
            let start = match start {
                Some(s) => parse_time(s)?,
                None => end - 86400,
            };
            if start < 3600 * 24 * 365 * 10 {
                return Err(format!(
                    "the first entry to fetch should be after 1980 ({start})"
                ));
            }
            let cf = Cf::parse(cf).map_err(|e| e.to_string())?;
            let rrd = load(file)?;
            let f = rrd.fetch(cf, start, end, res).map_err(|e| e.to_string())?;
            Ok(rrd::fetch_text(&f))
        }
        "info" => {
            let [file] = rest else {
                return Err(USAGE.to_string());
            };
            let rrd = load(file.as_str())?;
            Ok(rrd::info_text(file.as_str(), &rrd.info()))
        }
        "last" => {
            let [file] = rest else {
                return Err(USAGE.to_string());
            };
            Ok(format!("{}\n", load(file.as_str())?.last_update().secs))
        }
        _ => Err(USAGE.to_string()),
    }
}
