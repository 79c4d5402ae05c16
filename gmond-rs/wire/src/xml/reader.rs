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
    read_document_with(input, &ReadOptions { keep, extras: None })
}

/// What [`read_document_with`] keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// The metrics kept (all without a filter).
    pub keep: Option<&'a MetricFilter>,
    /// The EXTRA_ELEMENTs kept, by NAME (all when `None`): a reader that needs none of
    /// gmond's GROUP, TITLE and DESC saves three pairs of strings per metric.
    pub extras: Option<&'a [&'a str]>,
}

/// [`read_document_from`] with every option.
pub fn read_document_with<R: BufRead>(input: R, opts: &ReadOptions<'_>) -> Result<Document, Error> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().trim_text(true);
    let mut st = State {
        keep: opts.keep,
        extras: opts.extras,
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
    extras: Option<&'f [&'f str]>,
    doc: Document,
    seen_root: bool,
    cluster: Option<Cluster>,
    host: Option<Host>,
    metric: Option<Metric>,
}

impl State<'_> {
    fn open(&mut self, e: &BytesStart<'_>, at: u64) -> Result<(), Error> {
        let element = e.name();
        let element = element.as_ref();
        if !matches!(
            element,
            b"GANGLIA_XML" | b"CLUSTER" | b"HOST" | b"METRIC" | b"EXTRA_ELEMENT"
        ) {
            return Ok(());
        }
        if element == b"EXTRA_ELEMENT" && self.metric.is_none() {
            return Ok(());
        }
        // Every attribute read once per element (a METRIC has ten; looking each up from the
        // start parsed them all ten times over).
        let a = Attrs::read(e, at)?;
        match element {
            b"GANGLIA_XML" => {
                self.seen_root = true;
                self.doc.version = a.str(b"VERSION").unwrap_or_default();
                self.doc.source = a.str(b"SOURCE").unwrap_or_default();
            }
            b"CLUSTER" => {
                self.cluster = Some(Cluster {
                    name: a.req(b"NAME")?,
                    localtime: a.num(b"LOCALTIME", "CLUSTER")?,
                    owner: a.str(b"OWNER").unwrap_or_default(),
                    latlong: a.str(b"LATLONG").unwrap_or_default(),
                    url: a.str(b"URL").unwrap_or_default(),
                    hosts: Vec::new(),
                });
            }
            b"HOST" => {
                self.host = Some(Host {
                    name: a.req(b"NAME")?,
                    ip: a.str(b"IP").unwrap_or_default(),
                    tags: a.str(b"TAGS").unwrap_or_default(),
                    reported: a.num(b"REPORTED", "HOST")?,
                    tn: a.num(b"TN", "HOST")?,
                    tmax: a.num(b"TMAX", "HOST")?,
                    dmax: a.num(b"DMAX", "HOST")?,
                    location: a.str(b"LOCATION").unwrap_or_default(),
                    gmond_started: a.num(b"GMOND_STARTED", "HOST")?,
                    metrics: Vec::new(),
                });
            }
            b"METRIC" => {
                let name = a.req(b"NAME")?;
                if self.keep.is_some_and(|k| !k.matches(name.as_bytes())) {
                    // Not wanted: neither it nor its EXTRA_ELEMENTs are kept.
                    self.metric = None;
                    return Ok(());
                }
                self.metric = Some(Metric {
                    name,
                    val: a.str(b"VAL").unwrap_or_default(),
                    ty: a.str(b"TYPE").unwrap_or_default(),
                    units: a.str(b"UNITS").unwrap_or_default(),
                    tn: a.num(b"TN", "METRIC")?,
                    tmax: a.num(b"TMAX", "METRIC")?,
                    dmax: a.num(b"DMAX", "METRIC")?,
                    slope: a.str(b"SLOPE").unwrap_or_default(),
                    extra: Vec::new(),
                });
            }
            _ => {
                if let Some(list) = self.extras {
                    let named = a.raw(b"NAME");
                    if !named.is_some_and(|n| list.iter().any(|x| x.as_bytes() == n)) {
                        return Ok(());
                    }
                }
                if let Some(m) = self.metric.as_mut() {
                    m.extra.push((
                        a.str(b"NAME").unwrap_or_default(),
                        a.str(b"VAL").unwrap_or_default(),
                    ));
                }
            }
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

/// The attributes of one element, as written (borrowed from the event; unescaped when read).
struct Attrs<'e> {
    element: &'e [u8],
    list: Vec<(&'e [u8], std::borrow::Cow<'e, [u8]>)>,
    at: u64,
}

impl<'e> Attrs<'e> {
    fn read(e: &'e BytesStart<'_>, at: u64) -> Result<Attrs<'e>, Error> {
        let mut list = Vec::with_capacity(12);
        for a in e.attributes().with_checks(false) {
            let a = a.map_err(|err| Error::Xml {
                position: at,
                message: err.to_string(),
            })?;
            list.push((a.key.into_inner(), a.value));
        }
        Ok(Attrs {
            element: e.name().into_inner(),
            list,
            at,
        })
    }

    /// The first attribute `key`, still escaped.
    fn raw(&self, key: &[u8]) -> Option<&[u8]> {
        self.list
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }

    fn str(&self, key: &[u8]) -> Option<String> {
        self.raw(key).map(|v| decode_text(unescape(v)))
    }

    fn req(&self, key: &'static [u8]) -> Result<String, Error> {
        self.str(key).ok_or_else(|| Error::Xml {
            position: self.at,
            message: format!(
                "missing attribute {} on {}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(self.element)
            ),
        })
    }

    /// A numeric attribute; absent means 0 (gmetad omits some on summaries).
    fn num<T: std::str::FromStr + Default>(
        &self,
        key: &'static [u8],
        element: &'static str,
    ) -> Result<T, Error> {
        let Some(raw) = self.raw(key) else {
            return Ok(T::default());
        };
        let parse = |b: &[u8]| std::str::from_utf8(b).ok()?.trim().parse().ok();
        // Numbers are never escaped by gmond; an escaped one still reads as before.
        let parsed = parse(raw).or_else(|| parse(&unescape(raw)));
        parsed.ok_or_else(|| Error::XmlNumber {
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
            value: decode_text(unescape(raw)),
        })
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
    fn only_the_extras_asked_for_are_kept() {
        let opts = ReadOptions {
            keep: None,
            extras: Some(&["GROUP"]),
        };
        let doc = read_document_with(DOC, &opts).unwrap();
        let h = &doc.clusters[0].hosts[0];
        assert_eq!(h.metrics.len(), 3);
        assert_eq!(
            h.metrics[0].extra,
            [("GROUP".to_string(), "load".to_string())]
        );
        let none = read_document_with(
            DOC,
            &ReadOptions {
                keep: None,
                extras: Some(&[]),
            },
        )
        .unwrap();
        assert!(none.clusters[0].hosts[0]
            .metrics
            .iter()
            .all(|m| m.extra.is_empty()));
        // Without a list every extra stays (this document has GROUP extras only).
        assert_eq!(read_document(DOC).unwrap(), doc);
    }

    #[test]
    fn latin1_fallback() {
        assert_eq!(decode_text(vec![b'a', 0xe9]), "a\u{e9}");
        assert_eq!(decode_text("é".as_bytes().to_vec()), "é");
    }
}
