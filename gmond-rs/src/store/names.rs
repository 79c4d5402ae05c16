//! Host and metric identity rules from gmond's receive path (reference §A.6): spoof strings,
//! ':' in metric names, the special names, and the dotted-quad key of a source address.

use std::net::Ipv4Addr;

/// Splits a spoofed `metric_id.host` "IP:name" at the first ':' after the first byte.
/// `None` (gmond's "Incorrect format for spoof argument") when there is no such ':' or
/// the name part is empty.
pub(crate) fn split_spoof(host: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = 1 + host.get(1..)?.iter().position(|&b| b == b':')?;
    let (ip, name) = (&host[..colon], &host[colon + 1..]);
    if name.is_empty() {
        return None;
    }
    Some((ip, name))
}

/// The metric name as stored: non-spoofed names have every ':' turned into '_'; spoofed
/// names are kept. Borrows unless a copy is needed (the copy goes to `scratch`).
pub(crate) fn stored_name<'a>(name: &'a [u8], spoof: bool, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if spoof || !name.contains(&b':') {
        return name;
    }
    scratch.clear();
    scratch.extend(name.iter().map(|&b| if b == b':' { b'_' } else { b }));
    scratch
}

/// How many bytes of a stored name XML prints: up to the first ':' that is not the first
/// byte (only spoofed names can still contain one).
pub(crate) fn printed_len(name: &[u8]) -> usize {
    match name
        .get(1..)
        .and_then(|rest| rest.iter().position(|&b| b == b':'))
    {
        Some(i) => i + 1,
        None => name.len(),
    }
}

/// Names gmond consumes instead of printing (compared case-insensitively, like strcasecmp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    Heartbeat,
    Location,
}

pub(crate) fn special(name: &[u8]) -> Special {
    if name.eq_ignore_ascii_case(b"heartbeat") {
        Special::Heartbeat
    } else if name.eq_ignore_ascii_case(b"location") {
        Special::Location
    } else {
        Special::None
    }
}

/// The dotted quad of `ip` in a stack buffer: the host key of non-spoofed senders, built
/// without allocating on the ingest path (once per datagram, so branch-free).
pub(crate) struct IpText {
    buf: [u8; 16],
    len: usize,
}

/// Each octet's decimal digits, left-aligned, and how many there are (built at compile time).
const OCTETS: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut o = 0;
    while o < 256 {
        let b = o as u8;
        t[o] = if b >= 100 {
            ([b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10], 3)
        } else if b >= 10 {
            ([b'0' + b / 10, b'0' + b % 10, 0], 2)
        } else {
            ([b'0' + b, 0, 0], 1)
        };
        o += 1;
    }
    t
};

impl IpText {
    pub(crate) fn new(ip: Ipv4Addr) -> Self {
        let mut buf = [0u8; 16];
        let mut len = 0;
        // Three digit bytes are copied and the cursor advances past the significant ones;
        // `& 15` keeps indices in bounds without a check (at most 15 bytes are used).
        for (i, o) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                buf[len & 15] = b'.';
                len += 1;
            }
            let (digits, n) = OCTETS[usize::from(o)];
            buf[len & 15] = digits[0];
            buf[(len + 1) & 15] = digits[1];
            buf[(len + 2) & 15] = digits[2];
            len += usize::from(n);
        }
        IpText { buf, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoof_split_edge_cases() {
        let ok = |s: &str, ip: &str, name: &str| {
            assert_eq!(
                split_spoof(s.as_bytes()),
                Some((ip.as_bytes(), name.as_bytes())),
                "{s}"
            );
        };
        ok("10.77.0.9:vm-guest-1", "10.77.0.9", "vm-guest-1");
        // Only the first ':' splits; the name keeps the rest.
        ok("10.0.0.1:a:b", "10.0.0.1", "a:b");
        // A leading ':' is part of the IP text.
        ok(":x:name", ":x", "name");
        ok("::name", ":", "name");
        ok("host:n", "host", "n");
        for bad in ["", ":", "nocolon", "10.0.0.1:", ":onlyleading", "a:"] {
            assert_eq!(split_spoof(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn colons_in_metric_names() {
        let mut scratch = Vec::new();
        assert_eq!(stored_name(b"a:b:c", false, &mut scratch), b"a_b_c");
        assert_eq!(stored_name(b"a:b:c", true, &mut scratch), b"a:b:c");
        assert_eq!(stored_name(b"plain", false, &mut scratch), b"plain");
        assert_eq!(printed_len(b"svc:a"), 3);
        assert_eq!(printed_len(b":a:b"), 2);
        assert_eq!(printed_len(b":ab"), 3);
        assert_eq!(printed_len(b"plain"), 5);
        assert_eq!(printed_len(b""), 0);
    }

    #[test]
    fn specials_ignore_case() {
        assert_eq!(special(b"HeartBeat"), Special::Heartbeat);
        assert_eq!(special(b"LOCATION"), Special::Location);
        assert_eq!(special(b"heartbeats"), Special::None);
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(10, 77, 0, 1),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(1, 20, 100, 9),
            Ipv4Addr::new(192, 168, 10, 200),
        ] {
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
        for o in 0..=255u8 {
            for ip in [Ipv4Addr::new(o, 7, 99, o), Ipv4Addr::new(100, o, o, 10)] {
                assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
            }
        }
    }
}
