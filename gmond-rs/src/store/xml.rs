//! Rendering the store as gmond's XML document, streamed through `ganglia_wire`'s writer.
//!
//! Two paths produce the same bytes: a metric is rendered from its stored value and metadata,
//! or, if it has not changed since [`ClusterStore::prepare_xml`], copied from the element that
//! call pre-rendered (only TN is written at dump time). Preparing is optional and lazy, so
//! ingest never pays for rendering.
//!
//! A value authenticated by the daemon (`ganglia_wire::auth`) carries one more extra element,
//! `<EXTRA_ELEMENT NAME="GMOND_RS_AUTH" VAL="key id"/>`: within the DTD, and ignored by
//! gmetad (which passes extras through), gstat and ganglia-web (which read GROUP, TITLE,
//! DESC...). It is printed first in EXTRA_DATA, as if it were the last extra of the packet.

use super::entry::{Metric, StoredMeta, StoredValue};
use super::{ClusterStore, Timestamp};
use ganglia_wire::filter::MetricFilter;
use ganglia_wire::xml::{
    ClusterAttrs, HostAttrs, MetricAttrs, PreparedMetric, SlopeText, Val, WriteOptions, XmlWriter,
};
use std::io::{self, Write};
use std::time::Duration;

type Extras<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The extra element that marks an authenticated value (one name for producer and consumers).
pub const AUTH_EXTRA: &str = ganglia_wire::auth::XML_MARK;

impl ClusterStore {
    /// Writes the whole document as of `now` (LOCALTIME, and every TN relative to it).
    ///
    /// The writer hands `out` 64 KiB chunks; render under the lock into memory and send
    /// after (see the module docs). No allocation per metric: extras are lent to the writer
    /// through one reused vector. Host and metric order is the hash tables' (gmond's is
    /// random too).
    pub fn write_xml<W: Write>(&self, now: Timestamp, out: &mut W) -> io::Result<()> {
        let mut w = XmlWriter::new(out, self.write_options());
        self.render(now, None, &mut w)?;
        w.finish()?;
        Ok(())
    }

    /// The document appended to `buf`, without the intermediate chunk copies of
    /// [`write_xml`](Self::write_xml): for a daemon that renders once and serves the bytes to
    /// every client of that second. (Writing into memory cannot fail; the `Result` is the
    /// writer's.)
    pub fn render_xml(&self, now: Timestamp, buf: Vec<u8>) -> io::Result<Vec<u8>> {
        self.render_xml_filtered(now, None, buf)
    }

    /// [`render_xml`](Self::render_xml) with only the metrics `keep` wants (every host is
    /// still listed, with its HOST attributes): what the query channel serves.
    pub fn render_xml_filtered(
        &self,
        now: Timestamp,
        keep: Option<&MetricFilter>,
        buf: Vec<u8>,
    ) -> io::Result<Vec<u8>> {
        let mut w = XmlWriter::in_memory(buf, self.write_options());
        self.render(now, keep, &mut w)?;
        Ok(w.finish_vec())
    }

