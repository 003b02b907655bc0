//! Whole k3rs clusters under seeded faults; every history checked.
//!
//! `SIM_SEED=N cargo test --workspace --test simulation` replays seed N in every test of this
//! file (except the fault-switch proof, whose seeds are fixed); `SIM_FAULT=stale-reads` turns
//! on the deliberate stale-read bug in the suite, which must then fail and print the seed.

use std::time::Instant;

use raftstore::node::config::InjectedFaults;
use sim_tests::run::{run, SimReport, SimSpec};
use sim_tests::seeds::{reproduce_line, seeds};

const TARGET: &str = "simulation";

/// The CI seeds of the 3-member suite.
const CI_SEEDS_3: &[u64] = &[1, 2, 3, 4];
/// The CI seeds of the 5-member suite.
const CI_SEEDS_5: &[u64] = &[101, 102];

fn faults_from_env() -> InjectedFaults {
    match std::env::var("SIM_FAULT").as_deref() {
        Ok("stale-reads") => InjectedFaults {
            stale_linearizable_reads: true,
        },
        Ok(other) => panic!("SIM_FAULT={other:?}: the only fault is \"stale-reads\""),
        Err(_) => InjectedFaults::default(),
    }
}

fn run_seed(spec: &SimSpec) -> SimReport {
    let started = Instant::now();
    let report = match run(spec) {
        Ok(report) => report,
        Err(err) => panic!(
            "seed {}: {err:#}\n{}",
            spec.seed,
            reproduce_line(TARGET, "", spec.seed)
        ),
    };
    eprintln!("{} in {:.1?}", report.summary(), started.elapsed());
    if std::env::var_os("SIM_VERBOSE").is_some() {
        eprintln!("faults:\n  {}", report.faults.join("\n  "));
        eprintln!("leaders:\n  {}", report.leaders.join("\n  "));
    }
    report
}

/// Runs every seed of the suite; fails naming each failing seed and how to replay it.
fn suite(test: &str, members: usize, ci: &[u64]) {
    sim_tests::init_logging();
    let mut failures = Vec::new();
    for seed in seeds(ci) {
        let mut spec = SimSpec::new(seed, members);
        spec.faults = faults_from_env();
        let report = run_seed(&spec);
        if !report.passed() {
            failures.push(format!(
                "{}\nfaults: {:?}\nviolations:\n  {}\n{}",
                report.summary(),
                report.faults,
                report.violations.join("\n  "),
                reproduce_line(TARGET, test, seed)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn three_member_clusters_stay_linearizable_under_faults() {
    suite("three_member_clusters", 3, CI_SEEDS_3);
}

#[test]
fn five_member_clusters_stay_linearizable_under_faults() {
    suite("five_member_clusters", 5, CI_SEEDS_5);
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    sim_tests::init_logging();
    let seed = seeds(&[42])[0];
    let mut spec = SimSpec::new(seed, 3);
    spec.safety = std::time::Duration::from_secs(8);
    spec.liveness = std::time::Duration::from_secs(8);
    let first = run_seed(&spec);
    let second = run_seed(&spec);
    assert!(first.operations > 0, "seed {seed} ran no operation");
    if let Some((a, b)) = first
        .history
        .iter()
        .zip(&second.history)
        .find(|(a, b)| a != b)
    {
        eprintln!("first divergence:\n  {a:?}\n  {b:?}");
    }
    assert_eq!(
        (
            first.trace_hash,
            first.operations,
            &first.faults,
            &first.leaders
        ),
        (
            second.trace_hash,
            second.operations,
            &second.faults,
            &second.leaders
        ),
        "seed {seed} did not replay identically\n{}",
        reproduce_line(TARGET, "the_same_seed", seed)
    );
}

#[test]
fn the_checkers_catch_linearizable_reads_served_from_local_state() {
    sim_tests::init_logging();
    let mut caught = Vec::new();
    for &seed in CI_SEEDS_3 {
        let mut spec = SimSpec::new(seed, 3);
        spec.faults = InjectedFaults {
            stale_linearizable_reads: true,
        };
        let report = run_seed(&spec);
        if !report.passed() {
            eprintln!(
                "stale reads caught: {}\n  {}",
                report.summary(),
                report.violations.first().map_or("", String::as_str)
            );
            caught.push(seed);
        }
    }
    assert!(
        !caught.is_empty(),
        "no CI seed caught linearizable reads served from local state"
    );
}
