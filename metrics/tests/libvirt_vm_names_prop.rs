//! Properties of the VM-name rules of `vmetrics`: any libvirt domain name gives a bounded prefix
//! of safe characters, clean names pass through unchanged, different names give different
//! prefixes (short of a 32-bit hash collision), and `parse_vm_metric` inverts the naming.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gmond_metrics::vmetrics::{
    is_clean_vm_name, parse_vm_metric, sanitize_vm_name, vm_metric_name, MAX_VM_PREFIX_LEN,
    VM_METRICS,
};
use proptest::prelude::*;

fn safe(b: u8) -> bool {
    // What survives PHP's escapeshellcmd unchanged (ganglia-web's graph.php).
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

proptest! {
    #[test]
    fn any_name_gives_a_safe_bounded_prefix(name in any::<String>()) {
        let p = sanitize_vm_name(&name);
        prop_assert!(!p.is_empty());
        prop_assert!(p.len() <= MAX_VM_PREFIX_LEN, "{} bytes", p.len());
        prop_assert!(p.bytes().all(safe), "{p:?}");
        prop_assert_eq!(&p, &sanitize_vm_name(&name));
        prop_assert_eq!(p == name, is_clean_vm_name(&name));
        prop_assert_eq!(p.contains("--"), !is_clean_vm_name(&name));
    }

    #[test]
    fn clean_names_pass_through(name in "[A-Za-z0-9._-]{1,128}") {
        prop_assume!(!name.contains("--"));
        prop_assert_eq!(sanitize_vm_name(&name), name);
    }

    #[test]
    fn distinct_names_distinct_prefixes(a in "[a-z:. é]{0,12}", b in "[a-z:. é]{0,12}") {
        prop_assume!(a != b);
        prop_assert_ne!(sanitize_vm_name(&a), sanitize_vm_name(&b));
    }

    #[test]
    fn parse_inverts_naming(name in any::<String>(), k in 0..VM_METRICS.len()) {
        let metric = VM_METRICS[k];
        let full = vm_metric_name(&name, metric);
        let p = sanitize_vm_name(&name);
        prop_assert_eq!(parse_vm_metric(&full), Some((p.as_str(), metric)));
    }
}
