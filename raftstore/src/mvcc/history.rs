//! Reading the store's history as watch events, for watchers that start in the past or fell
//! behind.
//!
//! Guarantees: [`MvccStore::history`] returns every change with a main revision in
//! `[from, through]`, in revision order, as the events live watchers got for them (DELETEs carry
//! only `key` and `mod_revision`); `through` is never inside a revision, so a revision's events
//! are never split between two reads. With `with_prev_kv`, an update or delete carries the
//! key-value just before it when that is still stored (not compacted away).

use prost::Message as _;

use super::read::Reader;
use super::revision::{decode_row_key, hex, Revision};
use super::store::MvccStore;
use crate::engine::Table;
use crate::error::StorageError;
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};

/// Events read from the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub events: Vec<Event>,
    /// Every change up to and including this revision was read.
    pub through: i64,
}

impl MvccStore {
    /// The changes with main revision in `[from, to]`, stopping early — at the end of a
    /// revision — once `max_events` are read. Rows above `to` (applied, but not yet published to
    /// watchers) are never read.
    pub fn history(
        &self,
        from: i64,
        to: i64,
        max_events: usize,
        with_prev_kv: bool,
    ) -> Result<History, StorageError> {
        let from = from.max(1);
        if to < from {
            return Ok(History {
                events: Vec::new(),
                through: to,
            });
        }
        let start = Revision::main_prefix(from);
        let end = to.checked_add(1).map(Revision::main_prefix);
        let mut events = Vec::new();
        let mut through = to;
        self.engine().try_scan(
            Table::Kv,
            &start,
            end.as_ref().map(|end| end.as_slice()),
            &mut |key, value| {
                let row = decode_row_key(key)?;
                let last_main = events
                    .last()
                    .and_then(|event: &Event| event.kv.as_ref())
                    .map(|kv| kv.mod_revision);
                if events.len() >= max_events && last_main != Some(row.revision.main) {
                    through = row.revision.main - 1;
                    return Ok(false);
                }
                let kv = KeyValue::decode(value).map_err(|err| {
                    StorageError::io(format!("decoding kv row {}", hex(key)), err)
                })?;
                let kind = if row.tombstone {
                    EventType::Delete
                } else {
                    EventType::Put
                };
                events.push(Event {
                    r#type: kind as i32,
                    kv: Some(kv),
                    prev_kv: None,
                });
                Ok(true)
            },
        )?;
        if with_prev_kv {
            self.attach_prev_kvs(&mut events)?;
        }
        Ok(History { events, through })
    }

    /// Sets each update's and delete's `prev_kv` to the key's value one revision earlier.
    fn attach_prev_kvs(&self, events: &mut [Event]) -> Result<(), StorageError> {
        let reader = Reader::committed(
            self.tree_index(),
            self.engine().as_ref(),
            self.current_revision(),
        );
        for event in events {
            let Some(kv) = &event.kv else { continue };
            let is_create = event.r#type == EventType::Put as i32 && kv.version == 1;
            // Below the compacted revision the previous value may be gone.
            if is_create || kv.mod_revision - 1 < self.compact_revision() {
                continue;
            }
            if let Some(seen) = self.tree_index().get(&kv.key, kv.mod_revision - 1) {
                event.prev_kv = Some(reader.fetch(seen.modified)?);
            }
        }
        Ok(())
    }
}
