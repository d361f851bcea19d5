//! `warren loadtest` (docs/design.md §15): a simulated fleet of client sessions against a
//! Warren deployment, open-loop operations with latency measured from their intended send
//! time, and a report whose KeepAlive absorption factor and per-cell rates come from the
//! servers' own `/metrics`.
//!
//! - [`deploy`]: a `warren dev`-shaped deployment of processes, for `--deploy` and faults;
//! - [`echo`]: `warren loadtest echo`, a bare tonic server to measure a proxy against;
//! - [`fault`]: faults injected during a run (`--kill`, `--restart`);
//! - [`forward`]: `warren loadtest forward`, a bare tonic forwarder: the floor of one more hop;
//! - [`h2conn`]: the load generator's HTTP/2 connections (h2 directly, under tonic's client);
//! - [`fence`]: the lock check (two holders at once, a lock generation that went back);
//! - [`http`]: the plain HTTP GET of admin pages;
//! - [`html`]: the `--html` page with its SVG plots of the timeline;
//! - [`lost`]: the `acked_lost` check (which acknowledged writes a read-back misses);
//! - [`metrics`]: Prometheus text parsing, scraping, the absorption factor;
//! - [`plan`]: `warren loadtest plan`, a number of proxies and cells from saved reports;
//! - [`procstat`]: the launched servers' memory and CPU over the window, from `/proc`;
//! - [`reshard`]: `--reshard add-cell@T`, a reshard under load and its report section;
//! - [`report`]: percentiles, throughput, the report and its terminal summary and JSON;
//! - [`workload`]: Poisson arrivals and Zipf file popularity;
//! - [`run`]: the run itself.

pub mod deploy;
pub mod echo;
pub mod fault;
pub mod fence;
pub mod forward;
pub mod h2conn;
pub mod html;
pub mod http;
pub mod lost;
pub mod metrics;
pub mod plan;
pub mod procstat;
pub mod report;
pub mod reshard;
pub mod run;
pub mod workload;

pub use report::Report;

pub use run::{run, run_with, Config, Target};
