//! Authenticated datagrams: a trailer after the unchanged XDR body that proves which key
//! holder sent it, when, and that it is not a replay. Pure: time and the sender's random id
//! are inputs, keys come in as text.
//!
//! # Why a trailer
//!
//! gmond 3.7.2 decodes the XDR message at the start of a datagram and ignores the bytes after
//! it (reference §A.1, checked against real gmond by `tests/tests/interop_auth.rs`). So a
//! signed datagram is an ordinary Ganglia datagram to every real gmond, gmetad and gstat,
//! and only gmond-rs reads the proof.
//!
//! # Layout (48 bytes, big-endian, after the body)
//!
//! ```text
//! offset size field
//!  0     4    magic "GRA" + version 1 (0x47 0x52 0x41 0x01)
//!  4     4    key id: which key of the key ring made the tag
//!  8     8    sender: a random id the signer picks once (per process and thread)
//! 16     8    sequence number: 0, 1, 2... per sender, one per datagram
//! 24     8    time: the sender's clock, seconds since the Unix epoch
//! 32    16    tag: HMAC-SHA-256(key, body || bytes 0..32 of the trailer), first 16 bytes
//! ```
//!
//! The tag covers the whole body (metric_id host, name and value included) and the trailer
//! header, so neither the body, the key id, the sender, the sequence number nor the time can
//! be changed or moved to another body.
//!
//! # Choices
//!
//! * HMAC-SHA-256 through RustCrypto's `hmac` 0.12 + `sha2` 0.10: a MAC, not signatures,
//!   because every host of a Ganglia cluster both sends and verifies (as with munge's shared
//!   key); HMAC is the standard keyed MAC (RFC 2104) and needs no nonce; the RustCrypto
//!   crates are pure Rust (SHA-NI when the CPU has it), audited, and build on the workspace's
//!   Rust 1.85 (their 0.13/0.11 successors need 1.88). `ring` would bring C/assembly and a
//!   build script for one function. Each key's HMAC state is keyed once and cloned per
//!   datagram ([`HmacKey`]), so the key's pad blocks are not hashed again. A hand-written
//!   HMAC on SHA-256's compression function measured about 50 ns a datagram cheaper; we keep
//!   the well-kept crate (BENCHMARKS.md, "Signing and verifying datagrams"). Tags are compared
//!   in constant time (`subtle`).
//! * A 128-bit tag: HMAC-SHA-256-128 as IPsec uses it (RFC 4868); NIST SP 800-107 allows
//!   truncation, and a forger's chance per datagram is 2^-128: online guessing is hopeless,
//!   and the 16 bytes saved stay available to the body.
//! * Sender id + dense sequence number + time, rather than one of them: the sequence number
//!   gives an exact replay window (a 128-datagram bitmap per sender, as IPsec and WireGuard
//!   do, RFC 6479), which tolerates the small reordering UDP allows; the time bounds how long
//!   any datagram stays acceptable at all, so a receiver that restarts, or forgets a sender,
//!   cannot be fed old datagrams beyond the clock-skew allowance; the random sender id keeps
//!   the senders sharing one key (every gmond-rs thread, the balancer agent, every host)
//!   apart without coordination, and a restarted sender starts a fresh window.
//! * Keys are 32 random bytes (the `gmond-rs-keygen` binary makes them), not derived from a
//!   password: nothing to brute-force offline from a captured datagram.
//!
//! # Size
//!
//! A signed datagram (body + trailer) obeys the same limits as an unsigned one: metadata at
//! most [`METADATA_LIMIT`](crate::METADATA_LIMIT) bytes, values at most `max_udp_msg_len`.
//! The emitter reserves the room when told to ([`Emitter::reserving`](crate::Emitter::reserving)
//! with [`TRAILER_LEN`]): a receiver's buffer is `max_udp_msg_len`, and a longer datagram
//! would reach it cut short, trailer first.
//!
//! # Replay state
//!
//! The verifier keeps one window per sender id, created only for datagrams whose tag is
//! good (a forger cannot make entries) and capped at [`VerifierConfig::max_senders`]. When
//! full, senders whose newest datagram is already stale go first (their window protects
//! nothing any more), then the sender heard from longest ago (counted: replays of its last
//! `max_skew` seconds become possible).

use crate::Error;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// The extra element gmond-rs adds to an authenticated value in its XML feed
/// (`<EXTRA_ELEMENT NAME="GMOND_RS_AUTH" VAL="key id"/>`); consumers that act on authenticated
/// values only (the balancer) look for it. gmetad, gstat and ganglia-web ignore it.
pub const XML_MARK: &str = "GMOND_RS_AUTH";

