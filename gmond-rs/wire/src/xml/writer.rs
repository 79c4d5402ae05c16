//! Streaming writer of the gmond XML feed: the exact layout gmond 3.7.2 serves, but always
//! well-formed.
//!
//! The daemon streams its cluster store through [`XmlWriter`] without building an
//! intermediate tree; [`write_document`] renders an owned [`Document`] through the same code.
//! Layout (reference §B.2): the fixed prolog and DTD, then one element per line, no
//! indentation, `\n` line ends, attributes in gmond's order and spelling, an EXTRA_DATA block
//! on every METRIC (even empty) when `allow_extra_data` is on, with EXTRA_ELEMENTs in
//! reverse packet order. Numeric VALs are formatted from the sender's printf format with APR's
//! semantics ([`crate::printf`]); string VALs are escaped as gmond escapes them.
//!
//! Deliberate differences from gmond (each one makes malformed output well-formed; see
//! docs/deliberate-differences.md): every attribute is escaped (`&`, `<`, `"` everywhere;
//! gmond escapes only string VALs); bytes gmond escapes into invalid character references
//! (C0 controls other than tab/LF/CR, DEL, bytes >= 0x80 in string VALs) become valid ones or
//! stay raw; lines are never cut at 1023 bytes; numbers print unsigned where gmond's `%d`
//! would wrap after 2038.

use crate::model::Document;
use crate::printf;
use crate::xdr::{Slope, Value};
use std::io::{self, Write};

/// The prolog and DOCTYPE block, byte-identical to what gmond 3.7.2 and gmetad send (taken
/// from a real dump, tests/fixtures/ganglia-3.7.2/xml).
pub const DTD: &str = include_str!("dtd.txt");

/// Knobs of the writer that come from gmond.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// `globals.allow_extra_data`: print EXTRA_DATA blocks.
    pub allow_extra_data: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            allow_extra_data: true,
        }
    }
}

/// CLUSTER attributes.
#[derive(Debug, Clone, Copy)]
pub struct ClusterAttrs<'a> {
    pub name: &'a [u8],
    /// Epoch seconds at dump time.
    pub localtime: u64,
    pub owner: &'a [u8],
    pub latlong: &'a [u8],
    pub url: &'a [u8],
}

/// HOST attributes, already resolved to what gmond prints.
#[derive(Debug, Clone, Copy)]
pub struct HostAttrs<'a> {
    pub name: &'a [u8],
    pub ip: &'a [u8],
    /// The serving gmond's `globals.tags` (the same on every HOST).
    pub tags: &'a [u8],
    /// Epoch seconds of the last message heard from the host.
    pub reported: u64,
    /// Whole seconds since then.
    pub tn: u64,
    /// The serving gmond's `host_tmax` and `host_dmax`.
    pub tmax: u32,
    pub dmax: u32,
    pub location: &'a [u8],
    pub gmond_started: u32,
}

/// One (name, value) extra_data pair; implemented for the pair types the store and tests use.
pub trait ExtraPair {
    fn name(&self) -> &[u8];
    fn value(&self) -> &[u8];
}

impl ExtraPair for (Vec<u8>, Vec<u8>) {
    fn name(&self) -> &[u8] {
        &self.0
    }
    fn value(&self) -> &[u8] {
        &self.1
    }
}

impl ExtraPair for (&[u8], &[u8]) {
    fn name(&self) -> &[u8] {
        self.0
    }
    fn value(&self) -> &[u8] {
        self.1
    }
}

impl ExtraPair for (String, String) {
    fn name(&self) -> &[u8] {
        self.0.as_bytes()
    }
    fn value(&self) -> &[u8] {
        self.1.as_bytes()
    }
}

impl ExtraPair for crate::xdr::Extra<'_> {
    fn name(&self) -> &[u8] {
        self.name
    }
    fn value(&self) -> &[u8] {
        self.data
    }
}

/// How a METRIC's VAL is produced.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    /// A value from the wire with its sender's printf format (string values ignore it).
    Typed { fmt: &'a [u8], value: Value<'a> },
    /// Already-formatted text (e.g. re-serialising a parsed document): escaped only.
    Text(&'a [u8]),
}

/// METRIC attributes and extras.
#[derive(Debug, Clone, Copy)]
pub struct MetricAttrs<'a, E> {
    pub name: &'a [u8],
    pub val: Val<'a>,
    /// TYPE, verbatim from the metadata.
    pub ty: &'a [u8],
    pub units: &'a [u8],
    /// Whole seconds since the last value arrived.
    pub tn: u64,
    pub tmax: u32,
    pub dmax: u32,
    /// Printed as its name (numbers outside 0-5 as "unspecified").
    pub slope: SlopeText<'a>,
    /// In packet order; printed reversed, as gmond does.
    pub extra: &'a [E],
}

