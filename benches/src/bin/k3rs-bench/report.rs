//! One test's figures: ops/s, mean, p50, p90, p99, max and errors, as a table row and as a
//! `JSON {...}` line for scripts.

use std::time::Duration;

/// Latencies of one test, and its errors.
#[derive(Default)]
pub struct Results {
    pub latencies: Vec<Duration>,
    pub errors: usize,
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[rank]
}

pub fn report(label: &str, test: &str, mut results: Results, elapsed: Duration) {
    results.latencies.sort_unstable();
    let done = results.latencies.len();
    let ops_per_second = done as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    let mean = if done == 0 {
        Duration::ZERO
    } else {
        results.latencies.iter().sum::<Duration>() / done as u32
    };
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let p50 = percentile(&results.latencies, 0.50);
    let p90 = percentile(&results.latencies, 0.90);
    let p99 = percentile(&results.latencies, 0.99);
    let max = results.latencies.last().copied().unwrap_or_default();
    println!(
        "{label:<10} {test:<14} {ops_per_second:>10.0} ops/s  mean {:>8.0}µs  p50 {:>8.0}µs  p90 {:>8.0}µs  p99 {:>8.0}µs  max {:>9.0}µs  errors {}",
        micros(mean),
        micros(p50),
        micros(p90),
        micros(p99),
        micros(max),
        results.errors
    );
    println!(
        "JSON {{\"label\":\"{label}\",\"test\":\"{test}\",\"ops\":{done},\"ops_per_second\":{ops_per_second:.1},\"mean_us\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1},\"errors\":{}}}",
        micros(mean),
        micros(p50),
        micros(p90),
        micros(p99),
        micros(max),
        results.errors
    );
}
