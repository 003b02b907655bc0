//! sim-tests: deterministic simulation of whole k3rs clusters.
//!
//! Real members — raftstore's raft node and etcd-api's gRPC servers, peer transport included —
//! run as turmoil hosts over [`net::TurmoilNet`] (etcd-api's `Net` seam) on turmoil's simulated
//! network and clock, with the in-memory engine held outside each host so a crash loses
//! exactly the unsynced writes ([`cluster`]). Clients ([`workload`]) send etcd and
//! kube-apiserver traffic through the generated tonic clients and record a [`history`];
//! [`watcher`]s keep watches open and record every response ([`watch_log`]), [`leases`]
//! clients grant, keep alive, revoke and let expire leases with keys attached; a [`nemesis`]
//! applies faults chosen from the seed, the [`operator`] the administrative ones; between
//! steps a [`raft_observer`] checks raft safety and an [`archive`] collects every committed
//! change; [`check`] judges the history (linearizability per key, one global revision order,
//! no acknowledged write lost, watch guarantees) and [`audit`] the final state; [`verdict`]
//! gathers every finding into the seed's [`report`].
//! [`run::run`] does all of it for one seed; the same seed always gives the same trace.
//! Named scenarios (known etcd bugs, `tests/etcd_bugs.rs`) script one client instead, which
//! asks a [`script::Director`] for faults at exact points.

pub mod archive;
pub mod audit;
pub mod check;
pub mod client;
pub mod cluster;
pub mod history;
pub mod leases;
pub mod member;
pub mod nemesis;
pub mod net;
pub mod operator;
pub mod raft_observer;
pub mod report;
pub mod run;
pub mod script;
pub mod seeds;
pub mod verdict;
pub mod watch_log;
pub mod watcher;
pub mod workload;

/// Sends the simulation's logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