/// The first four bytes of every trailer: "GRA" and the layout version.
pub const MAGIC: [u8; 4] = [b'G', b'R', b'A', 1];
/// Bytes of key material.
pub const KEY_LEN: usize = 32;
/// Bytes of the tag (HMAC-SHA-256 truncated, see the module documentation).
pub const TAG_LEN: usize = 16;
/// Bytes of the trailer before the tag; all of them are covered by the tag.
pub const HEADER_LEN: usize = 32;
/// Bytes a signature adds to a datagram.
pub const TRAILER_LEN: usize = HEADER_LEN + TAG_LEN;
/// Default clock-skew allowance, seconds each way: Kerberos' default, ample for hosts
/// without NTP, and the longest a replay can be accepted by a receiver that never saw the
/// original (after its restart).
pub const DEFAULT_MAX_SKEW_S: u64 = 300;
/// Default cap on the number of senders whose replay window is kept.
pub const DEFAULT_MAX_SENDERS: usize = 4096;
/// Sequence numbers remembered behind the newest one, per sender.
pub const REPLAY_WINDOW: u64 = 128;

/// One 32-byte secret key. Its `Debug` does not show the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }

    /// Lower-case hex, the key file's spelling.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(2 * KEY_LEN);
        for b in self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 15)]));
        }
        s
    }

    fn from_hex(text: &str) -> Option<Self> {
        let t = text.as_bytes();
        if t.len() != 2 * KEY_LEN {
            return None;
        }
        let mut k = [0u8; KEY_LEN];
        for (i, pair) in t.chunks_exact(2).enumerate() {
            let hi = hex_digit(pair[0])?;
            let lo = hex_digit(pair[1])?;
            k[i] = hi << 4 | lo;
        }
        Some(Key(k))
    }
}

/// One key's HMAC-SHA-256 (RFC 2104, RustCrypto's `hmac`), keyed once: each datagram clones
/// the keyed state, so the key's inner and outer pad blocks are hashed once per key.
#[derive(Clone)]
struct HmacKey(Hmac<Sha256>);

impl HmacKey {
    fn new(key: &Key) -> Result<Self, Error> {
        // HMAC accepts keys of any length (RFC 2104); hmac 0.12 never refuses one.
        Hmac::<Sha256>::new_from_slice(&key.0)
            .map(HmacKey)
            .map_err(|_| key_file_error(0, "HMAC-SHA-256 refused a key".into()))
    }

    /// The first [`TAG_LEN`] bytes of HMAC-SHA-256(key, `body` || `header`).
    fn tag(&self, body: &[u8], header: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.0.clone();
        mac.update(body);
        mac.update(header);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The keys a host knows, by id, and the one it signs with.
///
/// Rotation with overlap: (1) add the new key to every host's file (all verify both, all
/// still sign with the old one); (2) name the new key with `sign ID` (senders switch as
/// their files are re-read, every receiver already knows it); (3) remove the old key.
#[derive(Clone)]
pub struct KeyRing {
    keys: BTreeMap<u32, (Key, HmacKey)>,
    signing: (u32, HmacKey),
}

impl KeyRing {
    /// A ring of `keys` signing with `signing`, which must be one of them.
    pub fn new(keys: impl IntoIterator<Item = (u32, Key)>, signing: u32) -> Result<Self, Error> {
        let mut ring = BTreeMap::new();
        for (id, k) in keys {
            let mac = HmacKey::new(&k)?;
            ring.insert(id, (k, mac));
        }
        let Some((_, mac)) = ring.get(&signing) else {
            return Err(key_file_error(
                0,
                format!("the signing key {signing} is not in the key ring"),
            ));
        };
        let signing = (signing, mac.clone());
        Ok(KeyRing {
            keys: ring,
            signing,
        })
    }

    /// Parses a key file's text.
    ///
    /// ```text
    /// # comment; blank lines are ignored
    /// 1 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    /// 2 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
    /// sign 2
    /// ```
    ///
    /// One key per line: an id (decimal u32) and 64 hex digits (32 bytes). The first key
    /// signs unless a `sign ID` line names another. Errors name the line (1-based) and never
    /// quote key material.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut keys = Vec::new();
        let mut signing: Option<(usize, u32)> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            let (Some(first), Some(second), None) = (words.next(), words.next(), words.next())
            else {
                return Err(key_file_error(
                    n,
                    "expected \"ID HEXKEY\" or \"sign ID\"".into(),
                ));
            };
            if first == "sign" {
                if signing.is_some() {
                    return Err(key_file_error(n, "a second \"sign\" line".into()));
                }
                let id = parse_id(second).ok_or_else(|| {
                    key_file_error(n, "\"sign\" needs a key id (0-4294967295)".into())
                })?;
                signing = Some((n, id));
                continue;
            }
            let id = parse_id(first)
                .ok_or_else(|| key_file_error(n, "a key id is a number (0-4294967295)".into()))?;
            let key = Key::from_hex(second).ok_or_else(|| {
                key_file_error(n, format!("key {id} is not {} hex digits", 2 * KEY_LEN))
            })?;
            if keys.iter().any(|(k, _)| *k == id) {
                return Err(key_file_error(n, format!("key {id} appears twice")));
            }
            keys.push((id, key));
        }
        let Some(&(first, _)) = keys.first() else {
            return Err(key_file_error(0, "no key in the file".into()));
        };
        let signing_id = match signing {
            None => first,
            Some((n, id)) => {
                if !keys.iter().any(|(k, _)| *k == id) {
                    return Err(key_file_error(n, format!("\"sign {id}\": no such key")));
                }
                id
            }
        };
        KeyRing::new(keys, signing_id)
    }

