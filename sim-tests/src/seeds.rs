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

/// The line that tells how to replay `seed` of test `test` in target `target`.
pub fn reproduce_line(target: &str, test: &str, seed: u64) -> String {
    format!(
        "reproduce with: {SEED_VAR}={seed} cargo test -p sim-tests --test {target} {test} -- --nocapture"
    )
}
