//! The daemon's side of authenticated datagrams: the key file on disk. Its text format and
//! all cryptography are `ganglia_wire::auth`'s; here are the checks on the file itself and
//! the key generator behind `gmond-rs-keygen`.
//!
//! A key file is read through `gmond_conf::keyfile` (a regular file, owned by this process's
//! user, mode 0600 or 0400; checked on the opened file), shared with the balancer agent.
//!
//! With `--auth FILE` on gmond-rs's command line (never in gmond.conf, which real gmond must
//! keep loading): every datagram the daemon sends is signed ([`AuthOptions::signer`], used by
//! `daemon::net::Outbound`, with the emitters reserving the trailer), and each
//! udp_recv_channel admits datagrams by its [`Mode`] ([`Gate`]). SIGHUP re-executes the
//! daemon, so the file is read again, new sender ids are drawn, and replay windows start
//! afresh (older datagrams stay refused by the clock-skew bound).

use crate::daemon::Error;
use crate::iostats::IoStats;
use ganglia_wire::auth::{
    Key, KeyRing, Rejection, Signer, Verdict, Verifier, VerifierConfig, KEY_LEN,
};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// What a udp_recv_channel does with signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Signatures are not looked at; trailers are ignored, as real gmond ignores them.
    None,
    /// Authentic and unsigned datagrams are accepted (authentic values are marked in the
    /// XML); a trailer that fails (forged, replayed, stale, unknown key) drops the datagram.
    Prefer,
    /// Only authentic datagrams are accepted.
    Require,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Mode::None),
            "prefer" => Ok(Mode::Prefer),
            "require" => Ok(Mode::Require),
            _ => Err(format!("{s:?} is not a mode: none, prefer or require")),
        }
    }
}

/// Labels of [`IoStats::auth_dropped_total`], in its order: unsigned datagrams on a
/// `require` channel, then [`Rejection::REASONS`].
pub const DROP_REASONS: [&str; 6] = [
    "unsigned",
    "malformed_trailer",
    "unknown_key",
    "bad_mac",
    "stale",
    "replay",
];

/// The daemon's authentication settings (from `--auth` and `--auth-recv`).
#[derive(Debug, Clone)]
pub struct AuthOptions {
    pub keys: KeyRing,
    /// Mode of every udp_recv_channel without one of its own.
    pub default_mode: Mode,
    /// Modes by receive port.
    pub modes: Vec<(u16, Mode)>,
    pub verifier: VerifierConfig,
}

impl AuthOptions {
    pub fn new(keys: KeyRing) -> Self {
        AuthOptions {
            keys,
            default_mode: Mode::Prefer,
            modes: Vec::new(),
            verifier: VerifierConfig::default(),
        }
    }

    /// Parses one `--auth-recv` value: `MODE` (every channel) or `PORT=MODE`.
    pub fn set_mode(&mut self, spec: &str) -> Result<(), String> {
        match spec.split_once('=') {
            None => self.default_mode = spec.parse()?,
            Some((port, mode)) => {
                let port: u16 = port
                    .parse()
                    .map_err(|_| format!("{port:?} is not a port number"))?;
                let mode = mode.parse()?;
                self.modes.retain(|(p, _)| *p != port);
                self.modes.push((port, mode));
            }
        }
        Ok(())
    }

    /// The mode of the receive channel on `port`.
    pub fn mode_for(&self, port: u16) -> Mode {
        self.modes
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(self.default_mode, |(_, m)| *m)
    }

    /// A signer for this process, with a fresh random sender id.
    pub fn signer(&self) -> Result<Signer, Error> {
        Ok(Signer::new(&self.keys, random_sender_id()?))
    }
}

/// A receive channel's admission rule; channels share one verifier (one replay window per
/// sender, whichever channel a datagram came in on).
#[derive(Clone)]
pub struct Gate {
    mode: Mode,
    verifier: Arc<Mutex<Verifier>>,
}