    /// The id of the key this host signs with.
    pub fn signing_key_id(&self) -> u32 {
        self.signing.0
    }

    /// Every key id, ascending.
    pub fn key_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// The key with this id.
    pub fn key(&self, id: u32) -> Option<&Key> {
        self.keys.get(&id).map(|(k, _)| k)
    }

    fn mac(&self, id: u32) -> Option<&HmacKey> {
        self.keys.get(&id).map(|(_, m)| m)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("signing", &self.signing.0)
            .finish()
    }
}

fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn key_file_error(line: usize, message: String) -> Error {
    Error::KeyFile { line, message }
}

/// Appends trailers: one per sender (process or thread), holding its sequence counter.
#[derive(Clone)]
pub struct Signer {
    key_id: u32,
    mac: HmacKey,
    sender: u64,
    next_seq: u64,
}

impl Signer {
    /// Signs with `ring`'s signing key as `sender`, a random id the caller draws once
    /// (two signers must never share one: their sequence numbers would collide).
    pub fn new(ring: &KeyRing, sender: u64) -> Self {
        let (key_id, mac) = ring.signing.clone();
        Signer {
            key_id,
            mac,
            sender,
            next_seq: 0,
        }
    }

    /// Switches to `ring`'s signing key (a re-read key file), keeping the sender id and the
    /// sequence, so receivers' windows stay valid.
    pub fn rekey(&mut self, ring: &KeyRing) {
        let seq = self.next_seq;
        *self = Signer {
            next_seq: seq,
            ..Signer::new(ring, self.sender)
        };
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn sender(&self) -> u64 {
        self.sender
    }

    /// Appends `body` and its trailer to `out`; `now` is seconds since the Unix epoch.
    pub fn sign(&mut self, body: &[u8], now: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(body.len() + TRAILER_LEN);
        out.extend_from_slice(body);
        self.seal(out, start, now);
    }

    /// Appends the trailer of the body `datagram[body_start..]` (just written there, by the
    /// [`Emitter`](crate::Emitter) for instance) to `datagram`.
    pub fn seal(&mut self, datagram: &mut Vec<u8>, body_start: usize, now: u64) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let header = header(self.key_id, self.sender, seq, now);
        let tag = self
            .mac
            .tag(datagram.get(body_start..).unwrap_or(&[]), &header);
        datagram.extend_from_slice(&header);
        datagram.extend_from_slice(&tag);
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("sender", &format_args!("{:016x}", self.sender))
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

fn header(key_id: u32, sender: u64, seq: u64, time: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&key_id.to_be_bytes());
    h[8..16].copy_from_slice(&sender.to_be_bytes());
    h[16..24].copy_from_slice(&seq.to_be_bytes());
    h[24..32].copy_from_slice(&time.to_be_bytes());
    h
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// What a verifier makes of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No trailer: the whole datagram is an ordinary Ganglia datagram (or not one at all;
    /// the decoder will say).
    Unsigned(&'a [u8]),
    /// A good tag, fresh and not seen before: `body` is exactly what the key holder sent.
    Authentic {
        body: &'a [u8],
        key_id: u32,
        sender: u64,
        seq: u64,
        /// The sender's clock when it signed, seconds since the Unix epoch.
        time: u64,
    },
    /// A trailer that does not prove anything: drop the datagram.
    Rejected(Rejection),
}

/// Why a signed datagram was refused; [`Rejection::reason`] labels the drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Bytes after the body that are not a whole trailer of a known version.
    MalformedTrailer,
    /// A key id this host does not know (not yet, or no longer, in its key file).
    UnknownKey(u32),
    /// The tag does not match: forged, altered, or another key under the same id.
    BadMac,
    /// The sender's time is more than the skew allowance away from ours (either side).
    Stale { time: u64 },
    /// This sender's sequence number was already accepted, or is older than the window.
    Replay { sender: u64, seq: u64 },
}

impl Rejection {
    /// A short, stable label for counters and logs (`auth_dropped_total{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MalformedTrailer => "malformed_trailer",
            Rejection::UnknownKey(_) => "unknown_key",
            Rejection::BadMac => "bad_mac",
            Rejection::Stale { .. } => "stale",
            Rejection::Replay { .. } => "replay",
        }
    }

    /// Every label [`Rejection::reason`] can return, for pre-registering counters.
    pub const REASONS: [&'static str; 5] = [
        "malformed_trailer",
        "unknown_key",
        "bad_mac",
        "stale",
        "replay",
    ];
}

