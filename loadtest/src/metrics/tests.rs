//! Tests of the Prometheus exposition parser, the scrape deltas and rates, and KeepAlive absorption.

use super::*;

const PROXY_BEFORE: &str = "\
# HELP warren_proxy_keepalives_received_total Client KeepAlives received.
# TYPE warren_proxy_keepalives_received_total counter
warren_proxy_keepalives_received_total 1000
warren_proxy_client_sessions 50
";
const PROXY_AFTER: &str = "\
# TYPE warren_proxy_keepalives_received_total counter
warren_proxy_keepalives_received_total 3000 1700000000000
warren_proxy_client_sessions 50
warren_rpc_total{tier=\"proxy\",method=\"Open\",code=\"OK\"} 500
";
const CELL_BEFORE: &str = "\
# TYPE warren_keepalives_received_total counter
warren_keepalives_received_total 10
warren_rpc_total{method=\"KeepAlive\",code=\"OK\"} 10
warren_rpc_total{method=\"Open\",code=\"OK\"} 90
";
const CELL_AFTER: &str = "\
warren_keepalives_received_total 30
warren_rpc_total{method=\"KeepAlive\",code=\"OK\"} 30
warren_rpc_total{method=\"Open\",code=\"OK\"} 470
warren_rpc_total{method=\"Open\",code=\"NOT_FOUND\"} 0
";

fn ep(admin: &str, before: &str, after: &str, secs: f64) -> EndpointScrapes {
    EndpointScrapes {
        admin: admin.into(),
        before: Exposition::parse(before).unwrap(),
        after: Exposition::parse(after).unwrap(),
        secs,
    }
}

#[test]
fn parses_samples_labels_and_timestamps() {
    let e = Exposition::parse(
        "# HELP x y\n\nm_total{a=\"sp ace\",b=\"br}ace \\\" q\"} 2.5\nm_total 1 123\n\
         g NaN\nh_bucket{le=\"+Inf\"} +Inf\n",
    )
    .unwrap();
    assert_eq!(e.get("m_total"), Some(3.5));
    assert!(e.get("g").unwrap().is_nan());
    assert_eq!(e.get("h_bucket"), Some(f64::INFINITY));
    assert_eq!(e.get("absent"), None);
    let s = &e.samples()[0];
    assert_eq!(s.labels["a"], "sp ace");
    assert_eq!(s.labels["b"], "br}ace \" q");
    assert_eq!(
        e.sum_where("m_total", |l| l.get("a").is_some_and(|a| a == "sp ace")),
        Some(2.5)
    );
    assert_eq!(e.sum_where("m_total", |l| l.contains_key("zzz")), None);
}

#[test]
fn rpcs_are_split_by_tier() {
    let e = Exposition::parse(
        "warren_rpc_total{tier=\"cell\",method=\"Open\",code=\"OK\"} 7\n\
         warren_rpc_total{tier=\"proxy\",method=\"Open\",code=\"OK\"} 5\n\
         warren_rpc_total{method=\"Open\",code=\"OK\"} 1\n",
    )
    .unwrap();
    assert_eq!(e.sum_where(CELL_RPCS, cell_tier), Some(8.0));
    assert_eq!(e.sum_where(CELL_RPCS, proxy_tier), Some(5.0));
    assert!(Exposition::parse("x{a=1} 2\n").is_err());
    assert!(Exposition::parse("x{=\"1\"} 2\n").is_err());
}

#[test]
fn malformed_lines_are_errors_naming_the_line() {
    let err = Exposition::parse("ok 1\nbroken{a=\"1\" 2\n").unwrap_err();
    assert!(
        matches!(err, MetricsError::Malformed { line: 2, .. }),
        "{err}"
    );
    let err = Exposition::parse("name_only\n").unwrap_err();
    assert!(matches!(err, MetricsError::Malformed { line: 1, .. }));
    let err = Exposition::parse("x abc\n").unwrap_err();
    assert!(err.to_string().contains("line 1"));
}

#[test]
fn absorption_from_known_counters() {
    let eps = [
        ep("proxy:1", PROXY_BEFORE, PROXY_AFTER, 10.0),
        ep("cell:1", CELL_BEFORE, CELL_AFTER, 10.0),
    ];
    let a = absorption(&eps).unwrap();
    assert_eq!(a.client_at_proxies, 2000.0);
    assert_eq!(a.at_cells, 20.0);
    assert_eq!(a.factor, Some(100.0));

    let cell = endpoint_report(&eps[1]).unwrap();
    assert_eq!(cell.role, "cell");
    // (30 + 470) − (10 + 90) = 400 RPCs in 10 s.
    assert_eq!(cell.rpc_per_s, Some(40.0));
    assert_eq!(cell.cell_keepalives_per_s, Some(2.0));
    assert_eq!(cell.client_keepalives_per_s, None);
    let proxy = endpoint_report(&eps[0]).unwrap();
    assert_eq!(proxy.role, "proxy");
    assert_eq!(proxy.client_keepalives_per_s, Some(200.0));
    // The proxy's own RPCs (tier proxy) are not cell RPCs.
    assert_eq!(proxy.rpc_per_s, None);
    assert_eq!(proxy.proxy_rpc_per_s, Some(50.0));
}

#[test]
fn absorption_sums_endpoints_of_each_kind() {
    let eps = [
        ep("p1", PROXY_BEFORE, PROXY_AFTER, 10.0),
        ep("p2", PROXY_BEFORE, PROXY_AFTER, 10.0),
        ep("c1", CELL_BEFORE, CELL_AFTER, 10.0),
        ep("c2", CELL_BEFORE, CELL_AFTER, 10.0),
    ];
    let a = absorption(&eps).unwrap();
    assert_eq!((a.client_at_proxies, a.at_cells), (4000.0, 40.0));
    assert_eq!(a.factor, Some(100.0));
}

#[test]
fn no_keepalive_at_the_cells_gives_no_factor() {
    let eps = [
        ep("p", PROXY_BEFORE, PROXY_AFTER, 3.0),
        ep("c", CELL_BEFORE, CELL_BEFORE, 3.0),
    ];
    let a = absorption(&eps).unwrap();
    assert_eq!(a.at_cells, 0.0);
    assert_eq!(a.factor, None);
}

#[test]
fn missing_counters_are_clear_errors() {
    // No proxy among the endpoints.
    let err = absorption(&[ep("c", CELL_BEFORE, CELL_AFTER, 1.0)]).unwrap_err();
    assert!(matches!(
        err,
        MetricsError::NoEndpoint { kind: "proxy", .. }
    ));
    assert!(err.to_string().contains(PROXY_KEEPALIVES));
    // No cell.
    let err = absorption(&[ep("p", PROXY_BEFORE, PROXY_AFTER, 1.0)]).unwrap_err();
    assert!(err.to_string().contains(CELL_KEEPALIVES), "{err}");
    // A counter absent after the run at an endpoint.
    let e = ep("p", PROXY_BEFORE, "other_metric 1\n", 1.0);
    let err = e.delta(PROXY_KEEPALIVES).unwrap_err();
    assert_eq!(
        err,
        MetricsError::Missing {
            endpoint: "p".into(),
            counter: PROXY_KEEPALIVES.into()
        }
    );
    assert!(err.to_string().contains("p does not expose"));
    // A counter first seen after the run counts from 0.
    let e = ep("p", "", PROXY_AFTER, 1.0);
    assert_eq!(e.delta(PROXY_KEEPALIVES).unwrap(), 3000.0);
}

#[test]
fn a_counter_going_down_is_an_error() {
    let e = ep("p", PROXY_AFTER, PROXY_BEFORE, 1.0);
    let err = absorption(&[e, ep("c", CELL_BEFORE, CELL_AFTER, 1.0)]).unwrap_err();
    assert!(matches!(err, MetricsError::Decreased { .. }));
    assert!(err.to_string().contains("restart"));
}

#[test]
fn one_registry_for_proxy_and_cells_counts_as_both() {
    let both_before = format!("{PROXY_BEFORE}{CELL_BEFORE}");
    let both_after = format!("{PROXY_AFTER}{CELL_AFTER}");
    let e = ep("dev", &both_before, &both_after, 10.0);
    assert_eq!(endpoint_report(&e).unwrap().role, "proxy+cell");
    assert_eq!(absorption(&[e]).unwrap().factor, Some(100.0));
}
