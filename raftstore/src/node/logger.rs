//! Bridges raft-rs's slog records into `tracing`, tagged with the member id.

use std::fmt::Write as _;

use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};

/// A slog logger whose records become `tracing` events under target `raft_rs` (not `raft`, which would also select `raftstore` in log filters).
pub fn raft_logger(member_id: u64) -> slog::Logger {
    slog::Logger::root(
        TracingDrain.fuse(),
        slog::o!("member" => format!("{member_id:x}")),
    )
}

struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = FieldText(String::new());
        // Writing into a String cannot fail; a failed serialization only loses fields.
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let message = record.msg();
        let fields = fields.0;
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft_rs", "{message}{fields}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft_rs", "{message}{fields}"),
            slog::Level::Info => tracing::info!(target: "raft_rs", "{message}{fields}"),
            slog::Level::Debug => tracing::debug!(target: "raft_rs", "{message}{fields}"),
            slog::Level::Trace => tracing::trace!(target: "raft_rs", "{message}{fields}"),
        }
        Ok(())
    }
}

struct FieldText(String);

impl Serializer for FieldText {
    fn emit_arguments(&mut self, key: Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}
