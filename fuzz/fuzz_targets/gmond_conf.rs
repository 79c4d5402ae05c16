//! Fuzz target: arbitrary bytes through the whole gmond.conf loader (parse, includes,
//! validation); every accepted config must render to text that loads back to the same config.
//! The same bytes go through gmond-rs.conf's loader (same parser, its own option table).
#![no_main]
use gmond_conf::{parse_str_with, render, LoadOptions, MemSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // gmond reads bytes; the loader sees them as lossy UTF-8, like FsSource does.
    let text = String::from_utf8_lossy(data);
    // gmond-rs.conf has no include, so its loader touches no file.
    let _ = gmond_conf::rsconf::parse_rs(&text, "fuzz-rs.conf");
    // Includes resolve only in memory: a real file, a glob directory and a self-include.
    let world = MemSource::new()
        .with_file("inc.conf", "globals { mute = yes }")
        .with_file("dir/a.conf", "cluster { name = \"a\" }")
        .with_file("loop.conf", "include (\"loop.conf\")")
        .with_env("A", "239.2.11.71");
    let opts = LoadOptions::default();
    if let Ok(loaded) = parse_str_with(&text, "fuzz.conf", &world, &opts) {
        let _ = loaded
            .config
            .select_metrics(&["cpu_user", "disk_free_sda", "vm_x_cpu", ""]);
        let rendered = render(&loaded.config);
        match parse_str_with(&rendered, "rendered.conf", &MemSource::new(), &opts) {
            Ok(again) => assert_eq!(again.config, loaded.config, "{rendered}"),
            Err(e) => panic!("rendered config does not load: {e}\n{rendered}"),
        }
    }
});