/// SLOPE either from the wire number or as text (re-serialising a parsed document).
#[derive(Debug, Clone, Copy)]
pub enum SlopeText<'a> {
    Wire(Slope),
    Text(&'a [u8]),
}

/// Writes one document element by element. Call order: `begin`, then for each host
/// `host_start`, (`metric` | `prepared_metric`)*, `host_end`, and finally `finish`.
///
/// Output is assembled in an internal buffer and handed to the sink in 64 KiB writes, so a
/// socket sink sees few system calls and a `Vec` sink one extra copy per chunk.
pub struct XmlWriter<W: Write> {
    out: W,
    opts: WriteOptions,
    buf: Vec<u8>,
    /// The buffer is the destination ([`XmlWriter::in_memory`]): never flushed.
    in_memory: bool,
}

const FLUSH_AT: usize = 64 * 1024;

impl<W: Write> XmlWriter<W> {
    pub fn new(out: W, opts: WriteOptions) -> Self {
        XmlWriter {
            out,
            opts,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            in_memory: false,
        }
    }

    fn flush_if_full(&mut self) -> io::Result<()> {
        if !self.in_memory && self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Prolog, DTD, GANGLIA_XML and CLUSTER start tags.
    pub fn begin(&mut self, c: &ClusterAttrs<'_>) -> io::Result<()> {
        let l = &mut self.buf;
        l.extend_from_slice(DTD.as_bytes());
        l.extend_from_slice(b"<GANGLIA_XML VERSION=\"3.7.2\" SOURCE=\"gmond\">\n");
        l.extend_from_slice(b"<CLUSTER NAME=\"");
        escape_attr(c.name, l);
        l.extend_from_slice(b"\" LOCALTIME=\"");
        push_u64(c.localtime, l);
        l.extend_from_slice(b"\" OWNER=\"");
        escape_attr(c.owner, l);
        l.extend_from_slice(b"\" LATLONG=\"");
        escape_attr(c.latlong, l);
        l.extend_from_slice(b"\" URL=\"");
        escape_attr(c.url, l);
        l.extend_from_slice(b"\">\n");
        self.flush_if_full()
    }

    pub fn host_start(&mut self, h: &HostAttrs<'_>) -> io::Result<()> {
        let l = &mut self.buf;
        l.extend_from_slice(b"<HOST NAME=\"");
        escape_attr(h.name, l);
        l.extend_from_slice(b"\" IP=\"");
        escape_attr(h.ip, l);
        l.extend_from_slice(b"\" TAGS=\"");
        escape_attr(h.tags, l);
        l.extend_from_slice(b"\" REPORTED=\"");
        push_u64(h.reported, l);
        l.extend_from_slice(b"\" TN=\"");
        push_u64(h.tn, l);
        l.extend_from_slice(b"\" TMAX=\"");
        push_u64(u64::from(h.tmax), l);
        l.extend_from_slice(b"\" DMAX=\"");
        push_u64(u64::from(h.dmax), l);
        l.extend_from_slice(b"\" LOCATION=\"");
        escape_attr(h.location, l);
        l.extend_from_slice(b"\" GMOND_STARTED=\"");
        // gmond prints the heartbeat with %d: values past 2^31 (gmetric -H garbage) are negative.
        let started = h.gmond_started as i32;
        if started < 0 {
            l.push(b'-');
        }
        push_u64(u64::from(started.unsigned_abs()), l);
        l.extend_from_slice(b"\">\n");
        self.flush_if_full()
    }

    pub fn metric<E: ExtraPair>(&mut self, m: &MetricAttrs<'_, E>) -> io::Result<()> {
        let l = &mut self.buf;
        metric_head(m, l);
        push_u64(m.tn, l);
        metric_tail(m, self.opts, l);
        self.flush_if_full()
    }

    /// A metric rendered earlier with [`PreparedMetric::new`]: only TN is written now. The
    /// daemon keeps one per metric and rebuilds it when the value or metadata changes.
    pub fn prepared_metric(&mut self, p: &PreparedMetric, tn: u64) -> io::Result<()> {
        let l = &mut self.buf;
        l.extend_from_slice(&p.bytes[..p.split]);
        push_u64(tn, l);
        l.extend_from_slice(&p.bytes[p.split..]);
        self.flush_if_full()
    }

    pub fn host_end(&mut self) -> io::Result<()> {
        self.buf.extend_from_slice(b"</HOST>\n");
        self.flush_if_full()
    }

    /// Closes CLUSTER and GANGLIA_XML, hands the rest to the sink, and returns it.
    pub fn finish(mut self) -> io::Result<W> {
        self.buf.extend_from_slice(b"</CLUSTER>\n</GANGLIA_XML>\n");
        self.out.write_all(&self.buf)?;
        Ok(self.out)
    }
}

impl XmlWriter<Vec<u8>> {
    /// Renders straight into `out` (appending), with no intermediate copy: how the daemon
    /// renders a document once and serves the bytes to every client.
    pub fn in_memory(out: Vec<u8>, opts: WriteOptions) -> Self {
        XmlWriter {
            out: Vec::new(),
            opts,
            buf: out,
            in_memory: true,
        }
    }

