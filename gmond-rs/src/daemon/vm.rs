//! Where a daemon's per-VM metrics come from: an injected [`VmSource`] (the demo's simulated
//! hosts) or gmond.conf's `libvirt_module`, which needs the `libvirt` feature.

use super::Error;
use gmond_conf::Config;
use gmond_metrics::vmetrics::VmMetric;
use gmond_metrics::Error as HypervisorError;
use std::time::Duration;

/// Per-VM metrics from somewhere other than libvirt, e.g. one host of a simulated cluster.
/// Called from the daemon's VM thread, so it may block.
pub trait VmSource: Send {
    /// One collection round: the host's `vnode_*` metrics and every VM's metrics.
    fn collect(&mut self) -> Result<Vec<VmMetric>, HypervisorError>;
}

/// An injected VM metric source with its schedule; replaces `libvirt_module`.
pub struct VmFeed {
    /// Where the metrics come from.
    pub source: Box<dyn VmSource>,
    /// Time between collection rounds.
    pub every: Duration,
    /// Metadata is re-sent at least this often (receivers count a metric's dmax from it).
    pub metadata_resend: Duration,
}

/// A VM source to open on the daemon's VM thread, with its schedule.
pub(super) struct VmPlan {
    /// Opens the source; called on the VM thread, since opening libvirt may block.
    pub open: Box<dyn FnOnce() -> Box<dyn VmSource> + Send>,
    pub every: Duration,
    pub metadata_resend: Duration,
    /// The thread's name.
    pub thread: &'static str,
}

/// An injected feed wins over `libvirt_module`; neither: no VM thread.
pub(super) fn plan(cfg: &Config, feed: Option<VmFeed>) -> Result<Option<VmPlan>, Error> {
    if let Some(VmFeed {
        source,
        every,
        metadata_resend,
    }) = feed
    {
        tracing::info!(
            every_ms = every.as_millis() as u64,
            "per-VM metrics from an injected source"
        );
        return Ok(Some(VmPlan {
            open: Box::new(move || source),
            every,
            metadata_resend,
            thread: "vm-source",
        }));
    }
    match cfg.libvirt_module() {
        Some(module) => libvirt_plan(module).map(Some),
        None => Ok(None),
    }
}

/// Metadata is re-sent this often, so receivers' 600 s dmax never expires a VM metric.
#[cfg(feature = "libvirt")]
const LIBVIRT_METADATA_RESEND: Duration = Duration::from_secs(120);

#[cfg(feature = "libvirt")]
fn libvirt_plan(module: gmond_conf::LibvirtModule) -> Result<VmPlan, Error> {
    let every = module.collect_every;
    tracing::info!(uri = %module.uri, every_s = every.as_secs(), "per-VM metrics through libvirt");
    Ok(VmPlan {
        open: Box::new(move || Box::new(LibvirtSource::new(&module.uri))),
        every,
        metadata_resend: LIBVIRT_METADATA_RESEND,
        thread: "libvirt",
    })
}

/// Refuses rather than skips: an operator who enabled the module expects VM metrics.
#[cfg(not(feature = "libvirt"))]
fn libvirt_plan(_module: gmond_conf::LibvirtModule) -> Result<VmPlan, Error> {
    Err(Error::Config(LIBVIRT_NOT_BUILT.into()))
}

/// What a build without the `libvirt` feature says when gmond.conf enables `libvirt_module`.
pub const LIBVIRT_NOT_BUILT: &str = "gmond.conf enables libvirt_module, but this gmond-rs was \
    built without libvirt support; build it with the `libvirt` feature: \
    cargo build --release -p gmond-rs --features libvirt";

#[cfg(feature = "libvirt")]
/// The libvirt module's VM source: a lazily connecting, reconnecting read-only connection.
struct LibvirtSource {
    hv: gmond_metrics::hypervisor::libvirt::LibvirtHypervisor,
    tracker: gmond_metrics::vmetrics::UtilTracker,
}

#[cfg(feature = "libvirt")]
impl LibvirtSource {
    fn new(uri: &str) -> Self {
        use gmond_metrics::hypervisor::libvirt::{BackoffPolicy, LibvirtHypervisor};
        LibvirtSource {
            hv: LibvirtHypervisor::open_lazy(uri, BackoffPolicy::default()),
            tracker: gmond_metrics::vmetrics::UtilTracker::new(),
        }
    }
}

#[cfg(feature = "libvirt")]
impl VmSource for LibvirtSource {
    /// The I/O shell reads the clock for the collector: `now` drives the reconnect backoff,
    /// and the wall clock times the domain listing.
    fn collect(&mut self) -> Result<Vec<VmMetric>, HypervisorError> {
        let clock_ns = || {
            std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        self.hv
            .collect_round(std::time::Instant::now(), &mut self.tracker, clock_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not mute (one send channel to loopback), with `libvirt_module` switched on.
    fn with_libvirt_module() -> Config {
        gmond_conf::parse_str(
            "udp_send_channel { host = 127.0.0.1 port = 9 }\n\
             modules { module { name = \"libvirt_module\" path = \"builtin\"\n\
               param collect_every { value = 7 } } }\n",
            "test.conf",
        )
        .unwrap()
        .config
    }

    #[cfg(not(feature = "libvirt"))]
    #[test]
    fn libvirt_module_without_the_feature_stops_start_up_with_the_build_command() {
        use super::super::{run_with, Hooks, RunOptions, StopHandle};
        let hooks = Hooks {
            stop: Some(StopHandle::new()),
            ..Hooks::default()
        };
        let err = run_with(with_libvirt_module(), RunOptions::default(), hooks).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("libvirt_module"), "{text}");
        assert!(text.contains("--features libvirt"), "{text}");
    }

    #[cfg(feature = "libvirt")]
    #[test]
    fn libvirt_module_with_the_feature_plans_its_own_thread() {
        let plan = plan(&with_libvirt_module(), None).unwrap().unwrap();
        assert_eq!(plan.thread, "libvirt");
        assert_eq!(plan.every, Duration::from_secs(7));
    }

    #[test]
    fn an_injected_feed_wins_over_libvirt_module() {
        struct Empty;
        impl VmSource for Empty {
            fn collect(&mut self) -> Result<Vec<VmMetric>, HypervisorError> {
                Ok(Vec::new())
            }
        }
        let feed = VmFeed {
            source: Box::new(Empty),
            every: Duration::from_secs(3),
            metadata_resend: Duration::from_secs(30),
        };
        let plan = plan(&with_libvirt_module(), Some(feed)).unwrap().unwrap();
        assert_eq!(
            (plan.thread, plan.every),
            ("vm-source", Duration::from_secs(3))
        );
    }
}
