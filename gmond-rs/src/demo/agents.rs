//! Placeholder until balancer_agent lands (not committed).
use crate::daemon::{Error, StopHandle};
use gmond_metrics::hypervisor::sim::SimCluster;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyChoice {
    pub name: String,
    pub arg: String,
    pub threshold: f64,
}
pub fn resolve_policy(arg: Option<&str>) -> Result<PolicyChoice, Error> {
    let arg = arg.unwrap_or("hotspot");
    Ok(PolicyChoice {
        name: arg.into(),
        arg: arg.into(),
        threshold: 0.85,
    })
}
pub type EventSink = Arc<dyn Fn(u64, String) + Send + Sync>;
pub type ReasonSink = Arc<dyn Fn(&str, String) + Send + Sync>;
#[allow(dead_code)]
pub struct AgentsSetup {
    pub hosts: Vec<String>,
    pub port: u16,
    pub policy: PolicyChoice,
    pub sim: Arc<Mutex<SimCluster>>,
    pub tick: Duration,
    pub speedup: f64,
    pub wall_start: Instant,
    pub epoch: u64,
    pub stop: StopHandle,
    pub events: EventSink,
    pub reasons: ReasonSink,
}
pub struct Balancers;
impl Balancers {
    pub fn shutdown(self) {}
}
pub fn start(_s: &AgentsSetup) -> Result<Balancers, String> {
    Err("balancer_agent not available yet".into())
}
