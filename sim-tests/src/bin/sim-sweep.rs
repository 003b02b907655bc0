//! `sim-sweep`: runs simulation seeds one after another until a count or a time budget runs
//! out, and stops at the first failing seed with the line that replays it.
//!
//! Usage: `sim-sweep [--seeds N] [--minutes M] [--start-seed S] [--five-every K]
//! [--keep-going]` (defaults: 1000 seeds, no time limit, from seed 1000, every 4th seed on 5
//! members, stop at the first failure; `--keep-going` runs on and lists every failure). A seed
//! runs exactly as the CI suites run it (`SimSpec::new`), so the printed
//! `reproduce with: SIM_SEED=...` line replays it in `cargo test -p sim-tests`. Exits 0 when
//! every seed passed, 1 on a failure, 2 on bad arguments.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sim_tests::run::{run_judged, SimSpec};
use sim_tests::seeds::reproduce_line;

/// What to sweep.
struct Sweep {
    seeds: u64,
    budget: Option<Duration>,
    start_seed: u64,
    five_every: u64,
    keep_going: bool,
}

fn parse(args: &[String]) -> Result<Sweep> {
    let mut sweep = Sweep {
        seeds: 1000,
        budget: None,
        start_seed: 1000,
        five_every: 4,
        keep_going: false,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "--keep-going" {
            sweep.keep_going = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || -> Result<u64> {
            value
                .parse()
                .with_context(|| format!("{flag} {value:?} is not a whole number"))
        };
        match flag.as_str() {
            "--seeds" => sweep.seeds = number()?,
            "--minutes" => sweep.budget = Some(Duration::from_secs(number()? * 60)),
            "--start-seed" => sweep.start_seed = number()?,
            "--five-every" => sweep.five_every = number()?,
            other => bail!("unknown flag {other:?}"),
        }
    }
    Ok(sweep)
}

/// How many members `seed` runs with, and the CI test that runs that shape.
fn shape(sweep: &Sweep, seed: u64) -> (usize, &'static str) {
    if sweep.five_every > 0 && seed.is_multiple_of(sweep.five_every) {
        (5, "five_member_clusters")
    } else {
        (3, "three_member_clusters")
    }
}

fn main() -> ExitCode {
    sim_tests::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sweep = match parse(&args) {
        Ok(sweep) => sweep,
        Err(err) => {
            eprintln!("sim-sweep: {err:#}");
            eprintln!(
                "usage: sim-sweep [--seeds N] [--minutes M] [--start-seed S] [--five-every K] \
                 [--keep-going]"
            );
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut passed = 0u64;
    let mut failed = Vec::new();
    for seed in sweep.start_seed..sweep.start_seed.saturating_add(sweep.seeds) {
        if sweep
            .budget
            .is_some_and(|budget| started.elapsed() >= budget)
        {
            println!("time budget spent");
            break;
        }
        let (members, test) = shape(&sweep, seed);
        let seed_started = Instant::now();
        let report = run_judged(&SimSpec::new(seed, members));
        let first_violation = report.violations.first().cloned().unwrap_or_default();
        let failure = if report.passed() {
            let compacted = report
                .watch_lines
                .iter()
                .filter(|line| line.contains("compacted"))
                .count();
            println!(
                "{} ({members} members, {compacted} watches compacted) in {:.1?}",
                report.summary(),
                seed_started.elapsed()
            );
            None
        } else {
            Some(format!(
                "{}\nfaults: {:?}\nviolations:\n  {}",
                report.summary(),
                report.faults,
                report.violations.join("\n  ")
            ))
        };
        match failure {
            Some(failure) => {
                let reproduce = reproduce_line("simulation", test, seed);
                println!("FAILED ({members} members): {failure}");
                println!("{reproduce}");
                if !sweep.keep_going {
                    println!("{passed} seeds passed before it");
                    return ExitCode::from(1);
                }
                failed.push(format!("{reproduce}\n    {first_violation}"));
            }
            None => passed += 1,
        }
    }
    println!("{passed} seeds passed in {:.1?}", started.elapsed());
    if !failed.is_empty() {
        println!("{} seeds failed:\n{}", failed.len(), failed.join("\n"));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
