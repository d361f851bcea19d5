//! Tests of `warren ctl reshard`: its command line, the checks of `--add-cell`,
//! `--remove-cell`, `--weight` and `--to`, the plan's text and JSON for a fixed plan, and
//! the Reshard calls against fake cells (counts, a standby's `NOT_MASTER`, an unreachable
//! cell, the job calls).

use super::*;
use crate::ctl::reshard_output::{
    abort_text, human_bytes, human_duration, plan_text, render_status, Estimate,
};
use crate::ctl::tests::parse;
use crate::ctl::CtlCommand;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};
use warren_client::WarrenError;
use warren_proto::pb::reshard_server::{Reshard, ReshardServer};
use warren_reshard::MoveCounts;
use warren_testkit::Cell;

fn reshard(args: &[&str]) -> Result<ReshardCommand, clap::Error> {
    let mut argv = vec!["reshard"];
    argv.extend_from_slice(args);
    parse(&argv).map(|a| match a.command {
        CtlCommand::Reshard { command } => command,
        other => panic!("not a reshard command: {other:?}"),
    })
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_command_line() {
    let ReshardCommand::Plan(p) = reshard(&[
        "plan",
        "--add-cell",
        "c4=127.0.0.1:7104,127.0.0.1:7114",
        "--add-cell",
        "c5=127.0.0.1:7105",
        "--remove-cell",
        "c1",
        "--weight",
        "c4=2",
        "--out",
        "p.json",
        "--max-bytes-per-sec",
        "1000000",
    ])
    .expect("parses") else {
        panic!("a plan")
    };
    assert_eq!(p.add_cell.len(), 2);
    assert_eq!(p.remove_cell, ["c1"]);
    assert_eq!(p.weight, ["c4=2"]);
    assert_eq!(p.out, Some(PathBuf::from("p.json")));
    assert_eq!(p.max_bytes_per_sec, Some(1_000_000));
    assert_eq!(p.meta.meta, [DEFAULT_META]);
    // --json is ctl's global flag.
    let a = parse(&["reshard", "plan", "--to", "m.json", "--json"]).expect("parses");
    assert!(a.json);
    // --to is the whole target: it conflicts with the piecewise flags.
    for flag in ["--add-cell", "--remove-cell", "--weight"] {
        let e = reshard(&["plan", "--to", "m.json", flag, "c1=1"]).expect_err("conflict");
        assert!(e.to_string().contains("--to"), "{flag}: {e}");
    }
    assert!(reshard(&["plan", "--max-bytes-per-sec", "0"]).is_err());

    let ReshardCommand::Apply(a) = reshard(&[
        "apply",
        "p.json",
        "--meta",
        "10.0.0.1:7100,10.0.0.2:7100",
        "--max-bytes-per-sec",
        "5000",
        "--slots-per-batch",
        "8",
        "--freeze-timeout",
        "500ms",
    ])
    .expect("parses") else {
        panic!("an apply")
    };
    assert_eq!(a.plan, PathBuf::from("p.json"));
    assert_eq!(a.meta.meta, ["10.0.0.1:7100", "10.0.0.2:7100"]);
    assert_eq!(
        (a.max_bytes_per_sec, a.slots_per_batch),
        (Some(5000), Some(8))
    );
    assert_eq!(a.freeze_timeout, Some(Duration::from_millis(500)));
    assert!(reshard(&["apply"]).is_err(), "the plan file is required");
    assert!(reshard(&["apply", "p", "--slots-per-batch", "0"]).is_err());
    assert!(reshard(&["apply", "p", "--freeze-timeout", "soon"]).is_err());
    let f = freeze_timeout_ms(Some(Duration::from_micros(10))).expect_err("too short");
    assert!(f.message.contains("500ms"), "{}", f.message);
    assert_eq!(
        freeze_timeout_ms(Some(Duration::from_secs(2))).unwrap(),
        2000
    );
    assert_eq!(freeze_timeout_ms(None).unwrap(), 0);

    assert!(matches!(
        reshard(&["status", "--watch"]).expect("parses"),
        ReshardCommand::Status { watch: true, .. }
    ));
    assert!(matches!(
        reshard(&["abort"]).expect("parses"),
        ReshardCommand::Abort { .. }
    ));
    let f = check_args(&reshard(&["abort", "--meta", " "]).unwrap()).expect_err("no meta");
    assert!(f.message.contains("--meta HOST:PORT"), "{}", f.message);
}

#[test]
fn the_default_meta_cell_is_warren_devs() {
    let layout = warren_config::Layout::new(1, 1, warren_config::layout::DEFAULT_BASE_PORT);
    assert_eq!(
        DEFAULT_META,
        format!("127.0.0.1:{}", layout.meta_ports().grpc)
    );
}

fn three() -> PartitionMap {
    PartitionMap::even(
        "local",
        &[
            ("c1", vec!["127.0.0.1:7101"]),
            ("c2", vec!["127.0.0.1:7102"]),
            ("c3", vec!["127.0.0.1:7103"]),
        ],
        64,
    )
    .unwrap()
}

fn change(add: &[&str], remove: &[&str], weight: &[&str]) -> Result<Change, Failure> {
    Change::parse(&strings(add), &strings(remove), &strings(weight))
}

#[test]
fn malformed_flags_are_refused_naming_the_fix() {
    for (add, remove, weight, wants) in [
        (
            &["c4"][..],
            &[][..],
            &[][..],
            "has no '='; write NAME=HOST:PORT",
        ),
        (&["=h:1"], &[], &[], "names no cell"),
        (&["c4="], &[], &[], "gives cell c4 no replica address"),
        (&["c4=h:1", "c4=h:2"], &[], &[], "names cell c4 twice"),
        (
            &["c4=h:1"],
            &["c4"],
            &[],
            "both added (--add-cell) and removed",
        ),
        (
            &[],
            &[],
            &["c1"],
            "--weight \"c1\" has no '='; write NAME=W",
        ),
        (
            &[],
            &[],
            &["c1=x"],
            "the weight \"x\" is not a whole number",
        ),
        (&[], &[], &["c1=-1"], "is not a whole number"),
        (&[], &["c1"], &["c1=2"], "cell c1 is being removed"),
        (&[], &[], &["c1=2", "c1=3"], "gives cell c1 twice"),
    ] {
        let f = change(add, remove, weight).expect_err("refused");
        assert_eq!(f.code, "INVALID_ARGUMENT");
        assert!(
            f.message.contains(wants),
            "{add:?} {remove:?} {weight:?}: {}",
            f.message
        );
    }
    let c = change(&["c4=h:1, h:2"], &["c1", "c1"], &["c2=3"]).expect("valid");
    assert_eq!(c.add["c4"], ["h:1", "h:2"]);
    assert_eq!(c.remove.len(), 1);
    assert_eq!(c.weights["c2"], 3);
}

#[test]
fn the_target_is_checked_against_the_map() {
    let map = three();
    for (c, wants) in [
        (
            change(&[], &["c9"], &[]),
            "--remove-cell c9: the map in force (epoch 1) has no cell c9; its cells are c1,c2,c3",
        ),
        (
            change(&["c2=h:9"], &[], &[]),
            "cell c2 is already in the map (at 127.0.0.1:7102)",
        ),
        (
            change(&[], &[], &["c9=2"]),
            "no cell c9 in the map in force",
        ),
        (
            change(&[], &["c1", "c2", "c3"], &[]),
            "the plan would leave no cell: --remove-cell removes every cell of the map (c1,c2,c3)",
        ),
    ] {
        let f = c.unwrap().target(&map).expect_err("refused");
        assert_eq!(f.code, "INVALID_ARGUMENT");
        assert!(f.message.contains(wants), "{}", f.message);
    }
    // Adding a cell: weight 1 each unless told; the new cell's addresses go along.
    let (target, addresses) = change(&["c4=127.0.0.1:7104"], &["c1"], &["c4=2"])
        .unwrap()
        .target(&map)
        .unwrap();
    assert_eq!(
        target.into_iter().collect::<Vec<_>>(),
        [("c2".into(), 1), ("c3".into(), 1), ("c4".into(), 2)]
    );
    assert_eq!(addresses["c4"], ["127.0.0.1:7104"]);
    // A bad address is the rebalancer's error, which names the fix.
    let (target, addresses) = change(&["c4=nope"], &[], &[])
        .unwrap()
        .target(&map)
        .unwrap();
    let e = cannot_propose(rebalance(&map, &target, &addresses).unwrap_err());
    assert!(e.message.contains("\"nope\""), "{}", e.message);
}

#[test]
fn a_target_map_file_must_be_of_this_deployment_and_slot_count() {
    let dir = tempfile::tempdir().unwrap();
    let map = three();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let missing = dir.path().join("missing.json");
    let f = read_target_map(&missing, &map).expect_err("unreadable");
    assert!(
        f.message.contains("missing.json: cannot read the file"),
        "{}",
        f.message
    );
    let f = read_target_map(&write("garbage.json", "{"), &map).expect_err("garbage");
    assert!(f.message.contains("not a partition map"), "{}", f.message);
    let other = PartitionMap::even("prod", &[("c1", vec!["127.0.0.1:1"])], 64).unwrap();
    let f = read_target_map(&write("other.json", &other.to_json()), &map).expect_err("other");
    assert!(
        f.message
            .contains("deployment prod, but the meta cell serves deployment local"),
        "{}",
        f.message
    );
    let small = PartitionMap::even("local", &[("c1", vec!["127.0.0.1:1"])], 32).unwrap();
    let f = read_target_map(&write("small.json", &small.to_json()), &map).expect_err("32");
    assert!(
        f.message
            .contains("has 32 slots, but the deployment has 64"),
        "{}",
        f.message
    );

    // Everything to c1: c2's and c3's slots move; c2 and c3 leave.
    let all_c1 = PartitionMap::even("local", &[("c1", vec!["127.0.0.1:7101"])], 64).unwrap();
    let to = read_target_map(&write("c1.json", &all_c1.to_json()), &map).unwrap();
    let proposal = proposal_to(&map, to).unwrap();
    assert_eq!(proposal.moves.len(), 42);
    assert!(proposal.moves.iter().all(|m| m.to == "c1"));
    assert_eq!(proposal.removed_cells().collect::<Vec<_>>(), ["c2", "c3"]);
    let plan = Plan::from_proposal(&map, &proposal);
    plan.check_against(&map).expect("a valid plan");
}

/// The plan of adding c4 to [`three`], with fixed counts in two of its slots.
fn fixed_plan() -> (PartitionMap, Plan) {
    let map = three();
    let (target, addresses) = change(&["c4=127.0.0.1:7104"], &[], &[])
        .unwrap()
        .target(&map)
        .unwrap();
    let mut plan = Plan::from_proposal(&map, &rebalance(&map, &target, &addresses).unwrap());
    let counts = BTreeMap::from([
        (
            17,
            MoveCounts {
                directories: 3,
                nodes: 10,
                bytes: 2_000_000,
                held_locks: 2,
                ephemeral_nodes: 1,
                open_handles: 4,
                sessions: 2,
            },
        ),
        (
            60,
            MoveCounts {
                directories: 1,
                nodes: 5,
                bytes: 300_000,
                held_locks: 0,
                ephemeral_nodes: 0,
                open_handles: 1,
                sessions: 1,
            },
        ),
    ]);
    plan.set_counts(&counts);
    (map, plan)
}

#[test]
fn the_plan_in_text() {
    let (map, plan) = fixed_plan();
    let estimate = Estimate::of(&plan, None);
    let text = plan_text(&map, &plan, &estimate);
    let want = "\
deployment local, map epoch 1: 16 of 64 slots move

cell  slots now  proposed  change
c1           22        16      -6
c2           21        16      -5
c3           21        16      -5
c4            0        16     +16  added

slots  from  to  directories  nodes   bytes  held_locks  ephemeral_nodes  open_handles  sessions
16-21  c1    c4            3     10    2 MB           2                1             4         2
38-42  c2    c4            0      0     0 B           0                0             0         0
59-63  c3    c4            1      5  300 kB           0                0             1         1
total                      4     15  2.3 MB           2                1             5         3

estimated time: 0.2 s (16 slots × 12 ms + 2.3 MB at 50 MB/s)";
    assert_eq!(text, want, "\n{text}");

    // The estimate's model: slots × 12 ms + bytes / rate.
    assert_eq!(estimate.total, Duration::from_millis(192 + 46));
    let slow = Estimate::of(&plan, Some(100_000));
    assert_eq!(slow.total, Duration::from_millis(192 + 23_000));
    assert_eq!(
        slow.text(),
        "estimated time: 23.2 s (16 slots × 12 ms + 2.3 MB at 100 kB/s)"
    );

    // A cell removed is marked so; its slots go to the others.
    let map = three();
    let (target, addresses) = change(&[], &["c3"], &[]).unwrap().target(&map).unwrap();
    let plan = Plan::from_proposal(&map, &rebalance(&map, &target, &addresses).unwrap());
    let text = plan_text(&map, &plan, &Estimate::of(&plan, None));
    assert!(
        text.contains("\nc3           21         0     -21  removed\n"),
        "\n{text}"
    );
    assert!(text.contains("\n43-52  c3    c1"), "\n{text}");
    assert!(text.contains("\n53-63  c3    c2"), "\n{text}");

    // Nothing to move: said in one line.
    let plan = Plan::from_proposal(
        &map,
        &rebalance(
            &map,
            &BTreeMap::from([("c1".into(), 1), ("c2".into(), 1), ("c3".into(), 1)]),
            &BTreeMap::new(),
        )
        .unwrap(),
    );
    assert!(plan.moves.is_empty());
    assert_eq!(
        plan_text(&map, &plan, &Estimate::of(&plan, None)),
        "deployment local, map epoch 1: the plan moves nothing (every cell already has its \
         share of the 64 slots)"
    );
}

#[test]
fn the_plan_in_json_is_the_plan_file() {
    let (map, plan) = fixed_plan();
    let back = Plan::from_json(plan.to_json().as_bytes()).unwrap();
    assert_eq!(back, plan);
    let v: Value = serde_json::from_str(&plan.to_json()).unwrap();
    assert_eq!(v["from_epoch"], 1);
    assert_eq!(v["moves"].as_array().unwrap().len(), 16);
    assert_eq!(v["totals"]["bytes"], 2_300_000);
    assert_eq!(v["cells"]["c4"][0], "127.0.0.1:7104");
    back.check_against(&map).unwrap();
}

#[test]
fn units_for_people() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(999), "999 B");
    assert_eq!(human_bytes(1000), "1 kB");
    assert_eq!(human_bytes(2_345_678), "2.3 MB");
    assert_eq!(human_bytes(50_000_000), "50 MB");
    assert_eq!(human_bytes(1_250_000_000), "1.2 GB");
    assert_eq!(human_duration(Duration::from_millis(400)), "0.4 s");
    assert_eq!(human_duration(Duration::from_millis(25_600)), "25.6 s");
    assert_eq!(human_duration(Duration::from_secs(185)), "3 min 5 s");
    assert_eq!(human_duration(Duration::from_secs(7260)), "2 h 1 min");
}

