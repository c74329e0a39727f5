//! Upstream pools: backends, their health (active readiness probes and passive
//! ejection), and forwarding with retries.

pub mod backend;
pub mod conn;
pub mod discovery;
pub mod eject;
pub mod pool;
pub mod probe;
