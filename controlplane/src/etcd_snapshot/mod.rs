//! Snapshots as `k3s etcd-snapshot` and k3s's server take them: the CLI (`cli`), the server
//! side shared by the CLI and the schedule (`service`), the wire format between them (`api`),
//! files on disk (`local`, `names`), records in the store (`records`) and the schedule
//! (`schedule`, `cron`).

pub mod api;
pub mod cli;
pub mod cron;
pub mod local;
pub mod names;
pub mod records;
pub mod schedule;
pub mod service;
