//! Reader of Ganglia XML documents (gmond's port 8649, gmetad's 8651) into the owned model.
//!
//! Lenient where real gmond is sloppy, strict where it matters: an unknown or bare `&` in an
//! attribute is kept literally (gmond prints names unescaped), text that is not UTF-8 is read
//! as ISO-8859-1 (the encoding gmond declares), GRIDs are flattened, and gmetad's HOSTS/METRICS
//! summaries are skipped. Structure errors and non-numeric numbers are errors. Input size is
//! the caller's to bound (the reader only allocates in proportion to it).
//!
//! [`read_document_from`] parses from a stream, so a client need not hold the document's
//! bytes, and keeps only the metrics a [`MetricFilter`] wants: a 38 MB view of which an agent
//! needs two metrics per host costs it a buffer and those metrics.

use crate::filter::MetricFilter;
use crate::model::{Cluster, Document, Host, Metric};
use crate::Error;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::io::BufRead;

/// Parses a whole document.
pub fn read_document(xml: &[u8]) -> Result<Document, Error> {
    read_document_from(xml, None)
}

/// Parses a document from `input` as it arrives, keeping only the metrics `keep` wants (all
/// without a filter). An I/O error of `input` is reported as an XML error at its position.
pub fn read_document_from<R: BufRead>(
    input: R,
    keep: Option<&MetricFilter>,
) -> Result<Document, Error> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().trim_text(true);
    let mut st = State {
        keep,
        ..State::default()
    };
    let mut buf = Vec::new();
    loop {
        let pos = reader.buffer_position();
        buf.clear();
        let event = reader.read_event_into(&mut buf).map_err(|e| Error::Xml {
            position: pos,
            message: e.to_string(),
        })?;
        match event {
            Event::Start(e) => st.open(&e, pos)?,
            Event::Empty(e) => {
                st.open(&e, pos)?;
                st.close(e.name().as_ref());
            }
            Event::End(e) => st.close(e.name().as_ref()),
            Event::Eof => break,
            _ => {}
        }
    }
    if !st.seen_root {
        return Err(Error::Xml {
            position: 0,
            message: "no GANGLIA_XML element".into(),
        });
    }
    Ok(st.doc)
}

/// The document so far and the innermost open elements; each is moved into its parent when
/// it closes.
#[derive(Default)]
struct State<'f> {
    keep: Option<&'f MetricFilter>,
    doc: Document,
    seen_root: bool,
    cluster: Option<Cluster>,
    host: Option<Host>,
    metric: Option<Metric>,
}

