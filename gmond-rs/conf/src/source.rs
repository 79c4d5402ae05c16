//! Where included files and `${VAR}` values come from: the filesystem, or memory for tests/fuzzing.
//!
//! Keeping this behind a trait leaves the parser and resolver pure: only [`FsSource`] touches
//! the disk or the process environment.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

/// The outside world as the config loader sees it.
pub trait Source {
    /// The text of a file (invalid UTF-8 is replaced, as gmond reads bytes).
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// Whether `path` exists (gmond `stat`s include paths before globbing them).
    fn exists(&self, path: &Path) -> bool;
    /// Entry names in a directory (not sorted; the loader sorts them).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// An environment variable for `${NAME}`.
    fn env_var(&self, name: &str) -> Option<String>;
}

/// The real filesystem and process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsSource;

impl Source for FsSource {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        let bytes = std::fs::read(path)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Files and environment held in memory; directories are implied by file paths.
#[derive(Clone, Debug, Default)]
pub struct MemSource {
    files: BTreeMap<PathBuf, String>,
    env: HashMap<String, String>,
}

impl MemSource {
    /// An empty world: no files, no environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file.
    pub fn with_file(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.files.insert(path.into(), text.into());
        self
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }
}

impl Source for MemSource {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file in MemSource"))
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path) || self.files.keys().any(|f| f.starts_with(path))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|f| f.strip_prefix(dir).ok())
            .filter_map(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        names.dedup();
        if names.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(names)
    }

    fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
}

/// gmond's test for "this include path is a glob": `*`, `?`, or a `[...]` pair, `\` escaping.
pub(crate) fn has_wildcard(pattern: &str) -> bool {
    let mut nesting = 0u32;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '?' | '*' => return true,
            '\\' if chars.next().is_none() => return false,
            '[' => nesting += 1,
            ']' if nesting > 0 => return true,
            _ => {}
        }
    }
    false
}

/// `fnmatch(pattern, name, FNM_PATHNAME | FNM_PERIOD)` for one path component.
pub(crate) fn fnmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // A leading dot must be matched by a literal dot (FNM_PERIOD).
    if n.first() == Some(&'.') && !matches!(p.first(), Some('.')) {
        let escaped_dot = p.len() >= 2 && p[0] == '\\' && p[1] == '.';
        if !escaped_dot {
            return false;
        }
    }
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0usize, 0usize);
    // Backtracking point for the most recent `*`: (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ni));
                pi += 1;
                continue;
            }
            Some('?') if n[ni] != '/' => Some(1),
            Some('[') => match bracket(&p[pi..], n[ni]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                // An unclosed `[` is an ordinary character.
                None => (n[ni] == '[').then_some(1),
            },
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == n[ni]).then_some(2),
            Some(c) => (*c == n[ni]).then_some(1),
            None => None,
        };
        match step {
            Some(len) => {
                pi += len;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) if n[sn] != '/' => {
                    star = Some((sp, sn + 1));
                    pi = sp;
                    ni = sn + 1;
                }
                _ => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the bracket expression at the start of `p`: (matched, pattern length).
fn bracket(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|hi| *hi != ']') {
            let hi = p[i + 2];
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
    Some((matched != negate && c != '/', i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_detection_follows_gmond() {
        assert!(has_wildcard("/etc/ganglia/conf.d/*.conf"));
        assert!(has_wildcard("a?b"));
        assert!(has_wildcard("a[bc]"));
        assert!(!has_wildcard("a[bc"));
        assert!(!has_wildcard("plain.conf"));
        assert!(!has_wildcard("a\\"));
    }

    #[test]
    fn fnmatch_basics() {
        assert!(fnmatch("*.conf", "a.conf"));
        assert!(!fnmatch("*.conf", "a.conf.bak"));
        assert!(fnmatch("a?c", "abc"));
        assert!(fnmatch("[a-c]x", "bx"));
        assert!(!fnmatch("[!a-c]x", "bx"));
        assert!(fnmatch("[!a-c]x", "dx"));
        assert!(fnmatch("*", "x"));
        assert!(fnmatch("a*b*c", "aXXbYYc"));
        assert!(!fnmatch("a*b*c", "aXXbYY"));
        assert!(fnmatch("\\*", "*"));
        assert!(!fnmatch("\\*", "x"));
    }

    #[test]
    fn fnmatch_leading_dot_needs_a_literal_dot() {
        assert!(!fnmatch("*.conf", ".hidden.conf"));
        assert!(!fnmatch("?x", ".x"));
        assert!(fnmatch(".*", ".hidden"));
    }

    #[test]
    fn mem_source_lists_directories() {
        let m = MemSource::new()
            .with_file("/d/a.conf", "")
            .with_file("/d/sub/b.conf", "");
        let mut names = m.list_dir(Path::new("/d")).unwrap_or_default();
        names.sort();
        assert_eq!(names, ["a.conf", "sub"]);
        assert!(m.list_dir(Path::new("/nope")).is_err());
        assert!(m.exists(Path::new("/d")));
    }
}
