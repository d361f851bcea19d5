//! The exhaustive check of the slot-move protocol (`warren_reshard::model`): the real job
//! core against abstract cells, under crashes, freeze timeouts, failed calls, an abort and
//! client traffic. The small configuration runs with `cargo test`; the larger one with
//! `cargo test -p warren-reshard --release --test model_check -- --ignored`.
//! Planted bugs show each safety property can fail.

use std::collections::BTreeSet;
use std::time::Instant;

use stateright::{Checker, HasDiscoveries, Model};
use warren_reshard::model::{Bug, ReshardModel};

/// Checks `model` to the end and asserts every property; returns the unique states.
fn check_all(name: &str, model: ReshardModel) -> usize {
    let start = Instant::now();
    let checker = model.checker().threads(2).spawn_bfs().join();
    let states = checker.unique_state_count();
    println!(
        "model check ({name}): {states} unique states ({} generated), max depth {}, in {:.1?}",
        checker.state_count(),
        checker.max_depth(),
        start.elapsed()
    );
    checker.assert_properties();
    states
}

#[test]
fn the_slot_move_protocol_keeps_its_properties() {
    let states = check_all("small", ReshardModel::small());
    assert!(states > 10_000, "the model explored only {states} states");
}

#[test]
#[ignore = "minutes in a debug build: run with --release -- --ignored"]
fn the_slot_move_protocol_keeps_its_properties_in_the_larger_model() {
    let states = check_all("large", ReshardModel::large());
    assert!(states > 100_000, "the model explored only {states} states");
}

/// Checks `model` until a property fails; asserts that `property` did.
fn finds(model: ReshardModel, property: &'static str) {
    let bug = model.bug;
    let checker = model
        .checker()
        .threads(2)
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])))
        .spawn_bfs()
        .join();
    let path = checker.discovery(property).unwrap_or_else(|| {
        panic!(
            "{bug:?}: no counterexample to {property:?} in {} states",
            checker.unique_state_count()
        )
    });
    println!(
        "{bug:?}: {property:?} fails after {} steps: {:?}",
        path.clone().into_actions().len(),
        path.into_actions()
    );
}

#[test]
fn a_hand_off_that_ignores_the_freeze_loses_a_write() {
    finds(
        ReshardModel::small().with_bug(Bug::HandOffIgnoresFreeze),
        "no lost acknowledged write",
    );
}

#[test]
fn a_target_serving_its_staged_copy_makes_two_owners() {
    finds(
        ReshardModel::small().with_bug(Bug::TargetServesStaged),
        "single owner",
    );
}

#[test]
fn a_map_written_before_the_hand_off_makes_two_owners() {
    finds(
        ReshardModel::small().with_bug(Bug::MapBeforeHandOff),
        "single owner",
    );
}

#[test]
fn staged_copies_kept_in_memory_lose_the_slot() {
    finds(
        ReshardModel::small().with_bug(Bug::StagedInMemory),
        "no lost acknowledged write",
    );
}

#[test]
fn a_copy_without_the_lock_lets_two_clients_hold_it() {
    finds(
        ReshardModel::small().with_bug(Bug::CopyLosesLock),
        "at most one exclusive holder",
    );
}

/// The small model with a FreezeSlots that arrives after its caller gave up on it.
fn with_late_freeze() -> ReshardModel {
    ReshardModel {
        late_freezes: 1,
        crashes: 0,
        ..ReshardModel::small()
    }
}

#[test]
fn a_late_freeze_cannot_make_a_hand_off_lose_a_write() {
    let states = check_all("late freeze", with_late_freeze());
    assert!(states > 10_000, "the model explored only {states} states");
}

#[test]
fn a_hand_off_that_checks_only_the_freeze_loses_a_write_to_a_late_freeze() {
    finds(
        with_late_freeze().with_bug(Bug::HandOffChecksOnlyFreeze),
        "no lost acknowledged write",
    );
}
