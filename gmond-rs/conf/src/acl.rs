//! Channel access lists: `acl { default = ... access { ip mask action } }`.
//!
//! Semantics follow gmond 3.7.2 on APR 1.7: the first `access` whose subnet contains the
//! address decides; otherwise `default`. Subnets are built like `apr_ipsubnet_create`: a full
//! address with an optional mask given as bits ("24") or dotted ("255.255.255.0"), or, without
//! a mask, a partial IPv4 network ("10.1" = 10.1.0.0/16).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::ConfigError;

/// What an ACL entry or the default does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclAction {
    /// Let the packet or connection through.
    Allow,
    /// Drop it.
    Deny,
}

impl AclAction {
    /// "allow" / "deny", case-insensitive as in gmond.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("allow") {
            Some(AclAction::Allow)
        } else if s.eq_ignore_ascii_case("deny") {
            Some(AclAction::Deny)
        } else {
            None
        }
    }
}

/// An address and mask; the mask need not be contiguous when given dotted, as in APR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subnet {
    /// IPv4 network (already masked) and mask.
    V4 {
        /// Network bits.
        network: u32,
        /// Mask bits.
        mask: u32,
    },
    /// IPv6 network (already masked) and mask.
    V6 {
        /// Network bits.
        network: u128,
        /// Mask bits.
        mask: u128,
    },
}

impl Subnet {
    /// Builds a subnet from an `ip` and optional `mask` string, or says why not (a
    /// [`ConfigError::Value`] about the `ip` or the `mask`).
    pub fn parse(ip: &str, mask: Option<&str>) -> Result<Self, ConfigError> {
        if ip.contains(':') {
            let addr: Ipv6Addr = ip
                .parse()
                .map_err(|_| bad("ip", format!("'{ip}' is not an IPv6 address")))?;
            let mask = match mask {
                None => u128::MAX,
                Some(m) => match m.parse::<u32>() {
                    Ok(bits @ 1..=128) => u128::MAX << (128 - bits),
                    _ => {
                        return Err(bad(
                            "mask",
                            format!("'{m}' is not a mask for an IPv6 address (1..128)"),
                        ))
                    }
                },
            };
            return Ok(Subnet::V6 {
                network: u128::from(addr) & mask,
                mask,
            });
        }
        if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(bad("ip", format!("'{ip}' is not an IPv4 address")));
        }
        let (addr, implied) = match ip.parse::<Ipv4Addr>() {
            Ok(a) => (u32::from(a), u32::MAX),
            Err(_) if mask.is_none() => partial_network(ip)?,
            Err(_) => return Err(bad("ip", format!("'{ip}' is not a full IPv4 address"))),
        };
        let mask = match mask {
            None => implied,
            Some(m) => match m.parse::<u32>() {
                Ok(bits @ 1..=32) => u32::MAX << (32 - bits),
                _ => match m.parse::<Ipv4Addr>() {
                    Ok(dotted) => u32::from(dotted),
                    Err(_) => {
                        return Err(bad(
                            "mask",
                            format!(
                                "'{m}' is not a mask (bits 1..32 or dotted like 255.255.255.0)"
                            ),
                        ))
                    }
                },
            },
        };
        Ok(Subnet::V4 {
            network: addr & mask,
            mask,
        })
    }

    /// Whether `ip` lies in this subnet (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Subnet::V4 { network, mask }, IpAddr::V4(a)) => u32::from(a) & mask == *network,
            (Subnet::V4 { network, mask }, IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|a| u32::from(a) & mask == *network),
            (Subnet::V6 { network, mask }, IpAddr::V6(a)) => u128::from(a) & mask == *network,
            (Subnet::V6 { .. }, IpAddr::V4(_)) => false,
        }
    }
}

/// "10", "10.1", "10.1.2" (and "10.1.2.3" with leading zeros std refuses): network and mask.
fn partial_network(ip: &str) -> Result<(u32, u32), ConfigError> {
    let not_network = || bad("ip", format!("'{ip}' is not an IPv4 network"));
    let parts: Vec<&str> = ip.split('.').collect();
    if parts.len() > 4 {
        return Err(not_network());
    }
    let mut addr = 0u32;
    for (i, part) in parts.iter().enumerate() {
        let octet: u8 = part.parse().map_err(|_| not_network())?;
        addr |= u32::from(octet) << (24 - 8 * i);
    }
    let bits = 8 * parts.len() as u32;
    let mask = if bits == 32 {
        u32::MAX
    } else {
        !(u32::MAX >> bits)
    };
    Ok((addr, mask))
}

fn bad(what: &'static str, message: String) -> ConfigError {
    ConfigError::Value { what, message }
}

