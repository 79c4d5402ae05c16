//! Collection groups and the rules that bind their `metric { }` selectors to real metrics.
//!
//! gmond 3.7.2 rules: `name_match` (a regex, searched anywhere in the name) selects every
//! metric it matches and may build the title from captures `\1`..`\9`; a `name` selects the
//! metric of exactly that name, and if there is none, every metric whose name starts with it,
//! ignoring case (how dynamic metrics such as per-device ones are picked up).

use std::fmt;
use std::time::Duration;

use regex::Regex;

use crate::config::Config;
use crate::error::ConfigError;

/// One `collection_group { }`.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionGroup {
    /// Collect once at start (values then only re-sent every `time_threshold`).
    pub collect_once: bool,
    /// Collection period.
    pub collect_every: Duration,
    /// Send at least this often even when values do not change (the metric's TMAX).
    pub time_threshold: Duration,
    /// Selectors in file order.
    pub metrics: Vec<MetricSelector>,
}

/// One `metric { }` inside a collection group.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSelector {
    /// Which metrics it selects.
    pub matcher: MetricMatch,
    /// Send when the value moved by more than this; `None` (negative, the default) = off.
    pub value_threshold: Option<f64>,
    /// Title template (`\1`..`\9` expand only for `name_match`).
    pub title: Option<String>,
}

/// `name` or `name_match` (gmond prefers `name_match` when both are given).
#[derive(Clone, Debug, PartialEq)]
pub enum MetricMatch {
    /// `name = "..."`.
    Name(String),
    /// `name_match = "regex"`.
    Pattern(NamePattern),
}

/// A compiled `name_match` regex; compared and printed by its source text.
#[derive(Clone)]
pub struct NamePattern {
    source: String,
    regex: Regex,
}

impl NamePattern {
    /// Compiles `source`, or returns the regex crate's message as a [`ConfigError::Value`]
    /// about `name_match`.
    pub fn new(source: &str) -> Result<Self, ConfigError> {
        let regex = Regex::new(source).map_err(|e| ConfigError::Value {
            what: "name_match",
            message: e.to_string(),
        })?;
        Ok(NamePattern {
            source: source.to_string(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled regex.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }
}

impl PartialEq for NamePattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamePattern({:?})", self.source)
    }
}

/// A metric picked by a selector.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectedMetric {
    /// Index into `Config::collection_groups`.
    pub group: usize,
    /// Index of the selector inside the group.
    pub selector: usize,
    /// The metric's name, as in `available`.
    pub name: String,
    /// The selector's value threshold.
    pub value_threshold: Option<f64>,
    /// The title, captures substituted; `None` = use the metric's own title/name.
    pub title: Option<String>,
}

/// Result of binding all selectors to the metrics the modules offer.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Selection {
    /// In group order, then selector order, then `available` order.
    pub metrics: Vec<SelectedMetric>,
    /// (group, selector) pairs that matched nothing; gmond logs "Unable to find ... '%s'".
    pub unmatched: Vec<(usize, usize)>,
}

impl Config {
    /// Binds every collection-group selector to the metric names in `available`.
    ///
    /// A metric selected twice appears twice, as gmond puts the same callback in both groups.
    pub fn select_metrics(&self, available: &[&str]) -> Selection {
        let mut out = Selection::default();
        for (g, group) in self.collection_groups.iter().enumerate() {
            for (s, sel) in group.metrics.iter().enumerate() {
                let before = out.metrics.len();
                let mut push = |name: &str, title: Option<String>| {
                    out.metrics.push(SelectedMetric {
                        group: g,
                        selector: s,
                        name: name.to_string(),
                        value_threshold: sel.value_threshold,
                        title,
                    })
                };
                match &sel.matcher {
                    MetricMatch::Pattern(p) => {
                        for name in available {
                            if let Some(caps) = p.regex.captures(name) {
                                let title = sel.title.as_deref().map(|t| expand_title(t, &caps));
                                push(name, title);
                            }
                        }
                    }
                    MetricMatch::Name(wanted) => {
                        if available.contains(&wanted.as_str()) {
                            push(wanted, sel.title.clone());
                        } else {
                            for name in available.iter().filter(|n| starts_with_ci(n, wanted)) {
                                push(name, sel.title.clone());
                            }
                        }
                    }
                }
                if out.metrics.len() == before {
                    out.unmatched.push((g, s));
                }
            }
        }
        out
    }
}

