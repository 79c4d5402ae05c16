//! gmond-rs.conf: settings real gmond has no option for, in a file of their own.
//!
//! Real gmond rejects any option its tables lack ("no such option"), so nothing gmond-rs-only
//! can go into a gmond.conf that real gmond must keep loading, not even through `include`
//! (gmond reads included files too). gmond-rs reads this second file, in gmond.conf's syntax,
//! from `--rs-conf FILE` or, when that flag is absent, from [`DEFAULT_RS_CONFIG_PATH`] if it
//! exists. Every option is optional; the file may be absent.
//!
//! ```text
//! store {
//!   max_hosts = 20000            /* new hosts beyond are refused (counted, logged) */
//!   max_metrics_per_host = 10000
//!   max_metrics = 1000000        /* all hosts together */
//!   max_memory_mb = 1024         /* the store's own accounting of what it holds */
//!   max_pending_requests = 4096  /* metadata requests queued to send / received names */
//! }
//! udp_recv_channel {             /* the gmond.conf udp_recv_channel on the same port */
//!   port = 8649
//!   spoof_acl {                  /* gmond's acl grammar: who may speak for other hosts */
//!     default = "deny"
//!     access { ip = 10.1.0.5 mask = 32 action = "allow" }   /* e.g. a gmetric relay */
//!   }
//! }
//! query_channel {                /* off unless given: XML of chosen metrics on request */
//!   bind = 127.0.0.1             /* the default: for the agent on the same host */
//!   port = 8653
//!   acl { default = "deny" access { ip = 127.0.0.1 mask = 32 action = "allow" } }
//! }
//! ```

use crate::error::{ConfigErrors, Location};
use crate::source::{FsSource, Source};
use crate::{Acl, Warning};
use std::path::Path;

/// Where gmond-rs looks for its own settings when `--rs-conf` is not given.
pub const DEFAULT_RS_CONFIG_PATH: &str = "/etc/ganglia/gmond-rs.conf";

/// Everything gmond-rs.conf can set.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RsConfig {
    /// `store { }`: caps on what the network can make the daemon hold.
    pub store: StoreLimits,
    /// One `udp_recv_channel { }` per port, matched to gmond.conf's channels by port.
    pub udp_recv: Vec<RecvPolicy>,
    /// `query_channel { }`s: TCP ports where a client asks for the XML of chosen metrics
    /// (`METRICS <patterns>`, see `ganglia_wire::filter`).
    pub query: Vec<QueryChannel>,
}

impl RsConfig {
    /// The policy for the receive channel on `port`, if the file has one.
    pub fn recv_policy(&self, port: u16) -> Option<&RecvPolicy> {
        self.udp_recv.iter().find(|p| p.port == port)
    }
}

/// `store { }`; `None` keeps the built-in default.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoreLimits {
    pub max_hosts: Option<u64>,
    pub max_metrics_per_host: Option<u64>,
    pub max_metrics: Option<u64>,
    pub max_memory_mb: Option<u64>,
    pub max_pending_requests: Option<u64>,
}

/// `udp_recv_channel { }` in gmond-rs.conf.
#[derive(Clone, Debug, PartialEq)]
pub struct RecvPolicy {
    /// The gmond.conf receive channel it applies to.
    pub port: u16,
    /// Sources it allows may spoof (speak for other hosts); the others only for their own
    /// address. `None`: everyone may, as in gmond.
    pub spoof_acl: Option<Acl>,
    /// Where the section starts (to report a port that matches no gmond.conf channel).
    pub location: Location,
}

/// `query_channel { }`: a TCP port that answers one `METRICS <patterns>` line with the XML
/// document of those metrics (every host listed), then closes.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryChannel {
    /// Address to listen on; default 127.0.0.1 (the agent beside the daemon).
    pub bind: String,
    pub port: u16,
    /// Who may connect; `None` allows everyone who can reach `bind`.
    pub acl: Option<Acl>,
    /// Where the section starts.
    pub location: Location,
}

/// Loads gmond-rs.conf from `path`; every problem is reported with file:line.
pub fn load_rs(path: &Path) -> Result<(RsConfig, Vec<Warning>), ConfigErrors> {
    let name = path.to_string_lossy().into_owned();
    match FsSource.read_to_string(path) {
        Ok(text) => parse_rs(&text, &name),
        Err(e) => Err(crate::ConfigError::Io {
            location: Location::new(std::sync::Arc::from(name.as_str()), 0, 0),
            path: name,
            message: e.to_string(),
        }
        .into()),
    }
}

/// Parses gmond-rs.conf text named `name` (for locations).
pub fn parse_rs(text: &str, name: &str) -> Result<(RsConfig, Vec<Warning>), ConfigErrors> {
    crate::resolve::load_rs_text(text, name, &FsSource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = "store { max_hosts = 20000 max_metrics_per_host = 10000 max_metrics = 1000000 \
                    max_memory_mb = 1024 max_pending_requests = 4096 }\n\
                    udp_recv_channel { port = 8649 spoof_acl { default = \"deny\" \
                    access { ip = 10.1.0.5 mask = 32 action = \"allow\" } } }\n";
        let (c, warnings) = parse_rs(text, "gmond-rs.conf").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.store.max_hosts, Some(20_000));
        assert_eq!(c.store.max_memory_mb, Some(1024));
        let p = c.recv_policy(8649).unwrap();
        let acl = p.spoof_acl.as_ref().unwrap();
        assert!(acl.allows("10.1.0.5".parse().unwrap()));
        assert!(!acl.allows("10.1.0.6".parse().unwrap()));
        assert!(c.recv_policy(8650).is_none());
        assert!(c.query.is_empty());
    }

    #[test]
    fn query_channels_default_to_loopback() {
        let text = "query_channel { port = 8653 }
query_channel { bind = 0.0.0.0 port = 8654 \
                    acl { default = \"deny\" access { ip = 10.0.0.0 mask = 8 action = \"allow\" } } }";
        let (c, _) = parse_rs(text, "gmond-rs.conf").unwrap();
        assert_eq!(c.query.len(), 2);
        assert_eq!(
            (c.query[0].bind.as_str(), c.query[0].port),
            ("127.0.0.1", 8653)
        );
        assert!(c.query[0].acl.is_none());
        let acl = c.query[1].acl.as_ref().unwrap();
        assert!(acl.allows("10.1.2.3".parse().unwrap()));
        assert!(!acl.allows("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn errors_carry_file_and_line() {
        let cases = [
            ("store {\n max_hosts = 0 }", 2),
            ("store {\n  max_hots = 5 }", 2),
            ("\nudp_recv_channel { spoof_acl { default = \"deny\" access { ip = 1.2.3.4 action = \"allow\" } } }", 2),
            ("udp_recv_channel { port = 1 }\nudp_recv_channel {\n port = 1 }", 3),
            ("udp_recv_channel { port = 1 spoof_acl { default = \"maybe\"\n access { ip = 1.2.3.4 action = \"allow\" } } }", 1),
            ("globals { mute = yes }", 1),
            ("query_channel {\n bind = 127.0.0.1 }", 1),
            ("query_channel { port = 8653\n  gzip_output = yes }", 2),
        ];
        for (text, line) in cases {
            let err = parse_rs(text, "rs.conf").unwrap_err().to_string();
            assert!(
                err.contains(&format!("rs.conf:{line}:")),
                "{text:?} -> {err}"
            );
        }
    }
}