/// One `access { }` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEntry {
    /// Addresses this entry covers.
    pub subnet: Subnet,
    /// What to do with them.
    pub action: AclAction,
}

/// A channel's access list (only built when it has at least one `access`, as in gmond).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    /// Action when no entry matches.
    pub default: AclAction,
    /// Entries in file order; the first match wins.
    pub entries: Vec<AccessEntry>,
}

impl Acl {
    /// The action for `ip`.
    pub fn action(&self, ip: IpAddr) -> AclAction {
        self.entries
            .iter()
            .find(|e| e.subnet.contains(ip))
            .map_or(self.default, |e| e.action)
    }

    /// Whether an IPv4 peer may talk to the channel.
    pub fn allows(&self, ip: Ipv4Addr) -> bool {
        self.allows_ip(IpAddr::V4(ip))
    }

    /// Whether any peer may talk to the channel.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.action(ip) == AclAction::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn entry(ip: &str, mask: Option<&str>, action: AclAction) -> AccessEntry {
        AccessEntry {
            subnet: Subnet::parse(ip, mask).unwrap(),
            action,
        }
    }

    #[test]
    fn first_match_wins_then_default() {
        let acl = Acl {
            default: AclAction::Deny,
            entries: vec![
                entry("10.0.0.5", None, AclAction::Deny),
                entry("10.0.0.0", Some("24"), AclAction::Allow),
                entry("192.168.0.0", Some("255.255.0.0"), AclAction::Allow),
            ],
        };
        assert!(!acl.allows(v4("10.0.0.5")));
        assert!(acl.allows(v4("10.0.0.6")));
        assert!(!acl.allows(v4("10.0.1.6")));
        assert!(acl.allows(v4("192.168.44.1")));
        assert!(!acl.allows(v4("127.0.0.1")));
        let open = Acl {
            default: AclAction::Allow,
            entries: vec![entry("127.0.0.1", Some("32"), AclAction::Deny)],
        };
        assert!(!open.allows(v4("127.0.0.1")));
        assert!(open.allows(v4("127.0.0.2")));
    }

    #[test]
    fn masks_as_bits_and_dotted_agree() {
        for bits in 1..=32u32 {
            let dotted = Ipv4Addr::from(u32::MAX << (32 - bits)).to_string();
            let a = Subnet::parse("172.16.5.9", Some(&bits.to_string())).unwrap();
            let b = Subnet::parse("172.16.5.9", Some(&dotted)).unwrap();
            assert_eq!(a, b, "{bits} vs {dotted}");
        }
    }

    #[test]
    fn partial_networks_without_mask() {
        let s = Subnet::parse("10.1", None).unwrap();
        assert!(s.contains(IpAddr::V4(v4("10.1.200.3"))));
        assert!(!s.contains(IpAddr::V4(v4("10.2.0.1"))));
        assert!(Subnet::parse("10.1", Some("16")).is_err());
    }

    #[test]
    fn bad_subnets_are_rejected_naming_the_part_at_fault() {
        let what = |ip: &str, mask: Option<&str>| match Subnet::parse(ip, mask) {
            Err(ConfigError::Value { what, message }) => (what, message),
            other => panic!("{ip} {mask:?}: {other:?}"),
        };
        assert_eq!(what("10.0.0.1", Some("0")).0, "mask");
        assert_eq!(what("10.0.0.1", Some("33")).0, "mask");
        assert_eq!(
            what("10.0.0.1", Some("nope")),
            (
                "mask",
                "'nope' is not a mask (bits 1..32 or dotted like 255.255.255.0)".into()
            )
        );
        assert_eq!(what("fe80::", Some("129")).0, "mask");
        assert_eq!(
            what("host.example", None),
            ("ip", "'host.example' is not an IPv4 address".into())
        );
        assert_eq!(
            what("10.0.0.256", None),
            ("ip", "'10.0.0.256' is not an IPv4 network".into())
        );
        assert_eq!(what("10.1", Some("16")).0, "ip");
        assert_eq!(what("", None).0, "ip");
        assert_eq!(what("fe80::x", None).0, "ip");
        // The message is the whole text: the resolver puts it after its own prefix.
        let e = Subnet::parse("1.2.3.4.5", None).unwrap_err();
        assert_eq!(e.to_string(), "'1.2.3.4.5' is not an IPv4 network");
        assert_eq!(e.location(), None);
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let s = Subnet::parse("fe80::", Some("10")).unwrap();
        assert!(s.contains("fe80::1".parse().unwrap()));
        assert!(!s.contains("2001:db8::1".parse().unwrap()));
        let v4net = Subnet::parse("10.0.0.0", Some("8")).unwrap();
        assert!(v4net.contains("::ffff:10.1.2.3".parse().unwrap()));
    }
}
