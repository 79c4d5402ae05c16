//! Host-wide network rates (bytes_in/out, pkts_in/out) from /proc/net/dev counter deltas.
//!
//! Mirrors gmond's net module: all interfaces except loopback/bonding (by name prefix) and
//! VLAN sub-interfaces are summed; each interface's previous counters start at **zero** and
//! the previous timestamp at the Unix epoch. So the first sample is "all traffic since the
//! interface came up, divided by the seconds since 1970" — practically 0.00, which is what
//! real gmond shows until its second network collection.

use std::collections::HashMap;

use super::procfs::IfCounters;

/// gmond discards a whole sample as a hardware glitch above these rates.
const MAX_BYTES_PER_SEC: f64 = 1.0e13;
const MAX_PKTS_PER_SEC: f64 = 1.0e8;
/// Minimum seconds between two computed samples (gmond's /proc/net/dev cache period).
pub const MIN_INTERVAL: f64 = 1.0;

/// The four host-wide rates, per second.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NetRateValues {
    /// Received bytes per second.
    pub bytes_in: f32,
    /// Sent bytes per second.
    pub bytes_out: f32,
    /// Received packets per second.
    pub pkts_in: f32,
    /// Sent packets per second.
    pub pkts_out: f32,
}

/// Counter state across samples.
#[derive(Debug, Clone, Default)]
pub struct NetRates {
    last: HashMap<String, IfCounters>,
    /// Time of the last accepted sample, epoch seconds (0 = never, as in gmond).
    stamp: f64,
    values: NetRateValues,
}

impl NetRates {
    /// A fresh state (see the module doc for what the first sample reports).
    pub fn new() -> Self {
        Self::default()
    }

    /// The current rates (those of the last accepted sample).
    pub fn values(&self) -> NetRateValues {
        self.values
    }

    /// Feeds one read of /proc/net/dev taken at `read_at` (epoch seconds). `is_vlan`
    /// tells whether an interface is a VLAN sub-interface (left out to avoid counting its
    /// traffic twice). Returns the rates now in effect.
    pub fn update(
        &mut self,
        read_at: f64,
        interfaces: &[(String, IfCounters)],
        is_vlan: impl Fn(&str) -> bool,
    ) -> NetRateValues {
        let mut sum = [0u64; 4];
        for (name, now) in interfaces {
            if !super::procfs::interface_counted_by_name(name) || is_vlan(name) {
                continue;
            }
            let last = self.last.entry(name.clone()).or_default();
            let pairs = [
                (now.rx_bytes, last.rx_bytes),
                (now.tx_bytes, last.tx_bytes),
                (now.rx_packets, last.rx_packets),
                (now.tx_packets, last.tx_packets),
            ];
            for (acc, (cur, prev)) in sum.iter_mut().zip(pairs) {
                *acc = acc.wrapping_add(counter_delta(prev, cur));
            }
            // The counters are consumed even if the sample is rejected below (as in gmond).
            *last = *now;
        }
        // gmond keeps the interval in a C float: with the epoch as first stamp that rounds
        // to 128 s steps, which only matters for the near-zero first sample.
        let t = (read_at - self.stamp) as f32;
        if t.is_nan() || t < MIN_INTERVAL as f32 {
            tracing::warn!(interval = f64::from(t), "dubious /proc/net/dev interval");
            return self.values;
        }
        self.stamp = read_at;
        // u64 / float is evaluated in float in C; reproduce the rounding.
        let rate = |d: u64| d as f32 / t;
        let v = NetRateValues {
            bytes_in: rate(sum[0]),
            bytes_out: rate(sum[1]),
            pkts_in: rate(sum[2]),
            pkts_out: rate(sum[3]),
        };
        if f64::from(v.bytes_in) > MAX_BYTES_PER_SEC
            || f64::from(v.bytes_out) > MAX_BYTES_PER_SEC
            || f64::from(v.pkts_in) > MAX_PKTS_PER_SEC
            || f64::from(v.pkts_out) > MAX_PKTS_PER_SEC
        {
            tracing::warn!(
                bytes_in = f64::from(v.bytes_in),
                bytes_out = f64::from(v.bytes_out),
                pkts_in = f64::from(v.pkts_in),
                pkts_out = f64::from(v.pkts_out),
                "implausible network rates, sample dropped"
            );
            return self.values;
        }
        self.values = v;
        v
    }
}