impl State<'_> {
    fn open(&mut self, e: &BytesStart<'_>, at: u64) -> Result<(), Error> {
        match e.name().as_ref() {
            b"GANGLIA_XML" => {
                self.seen_root = true;
                self.doc.version = attr_str(e, b"VERSION", at)?.unwrap_or_default();
                self.doc.source = attr_str(e, b"SOURCE", at)?.unwrap_or_default();
            }
            b"CLUSTER" => {
                self.cluster = Some(Cluster {
                    name: req(e, b"NAME", at)?,
                    localtime: num(e, b"LOCALTIME", "CLUSTER", at)?,
                    owner: attr_str(e, b"OWNER", at)?.unwrap_or_default(),
                    latlong: attr_str(e, b"LATLONG", at)?.unwrap_or_default(),
                    url: attr_str(e, b"URL", at)?.unwrap_or_default(),
                    hosts: Vec::new(),
                });
            }
            b"HOST" => {
                self.host = Some(Host {
                    name: req(e, b"NAME", at)?,
                    ip: attr_str(e, b"IP", at)?.unwrap_or_default(),
                    tags: attr_str(e, b"TAGS", at)?.unwrap_or_default(),
                    reported: num(e, b"REPORTED", "HOST", at)?,
                    tn: num(e, b"TN", "HOST", at)?,
                    tmax: num(e, b"TMAX", "HOST", at)?,
                    dmax: num(e, b"DMAX", "HOST", at)?,
                    location: attr_str(e, b"LOCATION", at)?.unwrap_or_default(),
                    gmond_started: num(e, b"GMOND_STARTED", "HOST", at)?,
                    metrics: Vec::new(),
                });
            }
            b"METRIC" => {
                let name = req(e, b"NAME", at)?;
                if self.keep.is_some_and(|k| !k.matches(name.as_bytes())) {
                    // Not wanted: neither it nor its EXTRA_ELEMENTs are kept.
                    self.metric = None;
                    return Ok(());
                }
                self.metric = Some(Metric {
                    name,
                    val: attr_str(e, b"VAL", at)?.unwrap_or_default(),
                    ty: attr_str(e, b"TYPE", at)?.unwrap_or_default(),
                    units: attr_str(e, b"UNITS", at)?.unwrap_or_default(),
                    tn: num(e, b"TN", "METRIC", at)?,
                    tmax: num(e, b"TMAX", "METRIC", at)?,
                    dmax: num(e, b"DMAX", "METRIC", at)?,
                    slope: attr_str(e, b"SLOPE", at)?.unwrap_or_default(),
                    extra: Vec::new(),
                });
            }
            b"EXTRA_ELEMENT" => {
                if let Some(m) = self.metric.as_mut() {
                    m.extra.push((
                        attr_str(e, b"NAME", at)?.unwrap_or_default(),
                        attr_str(e, b"VAL", at)?.unwrap_or_default(),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn close(&mut self, name: &[u8]) {
        match name {
            b"METRIC" => {
                if let (Some(m), Some(h)) = (self.metric.take(), self.host.as_mut()) {
                    h.metrics.push(m);
                }
            }
            b"HOST" => {
                if let (Some(h), Some(c)) = (self.host.take(), self.cluster.as_mut()) {
                    c.hosts.push(h);
                }
            }
            b"CLUSTER" => {
                if let Some(c) = self.cluster.take() {
                    self.doc.clusters.push(c);
                }
            }
            _ => {}
        }
    }
}

fn attr_raw(e: &BytesStart<'_>, key: &[u8], at: u64) -> Result<Option<Vec<u8>>, Error> {
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|err| Error::Xml {
            position: at,
            message: err.to_string(),
        })?;
        if a.key.as_ref() == key {
            return Ok(Some(unescape(&a.value)));
        }
    }
    Ok(None)
}

fn attr_str(e: &BytesStart<'_>, key: &[u8], at: u64) -> Result<Option<String>, Error> {
    Ok(attr_raw(e, key, at)?.map(decode_text))
}

fn req(e: &BytesStart<'_>, key: &'static [u8], at: u64) -> Result<String, Error> {
    attr_str(e, key, at)?.ok_or_else(|| Error::Xml {
        position: at,
        message: format!(
            "missing attribute {} on {}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(e.name().as_ref())
        ),
    })
}

/// A numeric attribute; absent means 0 (gmetad omits some on summaries).
fn num<T: std::str::FromStr + Default>(
    e: &BytesStart<'_>,
    key: &'static [u8],
    element: &'static str,
    at: u64,
) -> Result<T, Error> {
    match attr_str(e, key, at)? {
        None => Ok(T::default()),
        Some(s) => s.trim().parse().map_err(|_| Error::XmlNumber {
            element,
            attribute: match key {
                b"LOCALTIME" => "LOCALTIME",
                b"REPORTED" => "REPORTED",
                b"TN" => "TN",
                b"TMAX" => "TMAX",
                b"DMAX" => "DMAX",
                b"GMOND_STARTED" => "GMOND_STARTED",
                _ => "?",
            },
            value: s,
        }),
    }
}

/// UTF-8 when it is, else ISO-8859-1 (one char per byte), which gmond declares.
fn decode_text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    }
}

/// Resolves the five predefined entities and numeric references; anything else (e.g. a bare
/// `&` that gmond printed unescaped) is kept as written.
fn unescape(raw: &[u8]) -> Vec<u8> {
    if !raw.contains(&b'&') {
        return raw.to_vec();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'&' {
            if let Some(len) = raw[i..].iter().take(12).position(|&b| b == b';') {
                let ent = &raw[i + 1..i + len];
                let resolved: Option<Vec<u8>> = match ent {
                    b"amp" => Some(b"&".to_vec()),
                    b"lt" => Some(b"<".to_vec()),
                    b"gt" => Some(b">".to_vec()),
                    b"quot" => Some(b"\"".to_vec()),
                    b"apos" => Some(b"'".to_vec()),
                    _ if ent.first() == Some(&b'#') => char_ref(&ent[1..]),
                    _ => None,
                };
                if let Some(r) = resolved {
                    out.extend_from_slice(&r);
                    i += len + 1;
                    continue;
                }
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// A numeric character reference: code points below 256 become that byte (the document is
/// ISO-8859-1), others their UTF-8 encoding.
fn char_ref(digits: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(digits).ok()?;
    let code = match text.strip_prefix('x').or_else(|| text.strip_prefix('X')) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => text.parse::<u32>().ok()?,
    };
    if code < 256 {
        return Some(vec![code as u8]);
    }
    let c = char::from_u32(code)?;
    let mut buf = [0u8; 4];
    Some(c.encode_utf8(&mut buf).as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_known_and_unknown() {
        assert_eq!(
            unescape(b"a&amp;b&lt;&#09;&#x41;&bogus;&"),
            b"a&b<\tA&bogus;&"
        );
    }

    const DOC: &[u8] = br#"<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?>
<GANGLIA_XML VERSION="3.7.2" SOURCE="gmond">
<CLUSTER NAME="c" LOCALTIME="100" OWNER="o" LATLONG="l" URL="u">
<HOST NAME="h1" IP="10.0.0.1" REPORTED="99" TN="1" TMAX="20" DMAX="0" LOCATION="x" GMOND_STARTED="1">
<METRIC NAME="load_one" VAL="0.5" TYPE="float" UNITS="" TN="1" TMAX="70" DMAX="0" SLOPE="both">
<EXTRA_DATA><EXTRA_ELEMENT NAME="GROUP" VAL="load"/></EXTRA_DATA>
</METRIC>
<METRIC NAME="balancer_mode" VAL="auto" TYPE="string" UNITS="" TN="2" TMAX="60" DMAX="0" SLOPE="zero">
<EXTRA_DATA><EXTRA_ELEMENT NAME="GROUP" VAL="balancer"/></EXTRA_DATA>
</METRIC>
<METRIC NAME="web1.vcpu_util" VAL="12" TYPE="float" UNITS="%" TN="3" TMAX="60" DMAX="0" SLOPE="both"/>
</HOST>
</CLUSTER>
</GANGLIA_XML>
"#;

    #[test]
    fn a_stream_in_small_pieces_reads_as_the_whole_document() {
        let whole = read_document(DOC).unwrap();
        let streamed = read_document_from(std::io::BufReader::with_capacity(7, DOC), None).unwrap();
        assert_eq!(streamed, whole);
        assert_eq!(whole.clusters[0].hosts[0].metrics.len(), 3);
    }

    #[test]
    fn a_filter_keeps_only_wanted_metrics_and_their_extras() {
        let keep = MetricFilter::parse("balancer_mode,*.vcpu_util").unwrap();
        let doc = read_document_from(DOC, Some(&keep)).unwrap();
        let h = &doc.clusters[0].hosts[0];
        let names: Vec<&str> = h.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["balancer_mode", "web1.vcpu_util"]);
        // load_one's GROUP extra went with it, not to a neighbour.
        assert_eq!(h.metrics[0].extra, [("GROUP".into(), "balancer".into())]);
        assert_eq!((h.name.as_str(), h.tn), ("h1", 1));
    }

    #[test]
    fn latin1_fallback() {
        assert_eq!(decode_text(vec![b'a', 0xe9]), "a\u{e9}");
        assert_eq!(decode_text("é".as_bytes().to_vec()), "é");
    }
}