#[test]
fn plan_files_garbage_and_stale_plans_get_errors_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let f = read_plan(&dir.path().join("none.json")).expect_err("missing");
    assert!(f.message.contains("cannot read the plan"), "{}", f.message);
    assert!(
        f.message.contains("reshard plan --out FILE"),
        "{}",
        f.message
    );
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not a plan").unwrap();
    let f = read_plan(&garbage).expect_err("garbage");
    assert_eq!(f.code, "INVALID_ARGUMENT");
    assert!(
        f.message
            .contains("garbage.json: the plan is not valid JSON"),
        "{}",
        f.message
    );

    let (map, plan) = fixed_plan();
    let file = dir.path().join("plan.json");
    std::fs::write(&file, plan.to_json()).unwrap();
    let (read, bytes) = read_plan(&file).unwrap();
    assert_eq!((read, bytes), (plan.clone(), plan.to_json().into_bytes()));
    let later = plan.next_map(&map, &[plan.moves[0].slot]).unwrap();
    let f = plan_misfit(&file, plan.check_against(&later).unwrap_err());
    assert_eq!(f.code, "GENERATION_MISMATCH");
    assert!(
        f.message.contains("stale") && f.message.contains("warren ctl reshard plan"),
        "{}",
        f.message
    );
}

#[test]
fn job_json_is_read_loosely() {
    assert_eq!(job_json(b"").unwrap(), None);
    let f = job_json(b"<html>").expect_err("not JSON");
    assert_eq!(f.code, "INTERNAL");
    let job = job_json(br#"{"id":"j1","state":"running","slots":{"17":"copying"}}"#)
        .unwrap()
        .unwrap();
    assert!(job_active(&job));
    assert!(render_status(&job).contains("\"state\": \"running\""));
    assert_eq!(abort_text(&job), "job: j1\nstate: running");
    let done: Value =
        serde_json::json!({"id": "j1", "state": "aborted", "message": "slots 16-21 moved"});
    assert!(!job_active(&done));
    assert!(job_active(&serde_json::json!({"state": "aborting"})));
    assert_eq!(
        abort_text(&done),
        "job: j1\nstate: aborted\nmessage: slots 16-21 moved"
    );
}

/// A fake cell serving only what ctl calls of the Reshard service.
#[derive(Clone, Default)]
struct Fake {
    /// Answer NOT_MASTER naming this address (a standby).
    standby_of: Option<String>,
    map_epoch: u64,
    counts: Vec<pb::SlotCounts>,
    job: Vec<u8>,
    /// What the calls asked: the slots of SlotStats, the plans of ApplyPlan.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn check(&self) -> Result<(), Status> {
        match &self.standby_of {
            Some(m) => Err(WarrenError::not_master(m.clone()).into()),
            None => Ok(()),
        }
    }

    fn record(&self, what: String) {
        self.seen.lock().unwrap().push(what);
    }

    async fn serve(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ReshardServer::new(self))
                .serve_with_incoming(incoming),
        );
        addr
    }
}

