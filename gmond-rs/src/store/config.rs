//! What the store needs from gmond.conf, plus the memory caps gmond never had.

use ganglia_wire::Limits;
use std::time::Duration;

/// The store's settings. The daemon fills it from its parsed gmond.conf (`globals`, `cluster`);
/// [`Default`] is gmond 3.7.2's compiled-in behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `cluster { }`: CLUSTER attributes.
    pub cluster: ClusterInfo,
    /// `globals.tags`: the TAGS attribute of every HOST.
    pub tags: String,
    /// `globals.host_dmax`: forget hosts silent for longer; `None` (0 in the file) = never.
    /// Also printed as every HOST's DMAX.
    pub host_dmax: Option<Duration>,
    /// `globals.host_tmax`: printed as every HOST's TMAX.
    pub host_tmax: Duration,
    /// `globals.cleanup_threshold`: minimum time between two expiry sweeps.
    pub cleanup_threshold: Duration,
    /// `globals.allow_extra_data`: keep and print EXTRA_DATA. When off, extras are not even
    /// stored.
    pub allow_extra_data: bool,
    /// Decode bounds; `max_datagram` is `globals.max_udp_msg_len`.
    pub limits: Limits,
    /// Bounds that keep memory finite under floods of new hosts and metric names.
    pub caps: Caps,
    /// At most one `tracing::warn!` about dropped hosts/metrics per this interval.
    pub warn_interval: Duration,
    /// At most one metadata request per metric name (and spoof flag) in this interval.
    /// Receivers ignore a request's host field and resend the named metric of their own
    /// (reference §A.7), so one request brings every host's copy; gmond asks again for each
    /// value without metadata, which after a restart is hosts x names requests. `ZERO` asks
    /// per value, as gmond.
    pub metadata_request_interval: Duration,
    /// Bytes of the metadata buffer the daemon appends to each request it transmits (a
    /// signature trailer with `--auth`): requests must fit `METADATA_LIMIT` less this.
    pub transmit_reserve: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cluster: ClusterInfo::default(),
            tags: String::new(),
            host_dmax: Some(Duration::from_secs(86_400)),
            host_tmax: Duration::from_secs(20),
            cleanup_threshold: Duration::from_secs(300),
            allow_extra_data: true,
            limits: Limits::default(),
            caps: Caps::default(),
            warn_interval: Duration::from_secs(60),
            metadata_request_interval: Duration::from_secs(20),
            transmit_reserve: 0,
        }
    }
}

/// CLUSTER attributes; all default to "unspecified", as in gmond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    pub owner: String,
    pub latlong: String,
    pub url: String,
}

impl Default for ClusterInfo {
    fn default() -> Self {
        let u = || "unspecified".to_owned();
        ClusterInfo {
            name: u(),
            owner: u(),
            latlong: u(),
            url: u(),
        }
    }
}

/// Hard limits on what untrusted senders can make the store hold. New hosts or metrics past
/// a cap are dropped and counted (one warning a minute says which cap); existing ones keep
/// updating. A host heard directly that meets a cap evicts the oldest host only spoofs ever
/// named, never the reverse.
///
/// The defaults are sized for a 10,000-host cluster of 40 metrics per host (400,000
/// metrics; the accounting charges about 350 bytes a metric, host included, measured at
/// 100,000 hosts, so about 130 MiB) with room to grow: twice the hosts, 2.5 times the
/// metrics, a 1 GiB memory bound. gmond-rs.conf's
/// `store { }` changes them (`daemon::store_caps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_hosts: usize,
    pub max_metrics_per_host: usize,
    pub max_metrics_total: usize,
    /// Approximate bytes held by names, values and metadata (not counting hash-table slack).
    pub max_bytes: usize,
    /// Metadata requests waiting for [`poll_transmit`](super::ClusterStore::poll_transmit);
    /// further ones are dropped and counted.
    pub max_pending_transmit: usize,
    /// Distinct requested names waiting for
    /// [`poll_metadata_requested`](super::ClusterStore::poll_metadata_requested).
    pub max_pending_requested: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_hosts: 20_000,
            max_metrics_per_host: 10_000,
            max_metrics_total: 1_000_000,
            max_bytes: 1 << 30,
            max_pending_transmit: 4096,
            max_pending_requested: 4096,
        }
    }
}
