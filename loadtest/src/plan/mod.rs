//! `warren loadtest plan`: measured per-proxy and per-cell capacity in, a recommended number
//! of proxies and cells out, with headroom, the resource that binds each tier, the
//! utilisation of every resource, and where each capacity figure came from.
//!
//! Pure code: the caller reads the `--from` files and passes their text (or [`Report`]s) in.
//!
//! - `capacity`: the resources of one proxy and one cell, their built-in default figures,
//!   and a figure with the evidence behind it ([`Figure`], [`Capacity`]);
//! - `evidence`: what saved `warren loadtest run` reports prove about each figure: floors
//!   from clean runs, ceilings from overloaded ones ([`Criteria`], [`Capacity::from_json`]);
//! - `model`: the demand, the load model and the sizing rules: the recommended numbers of
//!   proxies and cells ([`plan`], [`Plan`]);
//! - `render`: the plan as a terminal table, and numbers for people ([`Plan::summary`]).
//!
//! Input out of range is a [`PlanError`], defined here with the range checks every part uses.
//!
//! [`Report`]: crate::report::Report

mod capacity;
mod evidence;
mod model;
mod render;

pub use capacity::{
    Basis, Bound, Capacity, CellCapacity, Figure, ProxyCapacity, Resource, Source, Tier,
    DEFAULT_CELL_KEEPALIVES_PER_S, DEFAULT_CELL_READS_PER_S, DEFAULT_CELL_WRITES_PER_S,
    DEFAULT_PROXY_READS_PER_S, DEFAULT_PROXY_SESSIONS, DEFAULT_PROXY_WRITES_PER_S,
};
pub use evidence::Criteria;
pub use model::{
    plan, plan_with, Demand, Model, Plan, ResourcePlan, DEFAULT_HEADROOM, MIN_CELLS, MIN_PROXIES,
};

use std::fmt;

/// Invalid input to the planner.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanError {
    /// A number out of its range.
    Invalid {
        what: String,
        value: String,
        expected: &'static str,
    },
    /// A `--from` file that is not a `warren loadtest run --json` report.
    BadReport { file: String, message: String },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Invalid {
                what,
                value,
                expected,
            } => write!(f, "{what} must be {expected}, got {value}"),
            PlanError::BadReport { file, message } => write!(
                f,
                "{file} is not a `warren loadtest run --json` report: {message}"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

fn invalid(what: &str, value: f64, expected: &'static str) -> PlanError {
    PlanError::Invalid {
        what: what.into(),
        value: format!("{value}"),
        expected,
    }
}

fn non_negative(what: &str, v: f64) -> Result<(), PlanError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(what, v, "a finite number ≥ 0"))
    }
}

fn positive(what: &str, v: f64) -> Result<(), PlanError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(what, v, "a finite number > 0"))
    }
}

fn fraction(what: &str, v: f64) -> Result<(), PlanError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(what, v, "between 0 and 1"))
    }
}

#[cfg(test)]
mod test_support {
    //! Helpers the tests of every part of the planner share.
    use super::{plan, Capacity, Demand, Plan, ResourcePlan, Tier};

    /// The plan for `demand` on the built-in capacity figures alone.
    pub(crate) fn plan_on_builtin(demand: Demand, headroom: f64) -> Plan {
        plan(&demand, &Capacity::builtin(), headroom).expect("a valid demand")
    }

    pub(crate) fn demand(clients: u64, read: f64, write: f64, lock: f64) -> Demand {
        Demand {
            clients,
            read_rate: read,
            write_rate: write,
            lock_rate: lock,
        }
    }

    pub(crate) fn res<'a>(p: &'a Plan, tier: Tier, name: &str) -> &'a ResourcePlan {
        p.resources
            .iter()
            .find(|r| r.tier == tier && r.resource == name)
            .unwrap_or_else(|| panic!("no {tier} {name}"))
    }

    pub(crate) fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }
}