fn unused(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not part of the fake"))
}

#[tonic::async_trait]
impl Reshard for Fake {
    async fn slot_stats(
        &self,
        r: Request<pb::SlotStatsRequest>,
    ) -> Result<Response<pb::SlotStatsResponse>, Status> {
        self.check()?;
        let asked = r.into_inner().slots;
        self.record(format!("stats {asked:?}"));
        Ok(Response::new(pb::SlotStatsResponse {
            map_epoch: self.map_epoch,
            slots: self
                .counts
                .iter()
                .filter(|c| asked.contains(&c.slot))
                .cloned()
                .collect(),
        }))
    }
    async fn export_slots(
        &self,
        _: Request<pb::ExportSlotsRequest>,
    ) -> Result<Response<pb::ExportSlotsResponse>, Status> {
        Err(unused("ExportSlots"))
    }
    async fn import_slots(
        &self,
        _: Request<pb::ImportSlotsRequest>,
    ) -> Result<Response<pb::ImportSlotsResponse>, Status> {
        Err(unused("ImportSlots"))
    }
    async fn freeze_slots(
        &self,
        _: Request<pb::FreezeSlotsRequest>,
    ) -> Result<Response<pb::FreezeSlotsResponse>, Status> {
        Err(unused("FreezeSlots"))
    }
    async fn hand_off_slots(
        &self,
        _: Request<pb::HandOffSlotsRequest>,
    ) -> Result<Response<pb::HandOffSlotsResponse>, Status> {
        Err(unused("HandOffSlots"))
    }
    async fn release_slots(
        &self,
        _: Request<pb::ReleaseSlotsRequest>,
    ) -> Result<Response<pb::ReleaseSlotsResponse>, Status> {
        Err(unused("ReleaseSlots"))
    }
    async fn drop_slots(
        &self,
        _: Request<pb::DropSlotsRequest>,
    ) -> Result<Response<pb::DropSlotsResponse>, Status> {
        Err(unused("DropSlots"))
    }
    async fn session_table(
        &self,
        _: Request<pb::SessionTableRequest>,
    ) -> Result<Response<pb::SessionTableResponse>, Status> {
        Err(unused("SessionTable"))
    }
    async fn apply_plan(
        &self,
        r: Request<pb::ApplyPlanRequest>,
    ) -> Result<Response<pb::ApplyPlanResponse>, Status> {
        self.check()?;
        let r = r.into_inner();
        let plan = Plan::from_json(&r.plan)
            .map_err(|e| Status::from(WarrenError::invalid_argument(e.to_string())))?;
        self.record(format!(
            "apply {} moves, {} B/s, batch {}, freeze {} ms",
            plan.moves.len(),
            r.max_bytes_per_sec,
            r.slots_per_batch,
            r.freeze_timeout_ms
        ));
        Ok(Response::new(pb::ApplyPlanResponse { job: "j7".into() }))
    }
    async fn job_status(
        &self,
        _: Request<pb::JobStatusRequest>,
    ) -> Result<Response<pb::JobStatusResponse>, Status> {
        self.check()?;
        Ok(Response::new(pb::JobStatusResponse {
            job: self.job.clone(),
        }))
    }
    async fn abort_job(
        &self,
        _: Request<pb::AbortJobRequest>,
    ) -> Result<Response<pb::AbortJobResponse>, Status> {
        self.check()?;
        Err(WarrenError::new(
            ErrorCode::NotFound,
            "no reshard job is running; nothing to abort",
        )
        .into())
    }
}