    /// Finishes an [`XmlWriter::in_memory`] document (or any Vec-backed one) and returns it.
    pub fn finish_vec(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(b"</CLUSTER>\n</GANGLIA_XML>\n");
        if self.in_memory {
            self.buf
        } else {
            self.out.extend_from_slice(&self.buf);
            self.out
        }
    }
}

/// One METRIC element rendered ahead of time, split where TN goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreparedMetric {
    bytes: Vec<u8>,
    split: usize,
}

impl PreparedMetric {
    /// Renders `m` (its `tn` is ignored) with the writer options it will be written under.
    pub fn new<E: ExtraPair>(m: &MetricAttrs<'_, E>, opts: WriteOptions) -> Self {
        let mut bytes = Vec::with_capacity(256);
        metric_head(m, &mut bytes);
        let split = bytes.len();
        metric_tail(m, opts, &mut bytes);
        bytes.shrink_to_fit();
        PreparedMetric { bytes, split }
    }

    /// Bytes held (for memory accounting).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Everything of a METRIC element before the TN value.
fn metric_head<E: ExtraPair>(m: &MetricAttrs<'_, E>, l: &mut Vec<u8>) {
    l.extend_from_slice(b"<METRIC NAME=\"");
    escape_attr(m.name, l);
    l.extend_from_slice(b"\" VAL=\"");
    push_val(&m.val, l);
    l.extend_from_slice(b"\" TYPE=\"");
    escape_attr(m.ty, l);
    l.extend_from_slice(b"\" UNITS=\"");
    escape_attr(m.units, l);
    l.extend_from_slice(b"\" TN=\"");
}

/// Everything of a METRIC element after the TN value.
fn metric_tail<E: ExtraPair>(m: &MetricAttrs<'_, E>, opts: WriteOptions, l: &mut Vec<u8>) {
    l.extend_from_slice(b"\" TMAX=\"");
    push_u64(u64::from(m.tmax), l);
    l.extend_from_slice(b"\" DMAX=\"");
    push_u64(u64::from(m.dmax), l);
    l.extend_from_slice(b"\" SLOPE=\"");
    match m.slope {
        SlopeText::Wire(s) => l.extend_from_slice(s.as_str().as_bytes()),
        SlopeText::Text(t) => escape_attr(t, l),
    }
    l.extend_from_slice(b"\">\n");
    if opts.allow_extra_data {
        l.extend_from_slice(b"<EXTRA_DATA>\n");
        for e in m.extra.iter().rev() {
            l.extend_from_slice(b"<EXTRA_ELEMENT NAME=\"");
            escape_attr(e.name(), l);
            l.extend_from_slice(b"\" VAL=\"");
            escape_attr(e.value(), l);
            l.extend_from_slice(b"\"/>\n");
        }
        l.extend_from_slice(b"</EXTRA_DATA>\n");
    }
    l.extend_from_slice(b"</METRIC>\n");
}

/// Renders an owned document (its first cluster; gmond serves exactly one). VALs are taken as
/// already-formatted text.
pub fn write_document<W: Write>(doc: &Document, out: W, opts: WriteOptions) -> io::Result<W> {
    let mut w = XmlWriter::new(out, opts);
    let empty = crate::model::Cluster::default();
    let c = doc.clusters.first().unwrap_or(&empty);
    w.begin(&ClusterAttrs {
        name: c.name.as_bytes(),
        localtime: c.localtime,
        owner: c.owner.as_bytes(),
        latlong: c.latlong.as_bytes(),
        url: c.url.as_bytes(),
    })?;
    for h in &c.hosts {
        w.host_start(&HostAttrs {
            name: h.name.as_bytes(),
            ip: h.ip.as_bytes(),
            tags: h.tags.as_bytes(),
            reported: h.reported,
            tn: h.tn,
            tmax: h.tmax,
            dmax: h.dmax,
            location: h.location.as_bytes(),
            gmond_started: h.gmond_started as u32,
        })?;
        for m in &h.metrics {
            // The model keeps extras in document order (already reversed); undo that so the
            // writer's reversal restores it.
            let extra: Vec<(&[u8], &[u8])> = m
                .extra
                .iter()
                .rev()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect();
            w.metric(&MetricAttrs {
                name: m.name.as_bytes(),
                val: Val::Text(m.val.as_bytes()),
                ty: m.ty.as_bytes(),
                units: m.units.as_bytes(),
                tn: m.tn,
                tmax: m.tmax,
                dmax: m.dmax,
                slope: SlopeText::Text(m.slope.as_bytes()),
                extra: &extra,
            })?;
        }
        w.host_end()?;
    }
    w.finish()
}

fn push_u64(v: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A VAL: strings escaped like gmond's xml_escape (fmt ignored), numbers through printf.
fn push_val(val: &Val<'_>, out: &mut Vec<u8>) {
    match *val {
        Val::Typed {
            value: Value::Str(s),
            ..
        } => escape_string_val(s, out),
        Val::Typed { fmt, value } => {
            let start = out.len();
            printf::format_value(fmt, &value, out);
            // The format's literal text is the sender's: make it safe too.
            if out[start..].iter().any(|&b| needs_escape(b)) {
                let raw = out.split_off(start);
                escape_attr(&raw, out);
            }
        }
        Val::Text(t) => escape_attr(t, out),
    }
}

/// Bytes `escape_attr` does not copy as they are.
fn needs_escape(b: u8) -> bool {
    matches!(b, b'&' | b'<' | b'"' | 0..=31)
}

/// Any attribute: the minimum for well-formedness, raw otherwise (gmond prints these raw).
/// Text ends at the first NUL, as C strings do.
pub fn escape_attr(s: &[u8], out: &mut Vec<u8>) {
    // Most text needs nothing: copy clean runs in one go.
    let clean = s.iter().position(|&b| needs_escape(b)).unwrap_or(s.len());
    out.extend_from_slice(&s[..clean]);
    for &b in &s[clean..] {
        match b {
            0 => break,
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\t' => out.extend_from_slice(b"&#9;"),
            b'\n' => out.extend_from_slice(b"&#10;"),
            b'\r' => out.extend_from_slice(b"&#13;"),
            // Not representable in XML 1.0, even as a reference.
            1..=31 => out.extend_from_slice(b"&#65533;"),
            _ => out.push(b),
        }
    }
}

/// String VALs: gmond's entity set (`& < > " '` and two-digit references for tab, LF, CR),
/// but DEL and other controls as valid references and bytes >= 0x80 raw.
fn escape_string_val(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        match b {
            0 => break,
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&apos;"),
            b'\t' => out.extend_from_slice(b"&#09;"),
            b'\n' => out.extend_from_slice(b"&#10;"),
            b'\r' => out.extend_from_slice(b"&#13;"),
            1..=31 => out.extend_from_slice(b"&#65533;"),
            127 => out.extend_from_slice(b"&#127;"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_val_uses_gmond_entities() {
        let mut out = Vec::new();
        escape_string_val(b"a&b<c>d\"e'f\tg", &mut out);
        assert_eq!(out, b"a&amp;b&lt;c&gt;d&quot;e&apos;f&#09;g");
    }

    #[test]
    fn attributes_escape_only_what_breaks_xml() {
        let mut out = Vec::new();
        escape_attr(b"a&b<c>d\"e'f\x01g\0hidden", &mut out);
        assert_eq!(out, b"a&amp;b&lt;c>d&quot;e'f&#65533;g");
    }

    #[test]
    fn prepared_metric_writes_the_same_bytes() {
        let extra = [(&b"GROUP"[..], &b"cpu"[..]), (&b"TITLE"[..], &b"T&T"[..])];
        let m = MetricAttrs {
            name: &b"cpu_user"[..],
            val: Val::Typed {
                fmt: b"%.1f",
                value: Value::Float(2.25),
            },
            ty: b"float",
            units: b"%",
            tn: 17,
            tmax: 90,
            dmax: 0,
            slope: SlopeText::Wire(Slope::BOTH),
            extra: &extra,
        };
        for opts in [
            WriteOptions::default(),
            WriteOptions {
                allow_extra_data: false,
            },
        ] {
            let mut direct = XmlWriter::new(Vec::new(), opts);
            direct.metric(&m).unwrap();
            let mut prepared = XmlWriter::new(Vec::new(), opts);
            let p = PreparedMetric::new(&MetricAttrs { tn: 999, ..m }, opts);
            prepared.prepared_metric(&p, 17).unwrap();
            let mut mem = XmlWriter::in_memory(b"x".to_vec(), opts);
            mem.prepared_metric(&p, 17).unwrap();
            let (a, b) = (direct.finish().unwrap(), prepared.finish().unwrap());
            assert_eq!([&b"x"[..], &a].concat(), mem.finish_vec());
            assert_eq!(a, b);
            assert!(String::from_utf8(a).unwrap().contains("VAL=\"2.3\""));
        }
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        push_u64(0, &mut out);
        out.push(b' ');
        push_u64(u64::MAX, &mut out);
        assert_eq!(out, b"0 18446744073709551615");
    }
}