/// What a gate lets through.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<'a> {
    /// Give `body` to the store; `auth` is the key id when it was authenticated.
    Pass { body: &'a [u8], auth: Option<u32> },
    /// Drop it; the label is one of [`DROP_REASONS`].
    Drop(&'static str),
}

impl Gate {
    /// Gates for channels of the given modes, sharing one verifier.
    pub fn shared(opts: &AuthOptions) -> impl Fn(Mode) -> Gate {
        let verifier = Arc::new(Mutex::new(Verifier::new(opts.keys.clone(), opts.verifier)));
        move |mode| Gate {
            mode,
            verifier: verifier.clone(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Admits a batch: `f` is called with an admitter holding the verifier's lock once for
    /// the whole batch.
    pub fn batch<R>(&self, f: impl FnOnce(&mut dyn FnMut(&[u8], u64) -> Admit<'_>) -> R) -> R {
        let mut v = self.verifier.lock().unwrap_or_else(|e| e.into_inner());
        let mode = self.mode;
        f(&mut |bytes, now| admit(mode, &mut v, bytes, now))
    }
}

fn admit<'a>(mode: Mode, v: &mut Verifier, bytes: &'a [u8], now: u64) -> Admit<'a> {
    if mode == Mode::None {
        return Admit::Pass {
            body: bytes,
            auth: None,
        };
    }
    match v.verify(bytes, now) {
        Verdict::Authentic { body, key_id, .. } => Admit::Pass {
            body,
            auth: Some(key_id),
        },
        Verdict::Unsigned(body) if mode == Mode::Prefer => Admit::Pass { body, auth: None },
        Verdict::Unsigned(_) => Admit::Drop("unsigned"),
        Verdict::Rejected(r) => Admit::Drop(r.reason()),
    }
}

/// Counts one admission decision in `stats`.
pub fn count(stats: &IoStats, admitted: &Admit<'_>) {
    match admitted {
        Admit::Pass { auth: Some(_), .. } => {
            stats.auth_accepted_total.fetch_add(1, Ordering::Relaxed);
        }
        Admit::Pass { auth: None, .. } => {}
        Admit::Drop(reason) => {
            let i = DROP_REASONS.iter().position(|r| r == reason).unwrap_or(0);
            stats.auth_dropped_total[i].fetch_add(1, Ordering::Relaxed);
            warn_drops_at_most_every_minute(stats, reason);
        }
    }
}

/// Seconds since the epoch of the last drop warning (0: none yet), for all channels.
static LAST_DROP_WARNING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One `warn!` a minute at most, with the totals by reason: a forger on the segment can send
/// drops as fast as the link allows, and must not fill the log.
fn warn_drops_at_most_every_minute(stats: &IoStats, reason: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_DROP_WARNING.load(Ordering::Relaxed);
    if now < last.saturating_add(60)
        || LAST_DROP_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let totals: Vec<String> = DROP_REASONS
        .iter()
        .zip(&stats.auth_dropped_total)
        .map(|(r, n)| format!("{r}={}", n.load(Ordering::Relaxed)))
        .collect();
    tracing::warn!(latest = reason, totals = %totals.join(" "),
        "datagrams dropped by authentication (logged at most once a minute)");
}

// Keep the labels in step with the wire crate's.
const _: () = assert!(DROP_REASONS.len() == Rejection::REASONS.len() + 1);

/// Reads and parses a key file after checking who may read it (`gmond_conf::keyfile`).
pub fn read_key_file(path: &Path) -> Result<KeyRing, Error> {
    let text = gmond_conf::keyfile::read_private(path).map_err(|e| Error::KeyFile {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    KeyRing::parse(&text).map_err(|e| match e {
        ganglia_wire::Error::KeyFile { line, message } => Error::KeyFile {
            path: path.to_path_buf(),
            problem: format!("{}:{line}:1: {message}", path.display()),
        },
        other => key_error(path, other.to_string()),
    })
}

/// Appends a new random key to `path` (created with mode 0600 when missing) and returns its
/// id: `id` if given, else one more than the highest id in the file (1 in a new file).
///
/// An existing file must pass [`read_key_file`]'s checks and parse. The line is appended in
/// place (one `write`, then `fsync`), not through a rename: the file keeps its owner, and
/// its directory (often root's /etc) need not be writable. A line torn by a crash can only
/// be refused by the parser (a key is exactly 64 hex digits), never read as another key.
pub fn add_key(path: &Path, id: Option<u32>) -> Result<u32, Error> {
    let key = random_key()?;
    let exists = path.symlink_metadata().is_ok();
    let (mut file, id) = if exists {
        let ring = read_key_file(path)?;
        let id = match id {
            Some(id) if ring.key(id).is_some() => {
                return Err(key_error(path, format!("key {id} is already in the file")))
            }
            Some(id) => id,
            None => match ring.key_ids().max() {
                Some(max) => max
                    .checked_add(1)
                    .ok_or_else(|| key_error(path, "no key id left after 4294967295".into()))?,
                None => 1,
            },
        };
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| key_error(path, format!("cannot open for appending: {e}")))?;
        (file, id)
    } else {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| key_error(path, format!("cannot create: {e}")))?;
        (file, id.unwrap_or(1))
    };
    let mut line = String::new();
    if !exists {
        line.push_str(
            "# gmond-rs keys: \"ID HEX\" per line, 32 random bytes each; the first key signs\n\
             # unless a line \"sign ID\" names another. Made by gmond-rs-keygen. Keep mode 0600.\n",
        );
    }
    line.push_str(&format!("{id} {}\n", key.to_hex()));
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(path, format!("cannot write: {e}")))?;
    // What was written must read back, under the same checks the daemon makes.
    read_key_file(path)?;
    Ok(id)
}

/// 32 bytes from the operating system's random source.
pub fn random_key() -> Result<Key, Error> {
    let mut bytes = [0u8; KEY_LEN];
    getrandom::fill(&mut bytes).map_err(|e| Error::Config(format!("no random bytes: {e}")))?;
    Ok(Key::from_bytes(bytes))
}

/// A random 64-bit sender id for a [`ganglia_wire::auth::Signer`].
pub fn random_sender_id() -> Result<u64, Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Config(format!("no random bytes: {e}")))?;
    Ok(u64::from_ne_bytes(bytes))
}

