//! Reading a private file: gmond-rs's key file for authenticated datagrams (its text format
//! is `ganglia_wire::auth::KeyRing::parse`'s). Shared by gmond-rs and the balancer agent, so
//! both refuse the same files for the same reasons.
//!
//! A key file is refused unless it is a regular file owned by the user this process runs as
//! and neither readable nor writable by group or others (mode 0600 or 0400): a key anyone on
//! the host can read proves nothing, and one anyone can write lets them choose the key. The
//! checks are made on the opened file (`fstat`), so a rename between check and read cannot
//! slip another file in. Besides [`crate::FsSource`], this is the crate's only file access.

use crate::error::{ConfigError, Location};
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Longest key file read: some thousand keys, far more than rotation ever needs.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The text of `path`, if only this process's user may read or write it.
pub fn read_private(path: &Path) -> Result<String, ConfigError> {
    // Refuse a FIFO or a device before opening it: opening a FIFO would block.
    let pre = path.metadata().map_err(|e| io(path, e))?;
    if !pre.is_file() {
        return Err(invalid(path, "not a regular file".into()));
    }
    let file = File::open(path).map_err(|e| io(path, e))?;
    let meta = file.metadata().map_err(|e| io(path, e))?;
    check_private(path, &meta, rustix::process::geteuid().as_raw())?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| io(path, e))?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(invalid(
            path,
            format!("longer than {MAX_KEY_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// The ownership and mode rule, for the file's metadata and the process's effective uid.
pub fn check_private(path: &Path, meta: &Metadata, euid: u32) -> Result<(), ConfigError> {
    if !meta.is_file() {
        return Err(invalid(path, "not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(invalid(
            path,
            format!(
                "mode {mode:04o} lets group or others read or write this key file; allow only \
                 its owner (chmod 600 {})",
                path.display()
            ),
        ));
    }
    if meta.uid() != euid {
        return Err(invalid(
            path,
            format!(
                "key file owned by uid {}, but this process runs as uid {euid}; it must belong \
                 to the user that reads it (chown, or run as that user)",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

fn location(path: &Path) -> Location {
    Location::new(path.display().to_string().into(), 0, 0)
}

fn io(path: &Path, e: std::io::Error) -> ConfigError {
    ConfigError::Io {
        location: location(path),
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn invalid(path: &Path, message: String) -> ConfigError {
    ConfigError::Invalid {
        location: location(path),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gmond-conf-key-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn message(r: Result<impl std::fmt::Debug, ConfigError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn only_a_private_regular_file_of_ours_is_read() {
        let d = dir("private");
        let f = d.join("keys");
        fs::write(&f, "1 00\n").unwrap();
        for mode in [0o640, 0o604, 0o620, 0o602, 0o660, 0o644] {
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
            let m = message(read_private(&f));
            assert!(
                m.contains("chmod 600") && m.contains(&f.display().to_string()),
                "{m}"
            );
        }
        for mode in [0o600, 0o400] {
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(read_private(&f).unwrap(), "1 00\n");
        }
        let meta = fs::metadata(&f).unwrap();
        let m = message(check_private(&f, &meta, meta.uid() + 1));
        assert!(m.contains("owned by uid"), "{m}");
        assert!(message(read_private(&d)).contains("not a regular file"));
        assert!(message(read_private(&d.join("missing"))).contains("cannot read"));

        let big = d.join("big");
        fs::write(&big, "#".repeat(MAX_KEY_FILE_BYTES as usize + 1)).unwrap();
        fs::set_permissions(&big, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(message(read_private(&big)).contains("longer than"));
        fs::remove_dir_all(&d).unwrap();
    }
}
