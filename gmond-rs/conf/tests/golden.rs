//! Golden tests: `tests/golden/ok/*.conf` must load and print as `*.expected`;
//! `tests/golden/err/*.conf` must fail with exactly the errors in `*.expected`.
//! Refresh after an intended change with `UPDATE_EXPECT=1 cargo test -p gmond-conf --test golden`
//! and review the diff.

// Test helpers outside #[test] fns: a panic is how they report failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::{Path, PathBuf};

use gmond_conf::{parse_str_with, FsSource, LoadOptions, Source};

/// The filesystem (paths relative to the crate, where cargo runs tests) and a fixed environment.
struct GoldenSource;

impl Source for GoldenSource {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        FsSource.read_to_string(path)
    }
    fn exists(&self, path: &Path) -> bool {
        FsSource.exists(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsSource.list_dir(dir)
    }
    fn env_var(&self, name: &str) -> Option<String> {
        (name == "GMOND_TEST_USER").then(|| "user-from-env".to_string())
    }
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new("tests/golden").join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("conf"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no cases in {}", dir.display());
    v
}

fn render(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.to_string_lossy();
    match parse_str_with(&text, &name, &GoldenSource, &LoadOptions::default()) {
        Ok(loaded) => Ok(format!("{loaded:#?}\n")),
        Err(e) => Err(format!("{e}\n")),
    }
}

/// Compares with (or, under UPDATE_EXPECT=1, rewrites) `path` with extension `.expected`.
fn check(path: &Path, actual: &str, failures: &mut Vec<String>) {
    let expected_path = path.with_extension("expected");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&expected_path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(&expected_path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{} differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            expected_path.display()
        )),
        Err(_) => failures.push(format!(
            "{} is missing; run with UPDATE_EXPECT=1. Actual:\n{actual}",
            expected_path.display()
        )),
    }
}

#[test]
fn ok_configs_match_their_dumps() {
    let mut failures = Vec::new();
    for path in cases("ok") {
        match render(&path) {
            Ok(dump) => check(&path, &dump, &mut failures),
            Err(e) => failures.push(format!("{} should load but fails:\n{e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn err_configs_fail_with_their_messages() {
    let mut failures = Vec::new();
    for path in cases("err") {
        match render(&path) {
            Err(errors) => check(&path, &errors, &mut failures),
            Ok(dump) => failures.push(format!("{} should fail but loads:\n{dump}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn empty_file_is_the_compiled_in_default() {
    let loaded = parse_str_with("", "empty", &GoldenSource, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.config, gmond_conf::Config::default());
    assert!(loaded.warnings.is_empty());
}
