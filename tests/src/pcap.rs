//! A reader of classic little-endian pcap captures of Ethernet/IPv4/UDP frames (what
//! `tcpdump -w` writes), for replaying the real Ganglia capture in tests.

use std::net::Ipv4Addr;

/// One UDP datagram from the capture.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Epoch seconds (pcap timestamp).
    pub time: f64,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub payload: Vec<u8>,
}

/// Every UDP datagram of the capture, in order. Panics on anything else: fixtures are ours.
pub fn read_pcap(bytes: &[u8]) -> Vec<Datagram> {
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "classic LE pcap");
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut out = Vec::new();
    let mut pos = 24;
    while pos + 16 <= bytes.len() {
        let (sec, usec, incl) = (
            le32(&bytes[pos..]),
            le32(&bytes[pos + 4..]),
            le32(&bytes[pos + 8..]) as usize,
        );
        let frame = &bytes[pos + 16..pos + 16 + incl];
        pos += 16 + incl;
        assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4 ethertype");
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        assert_eq!(ip[9], 17, "UDP");
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let udp = &ip[ihl..];
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        out.push(Datagram {
            time: f64::from(sec) + f64::from(usec) / 1e6,
            src,
            sport: u16::from_be_bytes([udp[0], udp[1]]),
            payload: udp[8..udp_len].to_vec(),
        });
    }
    out
}
