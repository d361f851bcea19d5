//! The plan in words: the terminal table of [`Plan::summary`] (per tier the recommendation,
//! the binding resource, each resource's load and utilisation, the source of every figure),
//! and the number formats the notes use as well.

use super::capacity::{Basis, Tier};
use super::model::{Plan, TierOutcome};
use std::fmt::Write as _;

impl Plan {
    /// The readable terminal table: per tier the recommendation, the binding resource, each
    /// resource's load and utilisation, and the source of every figure.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let d = &self.demand;
        let _ = writeln!(
            s,
            "warren loadtest plan: {} clients; {} reads/s, {} writes/s, {} lock ops/s; headroom {:.0}%",
            num(d.clients as f64),
            num(d.read_rate),
            num(d.write_rate),
            num(d.lock_rate),
            self.headroom * 100.0
        );
        if !self.feasible {
            let _ = writeln!(s, "NOT FEASIBLE: see the notes");
        }
        for TierOutcome {
            tier,
            units: n,
            binding: bind,
            rule,
            on_proven,
        } in self.tiers()
        {
            let rule_text = match rule {
                "failover" => "set by the N+1 check: one proxy down",
                "minimum" => "the minimum",
                _ => "set by demand + headroom",
            };
            let proven_text = match on_proven {
                Some(m) => format!("on measured figures alone: {m}"),
                None => "not every figure measured".into(),
            };
            let _ = writeln!(
                s,
                "\n{}: {n}   binding: {bind} ({rule_text}; {proven_text})",
                match tier {
                    Tier::Proxy => "proxies",
                    Tier::Cell => "cells",
                },
            );
            let _ = writeln!(
                s,
                "  {:<11} {:>16} {:>14} {:>14} {:>7} {:>9} {:>6}  {:<13} unit",
                "resource",
                "demand",
                format!("per {tier}"),
                "capacity each",
                "use",
                "one down",
                "needs",
                "basis",
            );
            for r in self.resources.iter().filter(|r| r.tier == tier) {
                let _ = writeln!(
                    s,
                    "  {:<11} {:>16} {:>14} {:>14} {:>7} {:>9} {:>6}  {:<13} {}",
                    r.resource,
                    num(r.demand),
                    num(r.per_unit),
                    num(r.capacity_each),
                    pct(r.utilisation),
                    r.utilisation_one_down.map_or("-".into(), pct),
                    r.needed.map_or("none".into(), |n| n.to_string()),
                    r.basis.to_string(),
                    r.unit
                );
            }
        }
        let _ = writeln!(s, "\nsources:");
        for r in &self.resources {
            let proven = match (r.basis, r.proven) {
                (Basis::Measured, _) | (_, None) => String::new(),
                (_, Some(v)) => format!(" [runs proved ≥ {}]", num(v)),
            };
            let _ = writeln!(s, "  {} {}: {}{proven}", r.tier, r.resource, r.source);
        }
        let _ = writeln!(s, "\nassumptions:");
        for a in &self.assumptions {
            let _ = writeln!(s, "  - {a}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

/// A number for people: thousands separated above 1,000, fewer decimals as it grows.
pub(super) fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x.abs() >= 1000.0 {
        let digits = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if x < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if x.abs() >= 100.0 || x == x.trunc() {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `1 proxy`, `4 proxies`, `1 cell`, `6 cells`.
pub(super) fn count_of(n: u64, tier: Tier) -> String {
    match (tier, n) {
        (Tier::Proxy, 1) => "1 proxy".into(),
        (Tier::Proxy, n) => format!("{n} proxies"),
        (Tier::Cell, 1) => "1 cell".into(),
        (Tier::Cell, n) => format!("{n} cells"),
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::test_support::{demand, plan_on_builtin};

    #[test]
    fn json_and_summary() {
        let p = plan_on_builtin(demand(250_000, 100.0, 10.0, 0.0), 0.5);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["proxies"], 4);
        assert_eq!(v["cells"], 1);
        assert_eq!(v["proxy_binding"], "sessions");
        assert_eq!(v["cell_binding"], "keepalives");
        assert_eq!(v["feasible"], true);
        let r0 = &v["resources"][0];
        assert_eq!(r0["tier"], "proxy");
        assert_eq!(r0["resource"], "sessions");
        assert_eq!(r0["demand"], 250_000.0);
        assert_eq!(r0["capacity_each"], 100_000.0);
        assert_eq!(r0["needed"], 4);
        assert_eq!(r0["utilisation"], 0.625);
        assert_eq!(r0["basis"], "assumed");
        assert!(r0["source"].as_str().unwrap().contains("built-in default"));
        assert_eq!(v["resources"][5]["tier"], "cell");
        assert_eq!(
            v["resources"][5]["needed_one_down"],
            serde_json::Value::Null
        );
        let text = p.summary();
        assert!(text.contains("proxies: 4   binding: sessions"), "{text}");
        assert!(text.contains("cells: 1   binding: keepalives"), "{text}");
        assert!(text.contains("250,000"), "{text}");
        assert!(text.contains("62.5%"), "{text}");
        assert!(text.contains("proxy sessions: built-in default (docs/performance.md"));
        // Every default is a measurement now: no placeholder left.
        assert!(
            text.contains("cell keepalives: built-in default (docs/performance.md"),
            "{text}"
        );
        assert!(!text.contains("placeholder"), "{text}");
        assert!(!text.contains("not measured yet"), "{text}");
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(num(250_000.0), "250,000");
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(999.6), "1000");
        assert_eq!(num(60.0), "60");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(0.727), "0.73");
    }
}
