//! Snapshots from a live Ganglia XML feed (gmond port 8649 or gmetad 8651): connect, read to
//! EOF, parse and merge its clusters with [`crate::view::parse_xml`], convert with
//! [`Snapshot::from_cluster`].

use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use ganglia_wire::filter::MetricFilter;
use ganglia_wire::model::Cluster;

use crate::error::{BalancerError, Result};
use crate::snapshot::Snapshot;

/// Largest document accepted (a 1,000-host gmetad feed is a few tens of MB).
pub const MAX_FEED_BYTES: u64 = 512 << 20;

/// Parses a Ganglia XML document into one snapshot; hosts of every CLUSTER are merged and the
/// newest LOCALTIME is the snapshot time.
pub fn snapshot_from_xml(xml: &[u8]) -> Result<Snapshot> {
    let merged = crate::view::parse_xml(xml)?;
    Ok(Snapshot::from_cluster(&merged, merged.localtime))
}

/// Reads a feed from `addr` (host:port) with a read timeout, then parses it.
pub fn fetch(addr: &str, timeout: Duration) -> Result<Snapshot> {
    snapshot_from_xml(&read_xml(addr, timeout, timeout)?)
}

/// Reads a whole XML document from `addr` (host:port) to EOF, bounded in time (connect and
/// each read) and in size ([`MAX_FEED_BYTES`]): the one way every consumer (the `balancer`
/// CLI, the agent, the demo) fetches the view.
pub fn read_xml(addr: &str, connect_timeout: Duration, read_timeout: Duration) -> Result<Vec<u8>> {
    let stream = connect(addr, connect_timeout, read_timeout)?;
    let mut buf = Vec::new();
    stream
        .take(MAX_FEED_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|source| BalancerError::Io {
            path: addr.to_string(),
            source,
        })?;
    if buf.len() as u64 > MAX_FEED_BYTES {
        return Err(BalancerError::Snapshot(format!(
            "feed from {addr} exceeds {MAX_FEED_BYTES} bytes"
        )));
    }
    Ok(buf)
}

/// What [`read_cluster`] asks for and keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'a> {
    /// Sent as the request line (gmond-rs's query channel: `METRICS <patterns>`, with
    /// `EXTRAS <names>` when `extras` is set); `None` for a plain gmond/gmetad port, which
    /// sends its document on connect.
    pub request: Option<&'a MetricFilter>,
    /// Metrics kept while parsing (all without a filter).
    pub keep: Option<&'a MetricFilter>,
    /// EXTRA_ELEMENTs kept, by NAME (all when `None`).
    pub extras: Option<&'a [&'a str]>,
}

/// Reads a feed from `addr` and parses it as it arrives (the document's bytes are never held
/// whole), keeping the metrics `query.keep` wants; clusters merged as
/// [`crate::view::parse_xml`] does. Bounded like [`read_xml`]: a feed past
/// [`MAX_FEED_BYTES`] is an error, not a view cut short.
pub fn read_cluster(
    addr: &str,
    query: Query<'_>,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<Cluster> {
    read_cluster_within(addr, query, (connect_timeout, read_timeout), MAX_FEED_BYTES)
}

fn read_cluster_within(
    addr: &str,
    query: Query<'_>,
    (connect_timeout, read_timeout): (Duration, Duration),
    max_bytes: u64,
) -> Result<Cluster> {
    let mut stream = connect(addr, connect_timeout, read_timeout)?;
    if let Some(f) = query.request {
        // The extras the parse keeps are all the daemon need send (`EXTRAS`); names the
        // request syntax cannot carry leave the request asking for every extra.
        let line = query
            .extras
            .and_then(|names| f.clone().with_extras(&names.join(",")).ok())
            .map_or_else(|| f.request_line(), |g| g.request_line());
        stream
            .write_all(line.as_bytes())
            .map_err(|source| BalancerError::Io {
                path: addr.to_string(),
                source,
            })?;
    }
    let mut input = BufReader::with_capacity(64 << 10, stream.take(max_bytes + 1));
    let opts = ganglia_wire::xml::ReadOptions {
        keep: query.keep,
        extras: query.extras,
    };
    let doc = ganglia_wire::xml::read_document_with(&mut input, &opts);
    if input.get_ref().limit() == 0 {
        return Err(BalancerError::Snapshot(format!(
            "feed from {addr} exceeds {max_bytes} bytes"
        )));
    }
    Ok(crate::view::merge_document(doc?))
}

/// A connected stream with its read timeout.
fn connect(addr: &str, connect_timeout: Duration, read_timeout: Duration) -> Result<TcpStream> {
    let io = |source| BalancerError::Io {
        path: addr.to_string(),
        source,
    };
    let sa = addr.to_socket_addrs().map_err(io)?.next().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ))
    })?;
    let stream = TcpStream::connect_timeout(&sa, connect_timeout).map_err(io)?;
    stream.set_read_timeout(Some(read_timeout)).map_err(io)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    const XML: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?>
