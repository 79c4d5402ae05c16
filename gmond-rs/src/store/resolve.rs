//! Host NAMEs for non-spoofed senders: the reverse lookup gmond does once per new host.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Maps a sender's source address to the NAME printed in its HOST element.
///
/// Asked exactly once, when a host is first heard from, on the ingest path: an implementation
/// must answer from memory (the daemon resolves off the hot path and caches; see
/// [`HostsFileResolver`] for the /etc/hosts part). `None` makes the NAME the dotted address,
/// as gmond does when getnameinfo fails.
pub trait Resolver {
    fn name_of(&self, ip: Ipv4Addr) -> Option<String>;

    /// Names found since the last call for addresses [`name_of`](Self::name_of) could not
    /// answer at once (a lookup still under way). The store asks at
    /// [`ClusterStore::poll_resolver`](super::ClusterStore::poll_resolver) and renames those
    /// hosts that still carry their address as NAME.
    fn take_resolved(&self) -> Vec<(Ipv4Addr, String)> {
        Vec::new()
    }
}

/// Never knows a name: every host is called by its address.
#[derive(Debug, Clone, Copy, Default)]
pub struct NumericResolver;

impl Resolver for NumericResolver {
    fn name_of(&self, _ip: Ipv4Addr) -> Option<String> {
        None
    }
}

/// A fixed address-to-name table (tests, simulations, static clusters).
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    names: HashMap<Ipv4Addr, String>,
}

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one mapping.
    pub fn with(mut self, ip: Ipv4Addr, name: impl Into<String>) -> Self {
        self.names.insert(ip, name.into());
        self
    }
}

impl<S: Into<String>> FromIterator<(Ipv4Addr, S)> for StaticResolver {
    fn from_iter<I: IntoIterator<Item = (Ipv4Addr, S)>>(iter: I) -> Self {
        StaticResolver {
            names: iter.into_iter().map(|(ip, n)| (ip, n.into())).collect(),
        }
    }
}

impl Resolver for StaticResolver {
    fn name_of(&self, ip: Ipv4Addr) -> Option<String> {
        self.names.get(&ip).cloned()
    }
}

/// The reverse half of an /etc/hosts file: for each IPv4 address, the first name on the first
/// line that lists it (what glibc's `files` backend of getnameinfo returns).
///
/// Parsing is pure; the daemon reads the file (and may fall back to DNS for misses).
#[derive(Debug, Clone, Default)]
pub struct HostsFileResolver {
    names: HashMap<Ipv4Addr, String>,
}

impl HostsFileResolver {
    /// Lines that are not `ADDRESS NAME [ALIAS...]` with an IPv4 address (IPv6 entries,
    /// junk) are skipped: a hosts file is advisory, not something to reject.
    pub fn parse(text: &str) -> Self {
        let mut names = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let (Some(addr), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            if let Ok(ip) = addr.parse::<Ipv4Addr>() {
                names.entry(ip).or_insert_with(|| name.to_owned());
            }
        }
        HostsFileResolver { names }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl Resolver for HostsFileResolver {
    fn name_of(&self, ip: Ipv4Addr) -> Option<String> {
        self.names.get(&ip).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_first_line_and_first_name_win() {
        let r = HostsFileResolver::parse(
            "127.0.0.1\tlocalhost\n\
             # 10.0.0.9 commented\n\
             10.77.0.1 node1 node1.example alias   # trailing comment\n\
             10.77.0.1 other\n\
             ::1 ip6-localhost\n\
             garbage\n\
             10.77.0.300 bad\n\
             10.77.0.2    node2\n",
        );
        assert_eq!(r.len(), 3);
        assert_eq!(
            r.name_of(Ipv4Addr::new(10, 77, 0, 1)).as_deref(),
            Some("node1")
        );
        assert_eq!(
            r.name_of(Ipv4Addr::new(10, 77, 0, 2)).as_deref(),
            Some("node2")
        );
        assert_eq!(r.name_of(Ipv4Addr::new(10, 0, 0, 9)), None);
    }

    #[test]
    fn static_and_numeric() {
        let r: StaticResolver = [(Ipv4Addr::new(1, 2, 3, 4), "a")].into_iter().collect();
        assert_eq!(r.name_of(Ipv4Addr::new(1, 2, 3, 4)).as_deref(), Some("a"));
        assert_eq!(r.name_of(Ipv4Addr::new(1, 2, 3, 5)), None);
        assert_eq!(NumericResolver.name_of(Ipv4Addr::LOCALHOST), None);
    }
}
