//! Which metrics a reader of the XML view wants: a short list of name patterns, so that a
//! client that needs a few metrics of every host (a balancer agent electing its leader) is
//! served, and parses, a document of those alone instead of the whole cluster.
//!
//! A pattern is a metric name, a prefix (`vnode_*`), a suffix (`*.vcpu_util`) or `*`; a list
//! is comma-separated. The same list travels as gmond-rs's query request,
//! `METRICS <list>\n` (see [`MetricFilter::request_line`]), and filters the agent's own parse
//! of a plain gmond document, so both ends agree on what "wanted" means.
//!
//! A request may also say which EXTRA_ELEMENTs the client reads, `METRICS <list> EXTRAS
//! <names>\n`, in the same pattern syntax: the answer then carries only those (a balancer
//! agent reads gmond-rs's authentication mark and none of gmond's GROUP, TITLE and DESC,
//! which were about half of the bytes it was sent). Without it every extra is sent.
//!
//! Bounded for a hostile client: at most [`MAX_PATTERNS`] patterns of at most
//! [`MAX_PATTERN_LEN`] bytes, and a request line of at most [`MAX_REQUEST_LEN`] bytes.

use std::fmt;

/// Patterns in one list, at most.
pub const MAX_PATTERNS: usize = 64;
/// Bytes of one pattern, at most (a metric name on the wire is shorter than a datagram).
pub const MAX_PATTERN_LEN: usize = 255;
/// Bytes of a request line, newline included, at most.
pub const MAX_REQUEST_LEN: usize = 4096;
/// The request verb.
const VERB: &str = "METRICS ";
/// The keyword before the list of extras a request reads.
const EXTRAS: &str = " EXTRAS ";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Any,
}

impl Pattern {
    fn matches(&self, name: &[u8]) -> bool {
        match self {
            Pattern::Exact(p) => name == p.as_bytes(),
            Pattern::Prefix(p) => name.starts_with(p.as_bytes()),
            Pattern::Suffix(p) => name.ends_with(p.as_bytes()),
            Pattern::Any => true,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(p) => f.write_str(p),
            Pattern::Prefix(p) => write!(f, "{p}*"),
            Pattern::Suffix(p) => write!(f, "*{p}"),
            Pattern::Any => f.write_str("*"),
        }
    }
}

/// A list of metric-name patterns; a metric is wanted when any pattern matches its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricFilter {
    patterns: Vec<Pattern>,
    /// The EXTRA_ELEMENTs wanted, by NAME; `None`: all.
    extras: Option<Vec<Pattern>>,
}

/// Why a pattern list or request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("more than {MAX_PATTERNS} patterns")]
    TooMany,
    #[error("pattern longer than {MAX_PATTERN_LEN} bytes")]
    TooLong,
    #[error("empty pattern")]
    Empty,
    #[error("pattern {0:?}: '*' only as the whole pattern, its first or its last character")]
    Wildcard(String),
    #[error("pattern {0:?}: only printable ASCII without spaces or commas")]
    Character(String),
    #[error(
        "request is not `METRICS <patterns>[ EXTRAS <patterns>]` on one line of at most {MAX_REQUEST_LEN} bytes"
    )]
    Request,
}

impl MetricFilter {
    /// Parses a comma-separated list (`balancer_mode,vnode_*,*.vcpu_util`).
    pub fn parse(list: &str) -> Result<MetricFilter, FilterError> {
        Ok(MetricFilter {
            patterns: patterns(list)?,
            extras: None,
        })
    }

    /// `*`: every metric.
    pub fn everything() -> MetricFilter {
        MetricFilter {
            patterns: vec![Pattern::Any],
            extras: None,
        }
    }

    /// The same metrics, with only the EXTRA_ELEMENTs named in `list` (same syntax).
    pub fn with_extras(mut self, list: &str) -> Result<MetricFilter, FilterError> {
        self.extras = Some(patterns(list)?);
        Ok(self)
    }

    /// Whether every EXTRA_ELEMENT is wanted (no `EXTRAS` list).
    pub fn all_extras(&self) -> bool {
        self.extras.is_none()
    }

    /// Whether the EXTRA_ELEMENT called `name` is wanted.
    pub fn keeps_extra(&self, name: &[u8]) -> bool {
        self.extras
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| p.matches(name)))
    }

    /// Whether the metric called `name` is wanted.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.matches(name))
    }

    /// The query a client sends to ask for these metrics: `METRICS <list>\n`, or
    /// `METRICS <list> EXTRAS <list>\n`.
    pub fn request_line(&self) -> String {
        match &self.extras {
            None => format!("{VERB}{self}\n"),
            Some(list) => format!("{VERB}{self}{EXTRAS}{}\n", join(list)),
        }
    }

    /// Reads a request line (without or with its newline) as a client sent it.
    pub fn from_request(line: &[u8]) -> Result<MetricFilter, FilterError> {
        if line.len() > MAX_REQUEST_LEN {
            return Err(FilterError::Request);
        }
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|_| FilterError::Request)?;
        let rest = text.strip_prefix(VERB).ok_or(FilterError::Request)?;
        match rest.split_once(EXTRAS) {
            None => MetricFilter::parse(rest),
            Some((list, extras)) => MetricFilter::parse(list)?.with_extras(extras),
        }
    }
}