/// The verifier's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Seconds a sender's clock may be behind or ahead of ours.
    pub max_skew_s: u64,
    /// Most senders whose replay window is kept.
    pub max_senders: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            max_skew_s: DEFAULT_MAX_SKEW_S,
            max_senders: DEFAULT_MAX_SENDERS,
        }
    }
}

/// What the verifier did, for the daemon's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifierStats {
    /// Senders forgotten, while their window was still useful, to make room for a new one.
    pub senders_evicted_total: u64,
    /// Senders forgotten because everything they had sent was stale.
    pub senders_expired_total: u64,
}

/// Checks trailers, and remembers what each sender has sent recently.
#[derive(Debug, Clone)]
pub struct Verifier {
    ring: KeyRing,
    config: VerifierConfig,
    senders: BTreeMap<u64, Window>,
    stats: VerifierStats,
}

/// One sender's replay state: the newest sequence number and a bitmap of the ones before it.
#[derive(Debug, Clone, Copy)]
struct Window {
    top: u64,
    /// Bit d set: sequence number `top - d` was accepted.
    seen: u128,
    /// The newest sender time accepted from this sender.
    newest_time: u64,
}

impl Window {
    /// Whether `seq` is new; does not record it.
    fn is_new(&self, seq: u64) -> bool {
        if seq > self.top {
            return true;
        }
        let d = self.top - seq;
        d < REPLAY_WINDOW && self.seen & (1u128 << d) == 0
    }

    fn record(&mut self, seq: u64, time: u64) {
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = seq;
        } else {
            self.seen |= 1u128 << (self.top - seq);
        }
        self.newest_time = self.newest_time.max(time);
    }
}

impl Verifier {
    pub fn new(ring: KeyRing, config: VerifierConfig) -> Self {
        Verifier {
            ring,
            config,
            senders: BTreeMap::new(),
            stats: VerifierStats::default(),
        }
    }

    /// Replaces the keys (a re-read key file); replay windows are kept.
    pub fn set_keys(&mut self, ring: KeyRing) {
        self.ring = ring;
    }

    pub fn keys(&self) -> &KeyRing {
        &self.ring
    }

    pub fn stats(&self) -> VerifierStats {
        self.stats
    }

    /// Senders whose replay window is kept now.
    pub fn senders(&self) -> usize {
        self.senders.len()
    }

