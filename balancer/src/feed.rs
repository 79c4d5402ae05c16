//! Snapshots from a live Ganglia XML feed (gmond port 8649 or gmetad 8651): connect, read to
//! EOF, parse and merge its clusters with [`crate::view::parse_xml`], convert with
//! [`Snapshot::from_cluster`].

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

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
    let mut buf = Vec::new();
    stream
        .take(MAX_FEED_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_FEED_BYTES {
        return Err(BalancerError::Snapshot(format!(
            "feed from {addr} exceeds {MAX_FEED_BYTES} bytes"
        )));
    }
    Ok(buf)
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
}