fn key_error(path: &Path, problem: String) -> Error {
    Error::KeyFile {
        path: path.to_path_buf(),
        problem: format!("{}:0:0: {problem}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gmond-rs-auth-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn message(r: Result<impl std::fmt::Debug, Error>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn modes_gate_what_reaches_the_store() {
        use ganglia_wire::auth::Signer;
        let keys = KeyRing::new([(4, Key::from_bytes([9; 32]))], 4).unwrap();
        let mut opts = AuthOptions::new(keys.clone());
        opts.set_mode("require").unwrap();
        opts.set_mode("8650=prefer").unwrap();
        opts.set_mode("8651=none").unwrap();
        assert!(opts.set_mode("8652=maybe").is_err());
        assert!(opts.set_mode("x=none").is_err());
        assert_eq!(opts.mode_for(8649), Mode::Require);
        assert_eq!(opts.mode_for(8650), Mode::Prefer);
        assert_eq!(opts.mode_for(8651), Mode::None);
        let gate = Gate::shared(&opts);
        let (require, prefer, none) = (gate(Mode::Require), gate(Mode::Prefer), gate(Mode::None));
        let now = 1_700_000_000;
        let body = b"\x00\x00\x00\x88\x00\x00\x00\x00\x00\x00\x00\x01m\x00\x00\x00\x00\x00\x00\x00";
        let mut signed = Vec::new();
        let mut signer = Signer::new(&keys, 1);
        signer.sign(body, now, &mut signed);
        let mut again = Vec::new();
        signer.sign(body, now, &mut again);
        let run = |g: &Gate, d: &[u8]| {
            g.batch(|a| match a(d, now) {
                Admit::Pass { body, auth } => Ok((body.len(), auth)),
                Admit::Drop(r) => Err(r),
            })
        };
        assert_eq!(run(&require, body), Err("unsigned"));
        assert_eq!(run(&prefer, body), Ok((body.len(), None)));
        assert_eq!(run(&none, body), Ok((body.len(), None)));
        assert_eq!(run(&require, &signed), Ok((body.len(), Some(4))));
        // One verifier for all channels: the same datagram on another channel is a replay.
        assert_eq!(run(&prefer, &signed), Err("replay"));
        // `none` looks at nothing: the store gets the trailer too and ignores it, as gmond.
        assert_eq!(run(&none, &signed), Ok((signed.len(), None)));
        let mut forged = again.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(run(&prefer, &forged), Err("bad_mac"));
        assert_eq!(run(&prefer, &again), Ok((body.len(), Some(4))));

        let stats = IoStats::default();
        count(&stats, &Admit::Drop("replay"));
        count(
            &stats,
            &Admit::Pass {
                body,
                auth: Some(4),
            },
        );
        assert_eq!(stats.auth_dropped_total[5].load(Ordering::Relaxed), 1);
        assert_eq!(stats.auth_accepted_total.load(Ordering::Relaxed), 1);
        for (i, r) in Rejection::REASONS.iter().enumerate() {
            assert_eq!(DROP_REASONS[i + 1], *r);
        }
    }

    #[test]
    fn keygen_creates_0600_and_appends_next_ids() {
        let d = dir("gen");
        let f = d.join("keys");
        assert_eq!(add_key(&f, None).unwrap(), 1);
        let meta = fs::metadata(&f).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(add_key(&f, None).unwrap(), 2);
        assert_eq!(add_key(&f, Some(10)).unwrap(), 10);
        assert_eq!(add_key(&f, None).unwrap(), 11);
        assert!(message(add_key(&f, Some(2))).contains("already"));
        let ring = read_key_file(&f).unwrap();
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), [1, 2, 10, 11]);
        // The first key signs; keys are random and distinct.
        assert_eq!(ring.signing_key_id(), 1);
        assert_ne!(ring.key(1), ring.key(2));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_others_can_read_or_write_is_refused() {
        let d = dir("mode");
        let f = d.join("keys");
        add_key(&f, None).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        let m = message(read_key_file(&f));
        assert!(
            m.contains("chmod 600") && m.contains(&f.display().to_string()),
            "{m}"
        );
        // Nor will keygen add to it.
        assert!(message(add_key(&f, None)).contains("chmod 600"));
        fs::set_permissions(&f, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_key_file(&f).is_ok());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn content_errors_name_the_line() {
        let d = dir("content");
        let bad = d.join("bad");
        fs::write(&bad, "1 00\n").unwrap();
        fs::set_permissions(&bad, fs::Permissions::from_mode(0o600)).unwrap();
        let m = message(read_key_file(&bad));
        assert!(m.contains(":1:1: ") && m.contains("hex digits"), "{m}");
        // A torn append (a crash mid-line) is refused, never read as a key.
        let torn = d.join("torn");
        add_key(&torn, None).unwrap();
        let mut text = fs::read_to_string(&torn).unwrap();
        text.push_str("2 abcdef");
        fs::write(&torn, text).unwrap();
        assert!(message(read_key_file(&torn)).contains(":4:1: "));
        fs::remove_dir_all(&d).unwrap();
    }
}