    /// Classifies `datagram` at `now` (seconds since the Unix epoch) and, when it is
    /// authentic, records it so that a copy is a replay.
    ///
    /// A datagram that ends in a trailer whose tag holds over every byte before it is checked
    /// as such (time, then replay) without decoding its body: the tag proves a key holder
    /// sent exactly that body, and the store decodes it anyway. This is the common case, and
    /// decoding the body first to find its end cost a tenth of the verification.
    ///
    /// Otherwise the body's end is where its XDR message ends (found by decoding it, as gmond
    /// does); nothing after it: unsigned; exactly a trailer: checked; anything else:
    /// malformed. A datagram whose body does not decode is `Unsigned`: the decoder rejects
    /// it, with its own reason. So is a signed datagram altered into one longer message that
    /// swallows its trailer (a string length raised by 48): never `Authentic`, it is what it
    /// now is, an unsigned message, which `require` drops. The tag is checked before anything
    /// the trailer claims is believed, so only key holders can make the verifier remember a
    /// sender; and it is computed once per datagram whichever way the trailer is found.
    ///
    /// The two ways agree on everything but what only a key holder can make: a body that is
    /// not exactly one XDR message, signed. Decoding first would call it unsigned or
    /// malformed; it is authentic here, and the decoder judges the body.
    pub fn verify<'a>(&mut self, datagram: &'a [u8], now: u64) -> Verdict<'a> {
        // The trailer where a signer puts it, at the very end.
        let mut failed_at_end = None;
        if let Some(split) = datagram.len().checked_sub(TRAILER_LEN) {
            let (body, trailer) = datagram.split_at(split);
            if trailer[0..4] == MAGIC {
                match self.check_tag(body, trailer) {
                    Ok(key_id) => return self.admit_fresh(body, trailer, key_id, now),
                    Err(r) => failed_at_end = Some(r),
                }
            }
        }
        let Some(body_len) = body_len(datagram) else {
            return Verdict::Unsigned(datagram);
        };
        let (body, trailer) = datagram.split_at(body_len);
        if trailer.is_empty() {
            return Verdict::Unsigned(datagram);
        }
        if trailer.len() != TRAILER_LEN || trailer[0..4] != MAGIC {
            return Verdict::Rejected(Rejection::MalformedTrailer);
        }
        // A whole trailer with its magic after the body: the one already checked at the end.
        match failed_at_end {
            Some(r) => Verdict::Rejected(r),
            None => match self.check_tag(body, trailer) {
                Ok(key_id) => self.admit_fresh(body, trailer, key_id, now),
                Err(r) => Verdict::Rejected(r),
            },
        }
    }

    /// The key id of `trailer` (a whole one) if its tag holds over `body`.
    fn check_tag(&self, body: &[u8], trailer: &[u8]) -> Result<u32, Rejection> {
        let (head, tag) = trailer.split_at(HEADER_LEN);
        let mut id = [0u8; 4];
        id.copy_from_slice(&head[4..8]);
        let key_id = u32::from_be_bytes(id);
        let Some(mac) = self.ring.mac(key_id) else {
            return Err(Rejection::UnknownKey(key_id));
        };
        // Constant time: two 64-bit comparisons, neither short-circuited.
        let want = mac.tag(body, head);
        let halves = |t: &[u8]| (be_u64(&t[..8]), be_u64(&t[8..TAG_LEN]));
        let ((w0, w1), (g0, g1)) = (halves(&want), halves(tag));
        if bool::from(w0.ct_eq(&g0) & w1.ct_eq(&g1)) {
            Ok(key_id)
        } else {
            Err(Rejection::BadMac)
        }
    }

    /// After a good tag: refuses a stale or replayed datagram, else records it.
    fn admit_fresh<'a>(
        &mut self,
        body: &'a [u8],
        trailer: &[u8],
        key_id: u32,
        now: u64,
    ) -> Verdict<'a> {
        let sender = be_u64(&trailer[8..16]);
        let seq = be_u64(&trailer[16..24]);
        let time = be_u64(&trailer[24..32]);
        if time.abs_diff(now) > self.config.max_skew_s {
            return Verdict::Rejected(Rejection::Stale { time });
        }
        match self.senders.get_mut(&sender) {
            Some(w) => {
                if !w.is_new(seq) {
                    return Verdict::Rejected(Rejection::Replay { sender, seq });
                }
                w.record(seq, time);
            }
            None => {
                self.make_room(now);
                self.senders.insert(
                    sender,
                    Window {
                        top: seq,
                        seen: 1,
                        newest_time: time,
                    },
                );
            }
        }
        Verdict::Authentic {
            body,
            key_id,
            sender,
            seq,
            time,
        }
    }

    /// Frees one place if the map is full: stale senders first, else the least recent one.
    fn make_room(&mut self, now: u64) {
        if self.senders.len() < self.config.max_senders.max(1) {
            return;
        }
        let skew = self.config.max_skew_s;
        let before = self.senders.len();
        self.senders
            .retain(|_, w| w.newest_time.saturating_add(skew) >= now);
        let expired = before - self.senders.len();
        self.stats.senders_expired_total += expired as u64;
        if expired > 0 {
            return;
        }
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(id, w)| (w.newest_time, **id))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.senders.remove(&id);
            self.stats.senders_evicted_total += 1;
        }
    }
}

