//! Who a sender's datagrams speak for: the host field and spoof flag of every metric_id.

use crate::Extra;

/// gmond's identity rule, shared by the daemon's own metrics, the per-VM metrics and the
/// balancer agent's metrics so all of them land on the same HOST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// gethostname(), or `IP:name` with `override_hostname`.
    pub host: String,
    /// Spoof flag of the metric_id.
    pub spoof: bool,
}

impl Identity {
    /// `override_hostname` (with `override_ip`, default the name itself) spoofs; otherwise the
    /// host name is sent as is and receivers name the host from the source address.
    pub fn new(hostname: &str, override_hostname: Option<&str>, override_ip: Option<&str>) -> Self {
        match override_hostname {
            Some(name) => Identity {
                host: format!("{}:{name}", override_ip.unwrap_or(name)),
                spoof: true,
            },
            None => Identity {
                host: hostname.to_owned(),
                spoof: false,
            },
        }
    }

    /// gmetric's `SPOOF_HOST` extra ("IP:name") when this identity spoofs. gmond spoofs its
    /// own metrics through the metric_id alone, so only gmetric-style senders attach it.
    pub fn spoof_host_extra(&self) -> Option<Extra<'_>> {
        self.spoof.then_some(Extra {
            name: b"SPOOF_HOST",
            data: self.host.as_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofing_follows_override_hostname() {
        assert_eq!(
            Identity::new("h", None, Some("10.0.0.1")),
            Identity {
                host: "h".into(),
                spoof: false
            }
        );
        assert_eq!(
            Identity::new("h", Some("web"), Some("10.0.0.1")),
            Identity {
                host: "10.0.0.1:web".into(),
                spoof: true
            }
        );
        assert_eq!(Identity::new("h", Some("web"), None).host, "web:web");
    }

    #[test]
    fn only_a_spoofing_identity_has_a_spoof_host_extra() {
        assert_eq!(Identity::new("h", None, None).spoof_host_extra(), None);
        let id = Identity::new("h", Some("web"), Some("10.0.0.1"));
        assert_eq!(
            id.spoof_host_extra(),
            Some(Extra {
                name: b"SPOOF_HOST",
                data: b"10.0.0.1:web"
            })
        );
    }
}