fn starts_with_ci(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.is_char_boundary(prefix.len())
        && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Checks a `name_match` title template the way gmond does when it expands one: after a `\`
/// only a digit 1..9 may follow (a trailing `\` is dropped).
pub(crate) fn check_title_template(template: &str) -> Result<(), ConfigError> {
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                None | Some('1'..='9') => {}
                Some(other) => {
                    return Err(ConfigError::Value {
                        what: "title",
                        message: format!(
                            "title '{template}' has '\\{other}': only \\1..\\9 may follow a \
                             backslash"
                        ),
                    })
                }
            }
        }
    }
    Ok(())
}

/// Replaces `\1`..`\9` by the captures (missing groups become empty, like an unset PCRE group).
fn expand_title(template: &str, caps: &regex::Captures<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        if let Some(d) = chars.next() {
            let idx = d.to_digit(10).unwrap_or(0) as usize;
            if let Some(m) = caps.get(idx) {
                out.push_str(m.as_str());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(metrics: Vec<MetricSelector>) -> CollectionGroup {
        CollectionGroup {
            collect_once: false,
            collect_every: Duration::from_secs(20),
            time_threshold: Duration::from_secs(90),
            metrics,
        }
    }

    fn sel(matcher: MetricMatch, title: Option<&str>) -> MetricSelector {
        MetricSelector {
            matcher,
            value_threshold: Some(1.0),
            title: title.map(str::to_string),
        }
    }

    fn names(sel: &Selection) -> Vec<(usize, &str, Option<&str>)> {
        sel.metrics
            .iter()
            .map(|m| (m.group, m.name.as_str(), m.title.as_deref()))
            .collect()
    }

    #[test]
    fn exact_name_wins_over_prefix() {
        let cfg = Config {
            collection_groups: vec![group(vec![sel(
                MetricMatch::Name("cpu_num".into()),
                Some("CPU Count"),
            )])],
            ..Config::default()
        };
        let s = cfg.select_metrics(&["cpu_num", "cpu_num_extra"]);
        assert_eq!(names(&s), vec![(0, "cpu_num", Some("CPU Count"))]);
        assert!(s.unmatched.is_empty());
    }

    #[test]
    fn unknown_name_is_a_case_insensitive_prefix() {
        let cfg = Config {
            collection_groups: vec![group(vec![sel(
                MetricMatch::Name("Disk_".into()),
                Some("T"),
            )])],
            ..Config::default()
        };
        let s = cfg.select_metrics(&["disk_free_sda", "cpu_user", "DISK_total_sdb"]);
        assert_eq!(
            names(&s),
            vec![
                (0, "disk_free_sda", Some("T")),
                (0, "DISK_total_sdb", Some("T"))
            ]
        );
    }

    #[test]
    fn name_match_substitutes_captures_into_title() {
        let p = NamePattern::new(r"^vm_(\w+)_cpu$").unwrap();
        let cfg = Config {
            collection_groups: vec![
                group(vec![sel(MetricMatch::Name("nothing_here".into()), None)]),
                group(vec![sel(MetricMatch::Pattern(p), Some(r"CPU of \1 (\2)\"))]),
            ],
            ..Config::default()
        };
        let s = cfg.select_metrics(&["vm_web1_cpu", "vm_db_cpu", "vm_db_mem"]);
        assert_eq!(
            names(&s),
            vec![
                (1, "vm_web1_cpu", Some("CPU of web1 ()")),
                (1, "vm_db_cpu", Some("CPU of db ()"))
            ]
        );
        assert_eq!(s.unmatched, vec![(0, 0)]);
    }

    #[test]
    fn title_templates_are_checked() {
        assert!(check_title_template(r"a \1 b \9").is_ok());
        assert!(check_title_template(r"trailing \").is_ok());
        assert!(check_title_template(r"bad \0").is_err());
        assert!(check_title_template(r"bad \n").is_err());
        assert!(matches!(
            check_title_template(r"bad \0"),
            Err(ConfigError::Value { what: "title", .. })
        ));
    }

    #[test]
    fn bad_name_match_is_a_value_error_with_the_regex_message() {
        match NamePattern::new("cpu_(") {
            Err(ConfigError::Value { what, message }) => {
                assert_eq!(what, "name_match");
                assert!(message.contains("unclosed group"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prefix_match_does_not_split_utf8() {
        assert!(!starts_with_ci("é", "\u{c3}"));
        assert!(starts_with_ci("éa", "é"));
    }
}
