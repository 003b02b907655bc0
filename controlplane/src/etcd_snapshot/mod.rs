//! Snapshots as `k3s etcd-snapshot` and k3s's server take them: the CLI (`cli`), the server
//! side shared by the CLI and the schedule (`service`), the wire format between them (`api`),
//! files on disk (`local`, `names`, `compress`), copies in S3 (`s3`, `s3_config`, `s3_http`),
//! records in the store (`records`) and the schedule (`schedule`, `cron`).

pub mod api;
pub mod cli;
pub mod compress;
pub mod cron;
pub mod local;
pub mod names;
pub mod records;
pub mod s3;
pub mod s3_config;
pub mod s3_http;
pub mod schedule;
pub mod service;