/// Metric names in the list (the metrics wanted, not the extras).
impl fmt::Display for MetricFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(&self.patterns))
    }
}

fn join(list: &[Pattern]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn patterns(list: &str) -> Result<Vec<Pattern>, FilterError> {
    let mut out = Vec::new();
    for p in list.split(',') {
        if out.len() == MAX_PATTERNS {
            return Err(FilterError::TooMany);
        }
        out.push(pattern(p)?);
    }
    Ok(out)
}

fn pattern(p: &str) -> Result<Pattern, FilterError> {
    if p.is_empty() {
        return Err(FilterError::Empty);
    }
    if p.len() > MAX_PATTERN_LEN {
        return Err(FilterError::TooLong);
    }
    if !p.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        return Err(FilterError::Character(p.to_string()));
    }
    if p == "*" {
        return Ok(Pattern::Any);
    }
    let stars = p.bytes().filter(|&b| b == b'*').count();
    match (stars, p.strip_suffix('*'), p.strip_prefix('*')) {
        (0, _, _) => Ok(Pattern::Exact(p.to_string())),
        (1, Some(prefix), _) => Ok(Pattern::Prefix(prefix.to_string())),
        (1, _, Some(suffix)) => Ok(Pattern::Suffix(suffix.to_string())),
        _ => Err(FilterError::Wildcard(p.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_prefixes_and_suffixes() {
        let f = MetricFilter::parse("balancer_mode,vnode_*,*.vcpu_util").unwrap();
        assert!(f.matches(b"balancer_mode"));
        assert!(!f.matches(b"balancer_mode2"));
        assert!(f.matches(b"vnode_cpu_num"));
        assert!(f.matches(b"web1.vcpu_util"));
        assert!(!f.matches(b"web1.vcpu_util.x"));
        assert!(!f.matches(b"load_one"));
        assert!(MetricFilter::parse("*").unwrap().matches(b"anything"));
    }

    #[test]
    fn request_round_trip() {
        let f = MetricFilter::parse("a,b*,*c").unwrap();
        assert_eq!(f.request_line(), "METRICS a,b*,*c\n");
        assert_eq!(
            MetricFilter::from_request(b"METRICS a,b*,*c\r\n").unwrap(),
            f
        );
    }

    #[test]
    fn a_request_may_name_the_extras_it_reads() {
        let f = MetricFilter::parse("a,*c")
            .unwrap()
            .with_extras("GMOND_RS_AUTH")
            .unwrap();
        assert_eq!(f.request_line(), "METRICS a,*c EXTRAS GMOND_RS_AUTH\n");
        assert_eq!(
            MetricFilter::from_request(f.request_line().as_bytes()),
            Ok(f.clone())
        );
        assert!(f.keeps_extra(b"GMOND_RS_AUTH") && !f.keeps_extra(b"GROUP"));
        assert!(!f.all_extras());
        let plain = MetricFilter::parse("a,*c").unwrap();
        assert!(plain.all_extras() && plain.keeps_extra(b"GROUP"));
        assert_ne!(plain.request_line(), f.request_line());
        for bad in [
            &b"METRICS a EXTRAS \n"[..],
            b"METRICS a EXTRAS x y\n",
            b"METRICS a EXTRAS a*b\n",
            b"METRICS a MORE x\n",
            b"METRICS a  EXTRAS x\n",
        ] {
            assert!(MetricFilter::from_request(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostile_lists_are_refused() {
        let many = vec!["m"; MAX_PATTERNS + 1].join(",");
        assert_eq!(MetricFilter::parse(&many), Err(FilterError::TooMany));
        assert!(MetricFilter::parse(&vec!["m"; MAX_PATTERNS].join(",")).is_ok());
        let long = "x".repeat(MAX_PATTERN_LEN + 1);
        assert_eq!(MetricFilter::parse(&long), Err(FilterError::TooLong));
        assert_eq!(MetricFilter::parse("a,,b"), Err(FilterError::Empty));
        assert!(matches!(
            MetricFilter::parse("a*b"),
            Err(FilterError::Wildcard(_))
        ));
        assert!(matches!(
            MetricFilter::parse("*a*"),
            Err(FilterError::Wildcard(_))
        ));
        assert!(matches!(
            MetricFilter::parse("a b"),
            Err(FilterError::Character(_))
        ));
        assert_eq!(
            MetricFilter::from_request(b"GET / HTTP/1.0\n"),
            Err(FilterError::Request)
        );
        assert_eq!(
            MetricFilter::from_request(&vec![b'M'; MAX_REQUEST_LEN + 1]),
            Err(FilterError::Request)
        );
        assert_eq!(
            MetricFilter::from_request(b"METRICS \xff\n"),
            Err(FilterError::Request)
        );
    }
}
