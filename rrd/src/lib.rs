//! Round-robin archives in rrdtool's own binary file format, in pure Rust (no librrd).
//!
//! # What is supported
//!
//! * The rrdtool 1.x file format, version `"0003"`, native byte order, x86_64 C layout:
//!   `stat_head_t` (128 bytes), `ds_def_t` (120 each), `rra_def_t` (120 each),
//!   `live_head_t` (`last_up`, `last_up_usec`), `pdp_prep_t` (112 each: `last_ds[30]`,
//!   2 pad bytes, 10 scratch words), `cdp_prep_t` (80 each, RRA-major), `rra_ptr_t`
//!   (`cur_row`), then the values, RRA after RRA, row-major. Files written here are read by
//!   `rrdtool info/fetch/graph/update`; files written by `rrdtool create/update` are read
//!   and updated here. Other versions ([`Error::UnsupportedVersion`]), foreign byte orders
//!   ([`Error::ForeignByteOrder`], detected from the float cookie 8.642135E130), other
//!   layouts ([`Error::ForeignArchitecture`]) and short files ([`Error::Truncated`]) are
//!   rejected. Bytes after the values are allowed, as rrdtool allows them (we keep our
//!   journal there).
//! * Data sources GAUGE, COUNTER (32- and 64-bit wrap correction), DERIVE and ABSOLUTE with
//!   heartbeat, min and max; archives AVERAGE, MIN, MAX and LAST with steps, rows and xff.
//!   The update arithmetic follows rrdtool 1.7.2's `rrd_update.c` operation by operation, so
//!   the same updates give the same bits (checked against `/usr/bin/rrdtool` in the tests).
//!   Updates may name their data sources with rrdtool's `--template` ([`Template`]).
//!   Not supported: COMPUTE/DCOUNTER/DDERIVE, Holt-Winters CFs, at-style times, rrdcached.
//! * Differences from rrdtool, on purpose: `create` sets each `cur_row` to the last row
//!   instead of a random one (rrdtool randomises it only to spread disk writes); an update
//!   rejected for a bad reading changes nothing (rrdtool may already have stored the
//!   `last_ds` of earlier data sources of that same update); float readings given as
//!   numbers ([`Value::Float`]) are used exactly, while text readings go through a copy of
//!   rrdtool's own number parser, rounding included.
//!
//! # Crash safety
//!
//! Rewriting a whole file per update (temp file, fsync, rename) is safe but costs the
//! file size (about 630 KB for three long archives) per update. Instead each update (or
//! batch, [`RrdFile::update_many`]) is committed in place in three steps:
//!
//! 1. A **redo record** is written after the end of rrdtool's data area: the byte ranges
//!    the update will write (the new rows, then the new live header), a copy of the live
//!    header it starts from, and a checksum over the record. rrdtool never reads past its
//!    data area (it accepts longer files), so the record is invisible to it.
//! 2. The new rows are written in place, then the live header (`live_head` to the end of
//!    `rra_ptr`, under 1 KB for one DS and three RRAs) in one `pwrite`.
//! 3. Nothing else: the record stays until the next commit overwrites it. It no longer
//!    applies once the live header equals the record's new one.
//!
//! When a file is opened here ([`RrdFile::open`], [`Rrd::from_bytes`], the `rrd-rs` CLI)
//! and a whole record is found whose new live header is not yet in place while the current
//! one has the old or the new `last_update` and every other byte is the old or the new one
//! (a header write that a kill cut at a page boundary), the commit was cut short and is
//! rolled forward: writing the same
//! bytes again is idempotent. A torn record fails its checksum and is ignored: the file was
//! not yet touched. So after a kill at any instant, the file as read through this crate
//! holds exactly the old or the new state. (`Rrd::from_bytes` rolls forward in memory and
//! writes nothing; `RrdFile::open` repairs the file.)
//!
//! rrdtool itself knows nothing of the record. The file size and the static header never
//! change, so rrdtool can read the file at every instant. If an update is killed inside
//! step 2, then until the next open here rrdtool sees the old live header (old
//! `last_update`, old PDP/CDP state) with the rows written so far: those rows are slots the
//! old state holds as the *oldest* rows of their archives, so only the far end of an
//! archive shows new values early. (With a live header longer than a page, a kill inside
//! its write can also leave whole 8-byte fields of both states.) rrdtool's own in-place
//! updates have the same window.
//!
//! Durability against power loss needs fsync: [`Sync::Full`] syncs after steps 1 and 2.
//! The default, [`Sync::None`], protects against the process dying (kill -9, panic, OOM),
//! like rrdtool, which does not sync either. Creation always goes through a synced
//! temporary file and a rename.
//!
//! # Sharing files with rrdtool
//!
//! A commit holds rrdtool's own lock (a non-blocking POSIX write lock on the whole file,
//! taken by `rrdtool update` too); if another process holds it the update fails with
//! [`Error::Locked`] and changes nothing. Under the lock the live header is read again, so
//! a long-lived [`RrdFile`] builds on updates made by rrdtool or other handles since it
//! was opened. POSIX locks belong to the process: closing any other descriptor of the same
//! file in this process while a commit runs drops the lock.
//!
//! # Example
//!
//! ```
//! use rrd::{Cf, DsDef, DsType, Layout, RraDef, RrdFile, Update, Value};
//! let dir = tempfile::tempdir().unwrap();
//! let layout = Layout::new(15, 1_700_000_000)
//!     .ds(DsDef::new("sum", DsType::Gauge, 120))
//!     .rra(RraDef::new(Cf::Average, 0.5, 1, 5856))
//!     .rra(RraDef::new(Cf::Average, 0.5, 4, 20160))
//!     .rra(RraDef::new(Cf::Average, 0.5, 40, 52704));
//! let mut f = RrdFile::create(dir.path().join("x.rrd"), &layout).unwrap();
//! f.update(&Update::new(1_700_000_015, &[Value::Float(1.5)])).unwrap();
//! let got = f.fetch(Cf::Average, 1_700_000_000, 1_700_000_030, 1).unwrap();
//! assert_eq!(got.step, 15);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod engine;
mod error;
mod file;
mod format;
mod journal;
mod rrd;
mod text;

pub use engine::Timestamp;
pub use error::{Error, Result};
pub use file::{RrdFile, Sync};
pub use format::{Cf, DsDef, DsType, RraDef, FLOAT_COOKIE, VERSION};
pub use rrd::{Fetched, InfoValue, Layout, Rrd, Template, Update, Value};
pub use text::{c_exp, fetch_text, info_text};