<GANGLIA_XML VERSION="3.7.2" SOURCE="gmond">
<CLUSTER NAME="c" LOCALTIME="1000" OWNER="o" LATLONG="l" URL="u">
<HOST NAME="hv1" IP="127.0.0.1" TAGS="" REPORTED="990" TN="10" TMAX="20" DMAX="0" LOCATION="x" GMOND_STARTED="1">
<METRIC NAME="vnode_cpu_num" VAL="8" TYPE="uint16" UNITS="CPUs" TN="1" TMAX="60" DMAX="0" SLOPE="zero" SOURCE="gmond"></METRIC>
<METRIC NAME="vnode_cpu_speed" VAL="2000" TYPE="uint32" UNITS="MHz" TN="1" TMAX="60" DMAX="0" SLOPE="zero" SOURCE="gmond"></METRIC>
<METRIC NAME="vnode_mem_total" VAL="16000000" TYPE="float" UNITS="KB" TN="1" TMAX="60" DMAX="0" SLOPE="both" SOURCE="gmond"></METRIC>
<METRIC NAME="web.vcpu_util" VAL="50.0" TYPE="float" UNITS="%" TN="1" TMAX="60" DMAX="0" SLOPE="both" SOURCE="gmond"></METRIC>
<METRIC NAME="web.vcpu_num" VAL="2" TYPE="uint16" UNITS="vCPUs" TN="1" TMAX="60" DMAX="0" SLOPE="both" SOURCE="gmond"></METRIC>
</HOST>
</CLUSTER>
</GANGLIA_XML>
"#;

    #[test]
    fn xml_feed_becomes_snapshot() {
        let s = snapshot_from_xml(XML.as_bytes()).unwrap();
        assert_eq!(s.time, 1000);
        assert_eq!(s.hosts.len(), 1);
        assert_eq!(s.vms[0].name, "web");
        assert_eq!(s.vms[0].cpu_demand_mhz, 2000.0);
        assert!(snapshot_from_xml(b"<GANGLIA_XML><CLUSTER").is_err());
    }

    #[test]
    fn fetch_reads_a_loopback_feed() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.write_all(XML.as_bytes()).unwrap();
        });
        let s = fetch(&addr, Duration::from_secs(10)).unwrap();
        t.join().unwrap();
        assert_eq!(s.vms.len(), 1);
    }

    /// A server that reads one request line (if `expect_request`), then sends XML.
    fn serve_once(expect_request: bool) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            let mut line = Vec::new();
            if expect_request {
                use std::io::BufRead;
                std::io::BufReader::new(&c)
                    .read_until(b'\n', &mut line)
                    .unwrap();
            }
            (&c).write_all(XML.as_bytes()).unwrap();
            line
        });
        (addr, t)
    }

    #[test]
    fn a_query_sends_its_request_and_keeps_what_it_asked_for() {
        let (addr, t) = serve_once(true);
        let want = MetricFilter::parse("vnode_*").unwrap();
        let q = Query {
            request: Some(&want),
            keep: Some(&want),
            extras: None,
        };
        let c = read_cluster(&addr, q, Duration::from_secs(10), Duration::from_secs(10)).unwrap();
        assert_eq!(t.join().unwrap(), b"METRICS vnode_*\n");
        let names: Vec<&str> = c.hosts[0].metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["vnode_cpu_num", "vnode_cpu_speed", "vnode_mem_total"]
        );
        assert_eq!(c.localtime, 1000);
    }

    #[test]
    fn a_query_names_the_extras_its_parse_keeps() {
        let (addr, t) = serve_once(true);
        let want = MetricFilter::parse("vnode_*").unwrap();
        let q = Query {
            request: Some(&want),
            keep: Some(&want),
            extras: Some(&["GMOND_RS_AUTH"]),
        };
        read_cluster(&addr, q, Duration::from_secs(10), Duration::from_secs(10)).unwrap();
        assert_eq!(t.join().unwrap(), b"METRICS vnode_* EXTRAS GMOND_RS_AUTH\n");
    }

    #[test]
    fn a_plain_feed_streams_and_a_feed_past_the_bound_is_an_error() {
        let (addr, t) = serve_once(false);
        let c = read_cluster(
            &addr,
            Query::default(),
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .unwrap();
        t.join().unwrap();
        assert_eq!(c.hosts[0].metrics.len(), 5);
        let (addr, t) = serve_once(false);
        let timeouts = (Duration::from_secs(10), Duration::from_secs(10));
        let err = read_cluster_within(&addr, Query::default(), timeouts, 100).unwrap_err();
        t.join().unwrap();
        assert!(err.to_string().contains("exceeds 100 bytes"), "{err}");
    }
}
