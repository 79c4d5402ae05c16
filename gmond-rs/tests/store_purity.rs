//! Architecture invariant check: the cluster store (src/store) is sans-IO. It never reads the
//! clock, touches sockets or files, spawns threads or uses tokio; time and bytes are inputs.
//! (It lives inside the gmond-rs crate, so `cargo tree` cannot check this; the source can.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "SystemTime::now",
    "Instant::now",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "std::fs",
    "File::",
    "thread::spawn",
    "Mutex",
    "RwLock",
    "RefCell",
    "unsafe",
];

#[test]
fn the_store_does_no_io_and_reads_no_clock() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            // Comments may talk about what the daemon does with these.
            let code = line.split("//").next().unwrap();
            for word in FORBIDDEN {
                assert!(
                    !code.contains(word),
                    "{}:{}: `{word}` in the store: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
    assert!(files >= 5, "found {files} store files in {}", dir.display());
}