/// Difference of a monotonic counter; a smaller new value is taken as a 64-bit wrap, with
/// gmond's arithmetic (`MAX - old + new`, one less than the modular difference).
fn counter_delta(prev: u64, cur: u64) -> u64 {
    if cur >= prev {
        cur - prev
    } else {
        u64::MAX - prev + cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifc(name: &str, rb: u64, rp: u64, tb: u64, tp: u64) -> (String, IfCounters) {
        (
            name.to_string(),
            IfCounters {
                rx_bytes: rb,
                rx_packets: rp,
                tx_bytes: tb,
                tx_packets: tp,
            },
        )
    }

    #[test]
    fn first_sample_divides_by_epoch_then_real_rates() {
        let mut n = NetRates::new();
        let t0 = 1_795_313_226.0;
        let v = n.update(t0, &[ifc("eth0", 1_000_000, 1000, 500, 5)], |_| false);
        let t = t0 as f32;
        assert_eq!(v.bytes_in, 1_000_000.0 / t);
        assert_eq!(format!("{:.2}", v.bytes_in), "0.00");
        let v = n.update(t0 + 40.0, &[ifc("eth0", 1_004_000, 1040, 900, 9)], |_| {
            false
        });
        assert_eq!(v.bytes_in, 100.0);
        assert_eq!(v.pkts_in, 1.0);
        assert_eq!(v.bytes_out, 10.0);
        assert_eq!(v.pkts_out, 0.1);
    }

    #[test]
    fn loopback_bond_and_vlan_are_left_out() {
        let mut n = NetRates::new();
        let set = |k: u64| {
            vec![
                ifc("lo", k * 7, k, k, k),
                ifc("bond0", k * 7, k, k, k),
                ifc("eth0.10", k * 7, k, k, k),
                ifc("eth0", k * 2, 0, 0, 0),
                ifc("eth1", k, 0, 0, 0),
            ]
        };
        n.update(100.0, &set(0), |i| i == "eth0.10");
        let v = n.update(110.0, &set(10), |i| i == "eth0.10");
        assert_eq!(v.bytes_in, 3.0);
        assert_eq!(v.pkts_in, 0.0);
    }

    #[test]
    fn wrapped_counter_uses_gmond_arithmetic() {
        let mut n = NetRates::new();
        n.update(100.0, &[ifc("eth0", u64::MAX - 99, 0, 0, 0)], |_| false);
        let v = n.update(110.0, &[ifc("eth0", 100, 0, 0, 0)], |_| false);
        // MAX - (MAX - 99) + 100 = 199 bytes in 10 s.
        assert_eq!(v.bytes_in, 19.9);
    }

    #[test]
    fn reset_counter_is_rejected_as_implausible_and_old_values_kept() {
        let mut n = NetRates::new();
        n.update(100.0, &[ifc("eth0", 1000, 10, 0, 0)], |_| false);
        let good = n.update(110.0, &[ifc("eth0", 2000, 20, 0, 0)], |_| false);
        assert_eq!(good.bytes_in, 100.0);
        // Interface re-created: counters restart near zero -> a ~1.8e19 "delta".
        let v = n.update(120.0, &[ifc("eth0", 5, 1, 0, 0)], |_| false);
        assert_eq!(v, good);
        // The rejected sample's counters and interval were both consumed, as in gmond:
        // the next rate covers only 120..130.
        let v = n.update(130.0, &[ifc("eth0", 405, 5, 0, 0)], |_| false);
        assert_eq!(v.bytes_in, 40.0);
    }

    #[test]
    fn too_short_interval_keeps_previous_values() {
        let mut n = NetRates::new();
        n.update(100.0, &[ifc("eth0", 0, 0, 0, 0)], |_| false);
        let a = n.update(110.0, &[ifc("eth0", 100, 0, 0, 0)], |_| false);
        let b = n.update(110.5, &[ifc("eth0", 200, 0, 0, 0)], |_| false);
        assert_eq!(a, b);
    }

    #[test]
    fn new_interface_counts_from_zero() {
        let mut n = NetRates::new();
        n.update(100.0, &[ifc("eth0", 0, 0, 0, 0)], |_| false);
        let v = n.update(
            110.0,
            &[ifc("eth0", 10, 0, 0, 0), ifc("veth9", 90, 0, 0, 0)],
            |_| false,
        );
        assert_eq!(v.bytes_in, 10.0);
    }
}