    /// Pre-renders every printable metric changed since the last call, so the next dumps
    /// copy it instead of formatting it. Call it (under the write lock) before serving
    /// dumps; its cost is proportional to what changed. Skipped for metrics whose rendering
    /// would push the store past `Caps::max_bytes` (they are then rendered at each dump).
    pub fn prepare_xml(&mut self) {
        let opts = self.write_options();
        let ClusterStore {
            hosts, stats, cfg, ..
        } = self;
        for host in hosts.values_mut().filter(|h| h.dirty) {
            host.dirty = false;
            for (name, m) in host.metrics.iter_mut().filter(|(_, m)| m.dirty) {
                let before = m.bytes(name.len());
                let fresh = match printable(m) {
                    Some((v, md)) => {
                        // Allocates, like the PreparedMetric itself: preparing is the slow path.
                        let mut extras: Extras<'_> = md.extras().collect();
                        extras.extend(auth_extra(v));
                        let p = PreparedMetric::new(&attrs(name, m, v, md, 0, &extras), opts);
                        let grow = p
                            .len()
                            .saturating_sub(m.prepared.as_ref().map_or(0, PreparedMetric::len));
                        (stats.bytes.saturating_add(grow) <= cfg.caps.max_bytes).then_some(p)
                    }
                    None => None,
                };
                // A metric that could not be cached stays dirty: rendered directly at dumps.
                m.dirty = fresh.is_none() && printable(m).is_some();
                host.dirty |= m.dirty;
                m.prepared = fresh;
                stats.bytes = (stats.bytes + m.bytes(name.len())).saturating_sub(before);
            }
        }
    }

    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            allow_extra_data: self.cfg.allow_extra_data,
        }
    }

    fn render<W: Write>(
        &self,
        now: Timestamp,
        keep: Option<&MetricFilter>,
        w: &mut XmlWriter<W>,
    ) -> io::Result<()> {
        let cfg = &self.cfg;
        w.begin(&ClusterAttrs {
            name: cfg.cluster.name.as_bytes(),
            localtime: now.as_secs(),
            owner: cfg.cluster.owner.as_bytes(),
            latlong: cfg.cluster.latlong.as_bytes(),
            url: cfg.cluster.url.as_bytes(),
        })?;
        let host_tmax = secs_u32(cfg.host_tmax);
        let host_dmax = cfg.host_dmax.map_or(0, secs_u32);
        let mut extras: Extras<'_> = Vec::new();
        // A request that names the extras it reads gets only those: the prepared elements
        // carry them all, so its metrics are rendered from their values.
        let some_extras = keep.filter(|k| !k.all_extras());
        for (ip, h) in &self.hosts {
            w.host_start(&HostAttrs {
                name: &h.name,
                ip,
                tags: cfg.tags.as_bytes(),
                reported: h.last_heard.as_secs(),
                tn: now.saturating_since(h.last_heard).as_secs(),
                tmax: host_tmax,
                dmax: host_dmax,
                location: h.location.as_deref().unwrap_or(b"unspecified"),
                gmond_started: h.gmond_started,
            })?;
            for (name, m) in &h.metrics {
                let Some((v, md)) = printable(m) else {
                    continue;
                };
                if keep.is_some_and(|k| !k.matches(printed_name(name, m))) {
                    continue;
                }
                let tn = now.saturating_since(v.received).as_secs();
                match (&m.prepared, m.dirty, some_extras) {
                    (Some(p), false, None) => w.prepared_metric(p, tn)?,
                    _ => {
                        extras.clear();
                        extras.extend(md.extras());
                        extras.extend(auth_extra(v));
                        if let Some(k) = some_extras {
                            extras.retain(|(n, _)| k.keeps_extra(n));
                        }
                        w.metric(&attrs(name, m, v, md, tn, &extras))?;
                    }
                }
            }
            w.host_end()?;
        }
        Ok(())
    }
}

/// Value and metadata of a metric XML shows: both present, and not heartbeat/location.
fn printable(m: &Metric) -> Option<(&StoredValue, &StoredMeta)> {
    match (m.hidden, &m.value, &m.meta) {
        (false, Some(v), Some(md)) => Some((v, md)),
        _ => None,
    }
}

/// The mark of an authenticated value, after the packet's extras (so printed first).
fn auth_extra(v: &StoredValue) -> Option<(&[u8], &[u8])> {
    v.auth().map(|id| (AUTH_EXTRA.as_bytes(), id))
}

fn attrs<'a>(
    name: &'a [u8],
    m: &Metric,
    v: &'a StoredValue,
    md: &'a StoredMeta,
    tn: u64,
    extras: &'a Extras<'a>,
) -> MetricAttrs<'a, (&'a [u8], &'a [u8])> {
    MetricAttrs {
        name: printed_name(name, m),
        val: Val::Typed {
            fmt: v.fmt(),
            value: v.value(),
        },
        ty: md.ty(),
        units: md.units(),
        tn,
        tmax: md.tmax,
        dmax: md.dmax,
        slope: SlopeText::Wire(md.slope),
        extra: extras,
    }
}

/// The NAME printed for a metric stored under `name`.
fn printed_name<'a>(name: &'a [u8], m: &Metric) -> &'a [u8] {
    name.get(..m.printed_len as usize).unwrap_or(name)
}

fn secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}
