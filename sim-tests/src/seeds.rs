//! Which seeds a test runs: the fixed CI set, or the one seed `SIM_SEED` names.

/// The environment variable that replays one seed.
pub const SEED_VAR: &str = "SIM_SEED";

/// The seeds to run: `SIM_SEED` alone when set (a decimal `u64`), else `ci`.
pub fn seeds(ci: &[u64]) -> Vec<u64> {
    match std::env::var(SEED_VAR) {
        Ok(value) => match value.trim().parse() {
            Ok(seed) => vec![seed],
            Err(_) => panic!("{SEED_VAR}={value:?} is not a decimal u64 seed"),
        },
        Err(_) => ci.to_vec(),
    }
}

/// The environment variable that switches a deliberate bug on in the suites.
pub const FAULT_VAR: &str = "SIM_FAULT";

/// The line that tells how to replay `seed` of test `test` in target `target` (with the
/// `SIM_FAULT` of this run, if any).
pub fn reproduce_line(target: &str, test: &str, seed: u64) -> String {
    let fault = std::env::var(FAULT_VAR).ok();
    reproduce_line_with_fault(target, test, seed, fault.as_deref())
}

/// [`reproduce_line`] with deliberate bug `fault` switched on.
pub fn reproduce_line_with_fault(
    target: &str,
    test: &str,
    seed: u64,
    fault: Option<&str>,
) -> String {
    let fault = fault.map_or(String::new(), |fault| format!("{FAULT_VAR}={fault} "));
    format!(
        "reproduce with: {fault}{SEED_VAR}={seed} cargo test -p sim-tests --test {target} {test} -- --nocapture"
    )
}
