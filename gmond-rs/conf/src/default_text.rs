//! The built-in configuration text (`gmond-rs -t`), used when /etc/ganglia/gmond.conf is absent.
//!
//! Same settings as gmond 3.7.2's built-in default on Linux (so a mixed cluster behaves the
//! same), written for gmond-rs. Real gmond accepts this text too (tested with `gmond -b`).

/// The text `gmond-rs -t` prints. Parsing it gives [`crate::Config`] with multicast
/// 239.2.11.71:8649 send/receive channels, an XML port on 8649, the eight stock modules and
/// the stock collection groups.
pub fn default_config_text() -> &'static str {
    DEFAULT_CONFIG
}

const DEFAULT_CONFIG: &str = r#"/* gmond-rs built-in configuration (print it with `gmond-rs -t`).
   The settings equal the built-in defaults of Ganglia gmond 3.7.2 on Linux, so gmond-rs
   and gmond can share one cluster. Real gmond reads this file as well. */

globals {
  daemonize = yes               # detach from the terminal
  setuid = yes                  # drop root privileges...
  user = nobody                 # ...to this user
  debug_level = 0               # > 0 keeps the daemon in the foreground
  max_udp_msg_len = 1472        # bytes per datagram
  mute = no                     # yes: send no metrics of this host
  deaf = no                     # yes: listen to nobody, serve no XML
  allow_extra_data = yes        # keep EXTRA_DATA (GROUP, TITLE, ...) of other senders
  host_dmax = 86400             # seconds before a silent host is forgotten (0 = never)
  host_tmax = 20                # expected seconds between heartbeats
  cleanup_threshold = 300       # seconds between sweeps of expired hosts and metrics
  gexec = no
  # The name shown for this host defaults to the reverse DNS of its address:
  # override_hostname = "node1.example.org"
  # Unicast setups should re-send metadata (e.g. every 60 s) so that a restarted
  # aggregator relearns every metric; 0 sends it only at start and on request.
  send_metadata_interval = 0
}

/* Attributes of the <CLUSTER> element wrapping the hosts this daemon reports. */
cluster {
  name = "unspecified"
  owner = "unspecified"
  latlong = "unspecified"
  url = "unspecified"
}

/* Attributes of this host. */
host {
  location = "unspecified"
}

/* Where this host's metrics go; any number of send channels may be listed. */
udp_send_channel {
  # bind_hostname = yes   # send from the address the hostname resolves to
  mcast_join = 239.2.11.71
  port = 8649
  ttl = 1
}

/* Where metrics of this and other hosts are received; any number may be listed. */
udp_recv_channel {
  mcast_join = 239.2.11.71
  port = 8649
  bind = 239.2.11.71
  retry_bind = true
  # Receive buffer in bytes; raise it (e.g. 10485760) for large clusters.
  # buffer = 10485760
}

/* The XML description of the cluster is served on these TCP ports. */
tcp_accept_channel {
  port = 8649
  gzip_output = no
}

/* sFlow datagrams arrive on a receive channel with the sFlow port:
udp_recv_channel {
  port = 6343
}
   and are tuned here:
sflow {
  udp_port = 6343
  accept_vm_metrics = yes
  accept_jvm_metrics = yes
  multiple_jvm_instances = no
  accept_http_metrics = yes
  multiple_http_instances = no
  accept_memcache_metrics = yes
  multiple_memcache_instances = no
}
*/

/* Metric modules. Modules built into the daemon need no path; the others name a shared
   object, relative to globals.module_dir unless the path is absolute. */
modules {
  module {
    name = "core_metrics"
  }
  module {
    name = "cpu_module"
    path = "modcpu.so"
  }
  module {
    name = "disk_module"
    path = "moddisk.so"
  }
  module {
    name = "load_module"
    path = "modload.so"
  }
  module {
    name = "mem_module"
    path = "modmem.so"
  }
  module {
    name = "net_module"
    path = "modnet.so"
  }
  module {
    name = "proc_module"
    path = "modproc.so"
  }
  module {
    name = "sys_module"
    path = "modsys.so"
  }
  # Per-VM metrics from libvirt (gmond-rs only; real gmond has no such module):
  # module {
  #   name = "libvirt_module"
  #   path = "builtin"
  #   param uri { value = "qemu:///system" }
  # }
}

/* Collection groups: how often each metric is collected (collect_every), the longest
   time between two sends (time_threshold), and the change that triggers an early send
   (value_threshold). Groups are sent in this order. */

