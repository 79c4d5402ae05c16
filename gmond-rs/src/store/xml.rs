//! Rendering the store as gmond's XML document, streamed through `ganglia_wire`'s writer.

use super::{ClusterStore, Timestamp};
use ganglia_wire::xml::{
    ClusterAttrs, HostAttrs, MetricAttrs, SlopeText, Val, WriteOptions, XmlWriter,
};
use std::io::{self, Write};
use std::time::Duration;

impl ClusterStore {
    /// Writes the whole document as of `now` (LOCALTIME, and every TN relative to it).
    ///
    /// The writer issues one `write_all` per element: give it a `Vec<u8>` or a `BufWriter`,
    /// not a raw socket (and render under the lock, send after; see the module docs).
    /// Allocation-free per metric: extras are lent to the writer through one reused vector.
    /// Host and metric order is the hash tables' (gmond's is random too).
    pub fn write_xml<W: Write>(&self, now: Timestamp, out: &mut W) -> io::Result<()> {
        let cfg = &self.cfg;
        let mut w = XmlWriter::new(
            out,
            WriteOptions {
                allow_extra_data: cfg.allow_extra_data,
            },
        );
        w.begin(&ClusterAttrs {
            name: cfg.cluster.name.as_bytes(),
            localtime: now.as_secs(),
            owner: cfg.cluster.owner.as_bytes(),
            latlong: cfg.cluster.latlong.as_bytes(),
            url: cfg.cluster.url.as_bytes(),
        })?;
        let host_tmax = secs_u32(cfg.host_tmax);
        let host_dmax = cfg.host_dmax.map_or(0, secs_u32);
        let mut extras: Vec<(&[u8], &[u8])> = Vec::new();
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
                let (false, Some(v), Some(md)) = (m.hidden, &m.value, &m.meta) else {
                    continue;
                };
                extras.clear();
                extras.extend(md.extras());
                w.metric(&MetricAttrs {
                    name: name.get(..m.printed_len as usize).unwrap_or(name),
                    val: Val::Typed {
                        fmt: v.fmt(),
                        value: v.value(),
                    },
                    ty: md.ty(),
                    units: md.units(),
                    tn: now.saturating_since(v.received).as_secs(),
                    tmax: md.tmax,
                    dmax: md.dmax,
                    slope: SlopeText::Wire(md.slope),
                    extra: &extras,
                })?;
            }
            w.host_end()?;
        }
        w.finish()?;
        Ok(())
    }
}

fn secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}
