//! k3rs benchmarks. The criterion micro benchmarks live in `benches/`; run them with
//! `cargo bench -p benches` (a few minutes on a 2-core machine).