/* Heartbeat, carrying the daemon's start time. */
collection_group {
  collect_once = yes
  time_threshold = 20
  metric {
    name = "heartbeat"
  }
}

/* Facts about the host, re-sent every minute. */
collection_group {
  collect_every = 60
  time_threshold = 60
  metric {
    name = "cpu_num"
    title = "CPU Count"
  }
  metric {
    name = "cpu_speed"
    title = "CPU Speed"
  }
  metric {
    name = "mem_total"
    title = "Memory Total"
  }
  metric {
    name = "swap_total"
    title = "Swap Space Total"
  }
  metric {
    name = "boottime"
    title = "Last Boot Time"
  }
  metric {
    name = "machine_type"
    title = "Machine Type"
  }
  metric {
    name = "os_name"
    title = "Operating System"
  }
  metric {
    name = "os_release"
    title = "Operating System Release"
  }
  metric {
    name = "location"
    title = "Location"
  }
}

/* gexec status (reported as off). */
collection_group {
  collect_once = yes
  time_threshold = 300
  metric {
    name = "gexec"
    title = "Gexec Status"
  }
}

/* CPU usage. cpu_intr and cpu_sintr exist too; they are part of cpu_system. */
collection_group {
  collect_every = 20
  time_threshold = 90
  metric {
    name = "cpu_user"
    value_threshold = "1.0"
    title = "CPU User"
  }
  metric {
    name = "cpu_system"
    value_threshold = "1.0"
    title = "CPU System"
  }
  metric {
    name = "cpu_idle"
    value_threshold = "5.0"
    title = "CPU Idle"
  }
  metric {
    name = "cpu_nice"
    value_threshold = "1.0"
    title = "CPU Nice"
  }
  metric {
    name = "cpu_aidle"
    value_threshold = "5.0"
    title = "CPU aidle"
  }
  metric {
    name = "cpu_wio"
    value_threshold = "1.0"
    title = "CPU wio"
  }
  metric {
    name = "cpu_steal"
    value_threshold = "1.0"
    title = "CPU steal"
  }
}

/* Load averages. */
collection_group {
  collect_every = 20
  time_threshold = 90
  metric {
    name = "load_one"
    value_threshold = "1.0"
    title = "One Minute Load Average"
  }
  metric {
    name = "load_five"
    value_threshold = "1.0"
    title = "Five Minute Load Average"
  }
  metric {
    name = "load_fifteen"
    value_threshold = "1.0"
    title = "Fifteen Minute Load Average"
  }
}

/* Process counts. */
collection_group {
  collect_every = 80
  time_threshold = 950
  metric {
    name = "proc_run"
    value_threshold = "1.0"
    title = "Total Running Processes"
  }
  metric {
    name = "proc_total"
    value_threshold = "1.0"
    title = "Total Processes"
  }
}

/* Memory, collected every 40 s and sent at least every 3 minutes. */
collection_group {
  collect_every = 40
  time_threshold = 180
  metric {
    name = "mem_free"
    value_threshold = "1024.0"
    title = "Free Memory"
  }
  metric {
    name = "mem_shared"
    value_threshold = "1024.0"
    title = "Shared Memory"
  }
  metric {
    name = "mem_buffers"
    value_threshold = "1024.0"
    title = "Memory Buffers"
  }
  metric {
    name = "mem_cached"
    value_threshold = "1024.0"
    title = "Cached Memory"
  }
  metric {
    name = "swap_free"
    value_threshold = "1024.0"
    title = "Free Swap Space"
  }
}

/* Network traffic. */
collection_group {
  collect_every = 40
  time_threshold = 300
  metric {
    name = "bytes_out"
    value_threshold = 4096
    title = "Bytes Sent"
  }
  metric {
    name = "bytes_in"
    value_threshold = 4096
    title = "Bytes Received"
  }
  metric {
    name = "pkts_in"
    value_threshold = 256
    title = "Packets Received"
  }
  metric {
    name = "pkts_out"
    value_threshold = 256
    title = "Packets Sent"
  }
}

/* Disk size changes rarely. */
collection_group {
  collect_every = 1800
  time_threshold = 3600
  metric {
    name = "disk_total"
    value_threshold = 1.0
    title = "Total Disk Space"
  }
}

/* Free disk space. */
collection_group {
  collect_every = 40
  time_threshold = 180
  metric {
    name = "disk_free"
    value_threshold = 1.0
    title = "Disk Space Available"
  }
  metric {
    name = "part_max_used"
    value_threshold = 1.0
    title = "Maximum Disk Space Used"
  }
}

include ("/etc/ganglia/conf.d/*.conf")
"#;
