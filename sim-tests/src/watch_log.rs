//! What watchers saw: every response of every watch stream, in arrival order, plus the
//! events and key-values in a form the checkers can compare and hash.
//!
//! Guarantees: a [`WatchRecord`] is one logical watch as a client sees it — a first stream
//! and the streams that resumed it after a break, each a [`Segment`] with the start revision
//! it asked for and every [`Reply`] it got, in order. Keys and values are kept as (lossy)
//! UTF-8 text; a DELETE event keeps only its key and mod revision, as etcd sends it.

use std::sync::Arc;

use etcd_api::pb::mvccpb;
use parking_lot::Mutex;

/// A key-value as etcd reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl Kv {
    pub fn from_pb(kv: &mvccpb::KeyValue) -> Self {
        Self {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }

    /// What a DELETE event carries of a key-value: its key and mod revision.
    fn tombstone(&self) -> Self {
        Self {
            key: self.key.clone(),
            mod_revision: self.mod_revision,
            ..Self::default()
        }
    }
}

/// PUT or DELETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    pub kind: EventKind,
    pub kv: Kv,
    pub prev_kv: Option<Kv>,
}

impl Event {
    /// A test event on the first version of `key`, created and modified at `revision`.
    #[cfg(test)]
    pub(crate) fn first_version(kind: EventKind, key: &str, value: &str, revision: i64) -> Self {
        Self {
            kind,
            kv: Kv {
                key: key.into(),
                value: value.into(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                lease: 0,
            },
            prev_kv: None,
        }
    }

    pub fn from_pb(event: &mvccpb::Event) -> Self {
        let kind = if event.r#type == mvccpb::event::EventType::Delete as i32 {
            EventKind::Delete
        } else {
            EventKind::Put
        };
        let kv = event.kv.as_ref().map(Kv::from_pb).unwrap_or_default();
        Self {
            kind,
            kv: match kind {
                EventKind::Put => kv,
                EventKind::Delete => kv.tombstone(),
            },
            prev_kv: event.prev_kv.as_ref().map(Kv::from_pb),
        }
    }

    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// Which keys a watch covers, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchTarget {
    pub key: String,
    /// Empty: the one key; `"\0"`: every key from `key` on; else `[key, range_end)`.
    pub range_end: String,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

impl WatchTarget {
    /// Whether `key` is in the watched range.
    pub fn covers(&self, key: &str) -> bool {
        if self.range_end.is_empty() {
            key == self.key
        } else if self.range_end == "\0" {
            key >= self.key.as_str()
        } else {
            key >= self.key.as_str() && key < self.range_end.as_str()
        }
    }

    /// Whether the filters let an event of `kind` through.
    pub fn passes(&self, kind: EventKind) -> bool {
        match kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        }
    }
}

/// One response of a watch stream; `revision` is the response header's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reply {
    Created {
        revision: i64,
    },
    Events {
        revision: i64,
        events: Vec<Event>,
    },
    /// A progress notification (no events, not created, not canceled).
    Progress {
        revision: i64,
    },
    /// Canceled because the revision the watch needs was compacted.
    Compacted {
        revision: i64,
        compact_revision: i64,
    },
    /// Canceled for another reason.
    Canceled {
        revision: i64,
        reason: String,
    },
}

/// One stream of a logical watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    /// Index of the member the stream went to.
    pub member: usize,
    /// The start revision asked for; 0 means "from now".
    pub start_revision: i64,
    pub replies: Vec<Reply>,
    /// Why the stream ended; `None` if it was still open when the run ended.
    pub ended: Option<String>,
}

/// One logical watch: its first stream and every stream that resumed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchRecord {
    /// Which watcher (client) made it.
    pub watcher: usize,
    pub target: WatchTarget,
    pub segments: Vec<Segment>,
}

/// The records of every watcher of a simulation, shared between the watchers.
#[derive(Clone, Default)]
pub struct WatchLogs {
    records: Arc<Mutex<Vec<WatchRecord>>>,
}

impl WatchLogs {
    /// Starts a record; returns its index.
    pub fn start(&self, watcher: usize, target: WatchTarget) -> usize {
        let mut records = self.records.lock();
        records.push(WatchRecord {
            watcher,
            target,
            segments: Vec::new(),
        });
        records.len() - 1
    }

    /// Starts a new stream of record `record`.
    pub fn open_segment(&self, record: usize, member: usize, start_revision: i64) {
        if let Some(record) = self.records.lock().get_mut(record) {
            record.segments.push(Segment {
                member,
                start_revision,
                replies: Vec::new(),
                ended: None,
            });
        }
    }

    /// Appends `reply` to the current stream of record `record`.
    pub fn reply(&self, record: usize, reply: Reply) {
        if let Some(segment) = self
            .records
            .lock()
            .get_mut(record)
            .and_then(|record| record.segments.last_mut())
        {
            segment.replies.push(reply);
        }
    }

    /// Marks the current stream of record `record` as ended for `why`.
    pub fn end_segment(&self, record: usize, why: String) {
        if let Some(segment) = self
            .records
            .lock()
            .get_mut(record)
            .and_then(|record| record.segments.last_mut())
        {
            segment.ended = Some(why);
        }
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<WatchRecord> {
        self.records.lock().clone()
    }
}