/// Where the XDR message at the start of `datagram` ends, under no limit but the bytes
/// present (the receive path applies its own limits when it decodes the body).
fn body_len(datagram: &[u8]) -> Option<usize> {
    let unbounded = crate::Limits {
        max_datagram: usize::MAX,
        max_string: usize::MAX,
        max_extra: usize::MAX,
    };
    crate::decode_prefix(datagram, &unbounded)
        .ok()
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, Message, MetricId, Value, ValueMsg};

    const NOW: u64 = 1_700_000_000;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; KEY_LEN])
    }

    fn ring(ids: &[u32], signing: u32) -> KeyRing {
        KeyRing::new(ids.iter().map(|&i| (i, key(i as u8))), signing).unwrap()
    }

    fn body(v: u32) -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            &Message::Value(ValueMsg {
                id: MetricId {
                    host: b"node1",
                    name: b"cpu_num",
                    spoof: false,
                },
                fmt: b"%u",
                value: Value::UInt(v),
            }),
            &mut out,
        );
        out
    }

    fn signed(s: &mut Signer, v: u32, now: u64) -> Vec<u8> {
        let mut out = Vec::new();
        s.sign(&body(v), now, &mut out);
        out
    }

    fn verifier(ids: &[u32]) -> Verifier {
        Verifier::new(ring(ids, ids[0]), VerifierConfig::default())
    }

    #[test]
    fn golden_vector() {
        // Key 0x00..0x1f, key id 7, sender 0x0102030405060708, seq 5, time 1700000000; the
        // body is the cpu_num value datagram of real gmond 3.7.2 (fixture bin/04, captured
        // from node1). The tag was computed independently, with both `openssl dgst -sha256
        // -mac HMAC -macopt hexkey:0001..1f` and Python's hmac over body || header.
        let body =
            include_bytes!("../../../tests/fixtures/ganglia-3.7.2/bin/04-ushort-cpu_num-node1.bin");
        let k: [u8; 32] = std::array::from_fn(|i| i as u8);
        let ring = KeyRing::new([(7, Key::from_bytes(k))], 7).unwrap();
        let mut s = Signer::new(&ring, 0x0102_0304_0506_0708);
        s.next_seq = 5;
        let mut out = Vec::new();
        s.sign(body, NOW, &mut out);
        assert_eq!(&out[..body.len()], &body[..]);
        assert_eq!(
            hex_string(&out[body.len()..]),
            concat!(
                "47524101",                         // magic, version 1
                "00000007",                         // key id
                "0102030405060708",                 // sender
                "0000000000000005",                 // seq
                "000000006553f100",                 // time
                "7c3683e18c5ad3a7ef521f95084f950f", // tag
            )
        );
        let mut v = Verifier::new(ring, VerifierConfig::default());
        assert_eq!(
            v.verify(&out, NOW),
            Verdict::Authentic {
                body,
                key_id: 7,
                sender: 0x0102_0304_0506_0708,
                seq: 5,
                time: NOW
            }
        );
    }

    fn hex_string(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn round_trip_and_unsigned() {
        let mut s = Signer::new(&ring(&[1], 1), 42);
        let mut v = verifier(&[1]);
        let d = signed(&mut s, 3, NOW);
        assert_eq!(d.len(), body(3).len() + TRAILER_LEN);
        match v.verify(&d, NOW) {
            Verdict::Authentic {
                body: b,
                key_id: 1,
                sender: 42,
                seq: 0,
                time: NOW,
            } => assert_eq!(b, &body(3)[..]),
            other => panic!("{other:?}"),
        }
        let plain = body(3);
        assert_eq!(v.verify(&plain, NOW), Verdict::Unsigned(&plain));
        // Garbage is the decoder's business.
        assert_eq!(v.verify(b"\x00\x01", NOW), Verdict::Unsigned(b"\x00\x01"));
    }

    #[test]
    fn every_rejection_reason() {
        let mut s = Signer::new(&ring(&[1], 1), 42);
        let mut v = verifier(&[1]);
        let d = signed(&mut s, 3, NOW);

        // Cut short: the body decodes, the trailer does not.
        for cut in 1..TRAILER_LEN {
            assert_eq!(
                v.verify(&d[..d.len() - cut], NOW),
                Verdict::Rejected(Rejection::MalformedTrailer),
                "cut {cut}"
            );
        }
        // Junk after the body, or a future version.
        let mut junk = body(3);
        junk.extend_from_slice(&[0; TRAILER_LEN]);
        assert_eq!(
            v.verify(&junk, NOW),
            Verdict::Rejected(Rejection::MalformedTrailer)
        );
        let mut v2 = d.clone();
        v2[body(3).len() + 3] = 2;
        assert_eq!(
            v.verify(&v2, NOW),
            Verdict::Rejected(Rejection::MalformedTrailer)
        );

        let mut other = Signer::new(&ring(&[9], 9), 42);
        let d9 = signed(&mut other, 3, NOW);
        assert_eq!(
            v.verify(&d9, NOW),
            Verdict::Rejected(Rejection::UnknownKey(9))
        );

        // Another key under the same id.
        let wrong = KeyRing::new([(1, key(0xee))], 1).unwrap();
        let dw = signed(&mut Signer::new(&wrong, 42), 3, NOW);
        assert_eq!(v.verify(&dw, NOW), Verdict::Rejected(Rejection::BadMac));

        let old = signed(&mut s, 3, NOW - DEFAULT_MAX_SKEW_S - 1);
        assert_eq!(
            v.verify(&old, NOW),
            Verdict::Rejected(Rejection::Stale {
                time: NOW - DEFAULT_MAX_SKEW_S - 1
            })
        );
        let future = signed(&mut s, 3, NOW + DEFAULT_MAX_SKEW_S + 1);
        assert!(matches!(
            v.verify(&future, NOW),
            Verdict::Rejected(Rejection::Stale { .. })
        ));
        // At the edge of the allowance: accepted.
        let edge = signed(&mut s, 3, NOW - DEFAULT_MAX_SKEW_S);
        assert!(matches!(v.verify(&edge, NOW), Verdict::Authentic { .. }));

        assert!(matches!(v.verify(&d, NOW), Verdict::Authentic { .. }));
        assert_eq!(
            v.verify(&d, NOW),
            Verdict::Rejected(Rejection::Replay { sender: 42, seq: 0 })
        );
        // A rejection never records anything: the stale datagrams' sequence numbers are free.
        let reasons: Vec<_> = [
            Rejection::MalformedTrailer,
            Rejection::UnknownKey(1),
            Rejection::BadMac,
            Rejection::Stale { time: 0 },
            Rejection::Replay { sender: 0, seq: 0 },
        ]
        .iter()
        .map(Rejection::reason)
        .collect();
        assert_eq!(reasons, Rejection::REASONS);
    }

    #[test]
    fn a_signed_body_is_taken_as_signed_even_when_not_one_message() {
        // Only a key holder can make these: the tag over everything before the trailer holds,
        // so the body is what was signed, and the decoder, not the verifier, judges it.
        let mut s = Signer::new(&ring(&[1], 1), 42);
        let mut v = verifier(&[1]);
        for body in [
            [body(3), b"junk".to_vec()].concat(),
            b"not XDR at all".to_vec(),
            Vec::new(),
        ] {
            let mut d = Vec::new();
            s.sign(&body, NOW, &mut d);
            match v.verify(&d, NOW) {
                Verdict::Authentic { body: b, .. } => assert_eq!(b, &body[..]),
                other => panic!("{other:?}"),
            }
        }
        // Without the key, the same shapes are what they were: the tag fails at the end, and
        // the body decoded from the start decides.
        let mut forged = [body(3), b"junk".to_vec()].concat();
        forged.extend_from_slice(&header(1, 42, 99, NOW));
        forged.extend_from_slice(&[0; TAG_LEN]);
        assert_eq!(
            v.verify(&forged, NOW),
            Verdict::Rejected(Rejection::MalformedTrailer)
        );
        let mut forged = body(3);
        forged.extend_from_slice(&header(1, 42, 99, NOW));
        forged.extend_from_slice(&[0; TAG_LEN]);
        assert_eq!(v.verify(&forged, NOW), Verdict::Rejected(Rejection::BadMac));
    }

    #[test]
    fn replay_window_accepts_reordering_within_it_and_nothing_older() {
        let mut s = Signer::new(&ring(&[1], 1), 7);
        let all: Vec<Vec<u8>> = (0..300).map(|i| signed(&mut s, i, NOW)).collect();
        let mut v = verifier(&[1]);
        // Newest first, then the ones before it, within the window: all accepted once.
        assert!(matches!(
            v.verify(&all[200], NOW),
            Verdict::Authentic { .. }
        ));
        for i in (200 - REPLAY_WINDOW as usize + 1..200).rev() {
            assert!(
                matches!(v.verify(&all[i], NOW), Verdict::Authentic { .. }),
                "{i}"
            );
            assert!(matches!(
                v.verify(&all[i], NOW),
                Verdict::Rejected(Rejection::Replay { .. })
            ));
        }
        // Older than the window: refused even though never seen.
        let too_old = 200 - REPLAY_WINDOW as usize;
        assert_eq!(
            v.verify(&all[too_old], NOW),
            Verdict::Rejected(Rejection::Replay {
                sender: 7,
                seq: too_old as u64
            })
        );
        // A jump ahead moves the window: what fell out of it is refused, what is still in
        // it and was never seen is accepted once.
        assert!(matches!(
            v.verify(&all[299], NOW),
            Verdict::Authentic { .. }
        ));
        assert!(matches!(
            v.verify(&all[150], NOW),
            Verdict::Rejected(Rejection::Replay { .. })
        ));
        assert!(matches!(
            v.verify(&all[201], NOW),
            Verdict::Authentic { .. }
        ));
        assert!(matches!(
            v.verify(&all[200], NOW),
            Verdict::Rejected(Rejection::Replay { .. })
        ));
        assert!(matches!(
            v.verify(&all[298], NOW),
            Verdict::Authentic { .. }
        ));
        // Another sender with the same key has its own window.
        let mut s2 = Signer::new(&ring(&[1], 1), 8);
        assert!(matches!(
            v.verify(&signed(&mut s2, 0, NOW), NOW),
            Verdict::Authentic { seq: 0, .. }
        ));
    }

    #[test]
    fn rotation_overlap_both_keys_verify() {
        // Step 1: every host knows 1 and 2, signs with 1. Step 2: signs with 2.
        let both_old = ring(&[1, 2], 1);
        let both_new = ring(&[1, 2], 2);
        let mut v = Verifier::new(both_old.clone(), VerifierConfig::default());
        let mut a = Signer::new(&both_old, 1);
        let mut b = Signer::new(&both_new, 2);
        assert!(matches!(
            v.verify(&signed(&mut a, 1, NOW), NOW),
            Verdict::Authentic { key_id: 1, .. }
        ));
        assert!(matches!(
            v.verify(&signed(&mut b, 1, NOW), NOW),
            Verdict::Authentic { key_id: 2, .. }
        ));
        // A signer re-keyed in place keeps its sequence: no replay at the receivers.
        a.rekey(&both_new);
        assert_eq!(a.key_id(), 2);
        assert!(matches!(
            v.verify(&signed(&mut a, 1, NOW), NOW),
            Verdict::Authentic {
                key_id: 2,
                seq: 1,
                ..
            }
        ));
        // Step 3: key 1 retired; its datagrams are now unknown, key 2's still verify.
        v.set_keys(ring(&[2], 2));
        let mut late = Signer::new(&both_old, 3);
        assert_eq!(
            v.verify(&signed(&mut late, 1, NOW), NOW),
            Verdict::Rejected(Rejection::UnknownKey(1))
        );
        assert!(matches!(
            v.verify(&signed(&mut b, 1, NOW), NOW),
            Verdict::Authentic { key_id: 2, .. }
        ));
    }

    #[test]
    fn sender_map_is_capped_stale_senders_first() {
        let r = ring(&[1], 1);
        let mut v = Verifier::new(
            r.clone(),
            VerifierConfig {
                max_skew_s: 10,
                max_senders: 3,
            },
        );
        let d = |sender: u64, t: u64| signed(&mut Signer::new(&r, sender), 0, t);
        for (sender, t) in [(1, NOW - 8), (2, NOW), (3, NOW)] {
            assert!(matches!(
                v.verify(&d(sender, t), NOW),
                Verdict::Authentic { .. }
            ));
        }
        // At NOW + 5, sender 1's newest datagram (NOW - 8) is stale: it goes, nothing else.
        assert!(matches!(
            v.verify(&d(4, NOW + 5), NOW + 5),
            Verdict::Authentic { .. }
        ));
        assert_eq!(v.senders(), 3);
        assert_eq!(v.stats().senders_expired_total, 1);
        assert_eq!(v.stats().senders_evicted_total, 0);
        // Nothing stale: the one heard from longest ago (2, then 3 on ties by id) goes.
        assert!(matches!(
            v.verify(&d(5, NOW + 5), NOW + 5),
            Verdict::Authentic { .. }
        ));
        assert_eq!(v.senders(), 3);
        assert_eq!(v.stats().senders_evicted_total, 1);
        // A forger cannot add senders: only a good tag creates a window.
        let mut forged = d(6, NOW + 5);
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert_eq!(
            v.verify(&forged, NOW + 5),
            Verdict::Rejected(Rejection::BadMac)
        );
        assert_eq!(v.senders(), 3);
    }

    #[test]
    fn key_file_text() {
        let text = "# keys\n\n1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\
                    2 FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF # new\n";
        let r = KeyRing::parse(text).unwrap();
        assert_eq!(r.key_ids().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(r.signing_key_id(), 1);
        assert_eq!(r.key(2), Some(&Key::from_bytes([0xff; 32])));
        assert_eq!(
            r.key(1).unwrap().to_hex(),
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        let r = KeyRing::parse(&format!("{text}sign 2\n")).unwrap();
        assert_eq!(r.signing_key_id(), 2);
        assert!(!format!("{r:?}").contains("ff"));

        let k = "00".repeat(32);
        for (bad, line, what) in [
            ("", 0, "no key"),
            ("# only a comment\n", 0, "no key"),
            (&format!("1 {k}\n1 {k}\n") as &str, 2, "twice"),
            (&format!("x {k}\n"), 1, "key id"),
            (&format!("-1 {k}\n"), 1, "key id"),
            (&format!("4294967296 {k}\n"), 1, "key id"),
            ("1 abcd\n", 1, "hex digits"),
            (&format!("1 {}zz\n", "00".repeat(31)), 1, "hex digits"),
            (&format!("1 {k} extra\n"), 1, "expected"),
            (&format!("1 {k}\nsign 3\n"), 2, "no such key"),
            (&format!("1 {k}\nsign 1\nsign 1\n"), 3, "second"),
            (&format!("1 {k}\nsign\n"), 2, "expected"),
        ] {
            match KeyRing::parse(bad) {
                Err(Error::KeyFile { line: l, message }) => {
                    assert_eq!(l, line, "{bad:?}: {message}");
                    assert!(message.contains(what), "{bad:?}: {message}");
                    assert!(!message.contains(&k), "{message}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