fn counts(slot: u32, bytes: u64) -> pb::SlotCounts {
    pb::SlotCounts {
        slot,
        directories: 1,
        nodes: 2,
        bytes,
        held_locks: 1,
        ephemeral_nodes: 0,
        open_handles: 3,
        sessions: 1,
    }
}

/// An address nothing listens on (bound a moment ago, then closed).
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn calls_follow_a_standby_to_its_master_and_name_unreachable_cells() {
    let master = Fake {
        job: br#"{"id":"j7","state":"running"}"#.to_vec(),
        ..Fake::default()
    };
    let seen = master.seen.clone();
    let master = master.serve().await;
    let standby = Fake {
        standby_of: Some(master.clone()),
        ..Fake::default()
    }
    .serve()
    .await;
    // A dead replica first, then the standby: both are passed by.
    let replicas = vec![dead_addr(), standby];
    let reply = at_master(&replicas, |mut c| async move {
        c.job_status(pb::JobStatusRequest {}).await
    })
    .await
    .expect("answered by the master");
    assert_eq!(reply.job, br#"{"id":"j7","state":"running"}"#);
    let (job, _) = job_status(&replicas).await.unwrap().expect("a job");
    assert_eq!(job["state"], "running");

    // Warren errors are the answer, with their code.
    let e = at_master(&replicas, |mut c| async move {
        c.abort_job(pb::AbortJobRequest {}).await
    })
    .await
    .expect_err("no job");
    let f = call_failure(e, "the meta cell", &replicas, "abort");
    assert_eq!(f.code, "NOT_FOUND");
    assert!(f.message.contains("nothing to abort"), "{}", f.message);

    // Nobody there: UNREACHABLE (nothing sent) naming who, where, and what for.
    let dead = vec![dead_addr(), dead_addr()];
    let f = warren_client::reshard::cell_counts("c2", &dead, vec![1, 2], 1)
        .await
        .map_err(counts_failure)
        .expect_err("unreachable");
    assert_eq!(f.code, "UNREACHABLE");
    assert!(
        f.message.starts_with(&format!(
            "cannot reach cell c2 at {} to count its moving slots: {}",
            dead.join(","),
            dead[0]
        )),
        "{}",
        f.message
    );
    assert!(f.message.contains(&dead[1]), "{}", f.message);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn plan_and_apply_against_a_meta_cell_and_fake_data_cells() {
    let meta = Cell::builder().name("meta").run().await;
    // c1 and c2 are fake cells (each its master), c3 a standby pointing at a fake master.
    let c1 = Fake {
        map_epoch: 1,
        counts: vec![counts(21, 1_000), counts(3, 99)],
        ..Fake::default()
    };
    let c1_seen = c1.seen.clone();
    let c1 = c1.serve().await;
    let c2 = Fake {
        map_epoch: 1,
        ..Fake::default()
    }
    .serve()
    .await;
    let c3_master = Fake {
        map_epoch: 1,
        counts: vec![counts(63, 500)],
        ..Fake::default()
    }
    .serve()
    .await;
    let c3 = Fake {
        standby_of: Some(c3_master),
        ..Fake::default()
    }
    .serve()
    .await;
    let session = Session::connect_with(admin::operator_options(meta.endpoints()))
        .await
        .unwrap();
    let spec = vec![
        ("c1".to_string(), vec![c1.clone()]),
        ("c2".to_string(), vec![c2]),
        ("c3".to_string(), vec![c3]),
    ];
    admin::write_initial_map(&session, &spec, 64).await.unwrap();
    let _ = session.close().await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.json");
    let meta_flag = meta.addr();
    let out_s = out.to_str().unwrap();
    let ReshardCommand::Plan(args) = reshard(&[
        "plan",
        "--meta",
        &meta_flag,
        "--add-cell",
        "c4=127.0.0.1:7104",
        "--out",
        out_s,
    ])
    .unwrap() else {
        panic!()
    };
    let (map, plan) = make_plan(&args, ClientOptions::new(meta.endpoints()))
        .await
        .expect("a plan");
    assert_eq!(map.map_epoch(), 1);
    assert_eq!(plan.moves.len(), 16);
    assert!(plan.moves.iter().all(|m| m.to == "c4"));
    // c1 was asked for exactly its moving slots, 16-21; it reported slot 21 (and 3, which
    // does not move and is not counted).
    assert_eq!(
        c1_seen.lock().unwrap().as_slice(),
        ["stats [16, 17, 18, 19, 20, 21]"]
    );
    let by_slot: BTreeMap<u32, u64> = plan
        .moves
        .iter()
        .map(|m| (m.slot, m.counts.bytes))
        .collect();
    assert_eq!((by_slot[&21], by_slot[&63], by_slot[&16]), (1_000, 500, 0));
    assert_eq!(plan.totals.bytes, 1_500);
    assert_eq!(plan.totals.open_handles, 6);

    // `plan` itself, in text, writes the file.
    let ReshardCommand::Plan(args) = reshard(&[
        "plan",
        "--meta",
        &meta_flag,
        "--add-cell",
        "c4=127.0.0.1:7104",
        "--out",
        out_s,
    ])
    .unwrap() else {
        panic!()
    };
    let code = super::plan(args, Output::default(), ClientOptions::new)
        .await
        .expect("plan");
    assert_eq!(code, ExitCode::SUCCESS);
    let saved = std::fs::read_to_string(&out).unwrap();
    assert_eq!(Plan::from_json(saved.as_bytes()).unwrap(), plan);

    // A source cell that has seen a newer map: the plan is already stale.
    let ahead = Fake {
        map_epoch: 2,
        ..Fake::default()
    }
    .serve()
    .await;
    let f = warren_client::reshard::cell_counts("c1", &[ahead], vec![16], 1)
        .await
        .map_err(counts_failure)
        .expect_err("ahead");
    assert_eq!(f.code, "GENERATION_MISMATCH");
    assert!(
        f.message.contains("run `warren ctl reshard plan` again"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn apply_sends_the_plan_and_the_knobs_to_the_meta_master() {
    let (map, plan) = fixed_plan();
    let meta_cell = Cell::builder().name("meta").run().await;
    let session = Session::connect_with(admin::operator_options(meta_cell.endpoints()))
        .await
        .unwrap();
    let spec: Vec<(String, Vec<String>)> = map
        .cells()
        .iter()
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect();
    admin::write_initial_map(&session, &spec, 64).await.unwrap();
    let _ = session.close().await;
    let fake = Fake::default();
    let seen = fake.seen.clone();
    let job_master = fake.serve().await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.json");
    std::fs::write(&file, plan.to_json()).unwrap();
    let a = ApplyArgs {
        meta: MetaArg {
            meta: vec![job_master.clone()],
        },
        plan: file.clone(),
        max_bytes_per_sec: Some(1_000_000),
        slots_per_batch: Some(4),
        freeze_timeout: Some(Duration::from_millis(1500)),
    };
    // The map is read at the real meta cell; the job calls go to the fake.
    let meta_endpoints = meta_cell.endpoints();
    let code = apply(a, Output::default(), move |_| {
        ClientOptions::new(meta_endpoints.clone())
    })
    .await
    .expect("applied");
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["apply 16 moves, 1000000 B/s, batch 4, freeze 1500 ms"]
    );
}

#[test]
fn clap_help_states_the_estimate_model() {
    use clap::CommandFactory;
    #[derive(Debug, clap::Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: ReshardCommand,
    }
    let mut cmd = Top::command();
    let plan = cmd.find_subcommand_mut("plan").expect("plan");
    let help = plan.render_long_help().to_string();
    assert!(help.contains("12 ms per moving slot"), "{help}");
    assert!(help.contains("50 MB/s"), "{help}");
}

#[test]
fn status_text_shows_progress_pauses_and_the_slots_in_flight() {
    use warren_reshard::job::{JobState, JobStatus, SlotState, SlotStatus};
    let slot = |slot, state, pause| SlotStatus {
        slot,
        from: "c1".into(),
        to: "c4".into(),
        state,
        bytes: 2048,
        nodes: 3,
        lag_nodes: Some(1),
        write_pause_ms: pause,
        attempts: 1,
        error: None,
    };
    let s = JobStatus {
        id: "reshard-1".into(),
        state: JobState::Running,
        started_ms: 0,
        updated_ms: 0,
        finished_ms: None,
        message: String::new(),
        map_epoch: 3,
        slots_total: 4,
        slots_moved: 2,
        slots_pending: 1,
        slots_aborted: 1,
        bytes_copied: 4096,
        bytes_per_sec: 1024,
        eta_ms: Some(1500),
        write_pause_max_ms: Some(90),
        last_error: None,
        slots: vec![
            slot(1, SlotState::Done, Some(30)),
            slot(2, SlotState::Done, Some(90)),
            slot(3, SlotState::Frozen, Some(12)),
            slot(
                4,
                SlotState::Aborted {
                    reason: "freeze exceeded".into(),
                },
                None,
            ),
        ],
    };
    let text = reshard_output::status_text(&s);
    assert!(text.contains("job: reshard-1 (running)"), "{text}");
    assert!(
        text.contains("2 moved, 1 pending, 1 given up, of 4 (75% done)"),
        "{text}"
    );
    assert!(text.contains("p50 30 ms, p99 90 ms, max 90 ms"), "{text}");
    assert!(text.contains("frozen"), "{text}");
    assert!(
        text.contains("given up") && text.contains("freeze exceeded"),
        "{text}"
    );
    assert!(
        !text.contains("\n     1  "),
        "moved slots are not listed: {text}"
    );
    let line = reshard_output::status_line(&s);
    assert_eq!(
        line,
        "running, copied 4.1 kB, write pause max 90 ms, ETA 1.5 s"
    );
    // What the meta cell returns renders the same way.
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(reshard_output::render_status(&v), text);
}
