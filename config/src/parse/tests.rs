//! Tests of the shared value parsers and checks: durations, sizes, endpoints and names.

use super::*;

#[test]
fn durations() {
    assert_eq!(parse_duration("12s"), Ok(Duration::from_secs(12)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration(" 1m 30s "), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    for bad in ["", "  ", "12", "twelve", "12 parsecs", "-1s"] {
        let err = parse_duration(bad).unwrap_err();
        assert_eq!(err.input, bad);
        assert!(err.to_string().contains("e.g. \"12s\""), "{err}");
    }
    assert_eq!(format_duration(Duration::from_millis(1500)), "1s 500ms");
}

#[test]
fn command_line_durations_take_a_unit_or_seconds() {
    let p = parse_duration_or_seconds;
    assert_eq!(p("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(p("5"), Ok(Duration::from_secs(5)));
    assert_eq!(p(" 1.5 "), Ok(Duration::from_millis(1500)));
    assert_eq!(p("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(p("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(p("0"), Ok(Duration::ZERO));
    for bad in ["", " ", ".", "1.2.3", "-1", "-1s", "soon", "1e400s", "NaNs"] {
        let err = p(bad).unwrap_err();
        assert_eq!(err.input, bad);
    }
}

#[test]
fn sizes() {
    assert_eq!(parse_size("262144"), Ok(262_144));
    assert_eq!(parse_size("256KiB"), Ok(262_144));
    assert_eq!(parse_size("256 KiB"), Ok(262_144));
    assert_eq!(parse_size("1MiB"), Ok(1 << 20));
    assert_eq!(parse_size("10B"), Ok(10));
    for bad in ["", "KiB", "1.5KiB", "-1", "12kb", "99999999999999999999999"] {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn endpoints() {
    for good in [
        "h:1",
        "cell-1.example.com:7000",
        "10.0.0.1:65535",
        "[::1]:7000",
    ] {
        assert_eq!(check_endpoint(good), Ok(()), "{good}");
    }
    for bad in [
        "h",
        "h:0",
        "h:x",
        ":7000",
        "::1:7000",
        "[zz]:1",
        "a b:1",
        "a..b:1",
        "http://h:1",
    ] {
        assert!(check_endpoint(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn names() {
    assert!(check_cell_name("cell-1").is_ok());
    assert!(check_cell_name(&"a".repeat(63)).is_ok());
    assert!(check_cell_name(&"a".repeat(64)).is_err());
    assert!(check_cell_name("").is_err());
    assert!(check_cell_name("Cell").is_err());
    assert!(check_deployment("prod-1.eu_west").is_ok());
    assert!(check_deployment("a/b").is_err());
    assert!(check_deployment("").is_err());
}
