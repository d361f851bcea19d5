//! `/status` keeps its shape: one flat JSON object, the master's counts beside the
//! replica's own fields.

use super::CellStatus;

#[test]
fn status_json_is_one_flat_object_with_the_documented_fields() {
    let json = serde_json::to_value(CellStatus::default()).expect("serializes");
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want = vec![
        "name",
        "deployment",
        "replica",
        "epoch",
        "role",
        "master",
        "store",
        "store_health",
        "serving",
        "sessions",
        "nodes",
        "handles",
        "held_locks",
        "proxy_sessions",
        "sub_sessions",
        "orphans",
        "map_epoch",
        "slots",
        "map_loaded",
    ];
    want.sort_unstable();
    assert_eq!(keys, want, "{json}");
}
