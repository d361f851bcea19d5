//! `warren-chaos`: Warren's real-process chaos harness (docs/reliability.md, "Chaos"). It
//! launches a deployment on 127.0.0.1 (etcd members, a meta cell and two data cells each with
//! a master and a standby on etcd, two proxies, a fault bridge on every link between tiers),
//! runs a mixed workload of real client sessions, applies a fault schedule drawn from a seed,
//! and judges the recorded history with every checker of warren-history.
//!
//! - [`schedule`]: the seeded fault schedule (pure: same seed, same schedule);
//! - [`cluster`]: the deployment and its fault controls;
//! - [`workload`]: the client sessions and the sequencer-fenced resource, recorded;
//! - [`run`]: one session end to end, and its report.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod run;
pub mod schedule;
pub mod workload;
