//! The history of one simulation: every client operation with its invocation, its completion
//! (or none), and what it returned, in the order the single-threaded simulation saw them.
//!
//! Guarantees: `call` and `ret` are positions in one global sequence, so `a.ret < b.call`
//! means `a` completed before `b` was invoked in simulated real time (the order the checkers
//! rely on). An operation whose outcome the client does not know (error, timeout, connection
//! lost) is recorded as [`Outcome::Unknown`]: it may or may not have taken effect.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// A key's value and the revision that last modified it, as a read returned it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Observed {
    pub value: String,
    pub mod_revision: i64,
}

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    Put {
        key: String,
        value: String,
    },
    Get {
        key: String,
        serializable: bool,
    },
    Delete {
        key: String,
    },
    /// kube-apiserver's update: `txn(if mod_revision(key) == expected then put(key, value)
    /// else get(key))`; `expected` 0 means "create if absent".
    CompareAndPut {
        key: String,
        expected: i64,
        value: String,
    },
    /// kube-apiserver's guaranteed delete: `txn(if mod_revision(key) == expected then
    /// delete(key) else get(key))`, `expected` being the mod_revision of an earlier read.
    CompareAndDelete {
        key: String,
        expected: i64,
    },
    /// kube-apiserver's paginated list: a linearizable range over `prefix` with `limit`, then
    /// each next page from the last key + `\0` at the first page's header revision.
    List {
        prefix: String,
        limit: i64,
    },
}

impl Request {
    pub fn key(&self) -> &str {
        match self {
            Request::Put { key, .. }
            | Request::Get { key, .. }
            | Request::Delete { key }
            | Request::CompareAndPut { key, .. }
            | Request::CompareAndDelete { key, .. } => key,
            Request::List { prefix, .. } => prefix,
        }
    }

    /// Whether the request changes the store when it takes effect.
    pub fn writes(&self) -> bool {
        !matches!(self, Request::Get { .. } | Request::List { .. })
    }

    /// Whether the request reads or writes exactly one key (a list reads a prefix).
    pub fn single_key(&self) -> bool {
        !matches!(self, Request::List { .. })
    }
}

/// What the cluster answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    /// `revision` is the response header's.
    Put {
        revision: i64,
    },
    Get {
        revision: i64,
        found: Option<Observed>,
    },
    Delete {
        revision: i64,
        deleted: i64,
    },
    CompareAndPut {
        revision: i64,
        succeeded: bool,
        /// The else branch's read, when the compare failed.
        found: Option<Observed>,
    },
    CompareAndDelete {
        revision: i64,
        succeeded: bool,
        /// Keys the then branch deleted (0 when the compare failed).
        deleted: i64,
        /// The else branch's read, when the compare failed.
        found: Option<Observed>,
    },
    /// `revision` is the first page's header revision, the one every page was read at.
    List {
        revision: i64,
        pages: Vec<Page>,
    },
}

/// One page of a paginated list, as the member answered it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Page {
    /// The page's response header revision (the member's current one, for later pages).
    pub header: i64,
    /// The page's keys in the order returned, with their values and mod_revisions.
    pub kvs: Vec<(String, Observed)>,
    pub more: bool,
}

impl Response {
    pub fn revision(&self) -> i64 {
        match self {
            Response::Put { revision }
            | Response::Get { revision, .. }
            | Response::Delete { revision, .. }
            | Response::CompareAndPut { revision, .. }
            | Response::CompareAndDelete { revision, .. }
            | Response::List { revision, .. } => *revision,
        }
    }

    /// Whether this answer says the store changed (and so `revision` is the change's own).
    pub fn changed(&self) -> bool {
        match self {
            Response::Put { .. } => true,
            Response::Get { .. } => false,
            Response::Delete { deleted, .. } => *deleted > 0,
            Response::CompareAndPut { succeeded, .. } => *succeeded,
            Response::CompareAndDelete {
                succeeded, deleted, ..
            } => *succeeded && *deleted > 0,
            Response::List { .. } => false,
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok(Response),
    /// Failed, timed out or never answered: it may or may not have taken effect.
    Unknown(String),
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    pub client: usize,
    /// Index of the member it was sent to.
    pub member: usize,
    pub request: Request,
    /// Position of the invocation in the global sequence.
    pub call: u64,
    /// Position of the completion; `None` while in flight (then it counts as unknown).
    pub ret: Option<u64>,
    pub outcome: Option<Outcome>,
    /// Simulated time of the invocation.
    pub called_at: Duration,
}

impl Operation {
    /// The response, if the operation completed successfully.
    pub fn response(&self) -> Option<&Response> {
        match &self.outcome {
            Some(Outcome::Ok(response)) => Some(response),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Inner {
    next_seq: u64,
    operations: Vec<Operation>,
}

/// The shared, append-only history all clients of one simulation record into.
#[derive(Clone, Default)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
}

impl History {
    /// Records an invocation; returns the operation's id for [`History::complete`].
    pub fn invoke(&self, client: usize, member: usize, request: Request) -> usize {
        let mut inner = self.inner.lock();
        let call = inner.next_seq;
        inner.next_seq += 1;
        inner.operations.push(Operation {
            client,
            member,
            request,
            call,
            ret: None,
            outcome: None,
            called_at: turmoil::sim_elapsed().unwrap_or_default(),
        });
        inner.operations.len() - 1
    }

    /// Records how operation `id` ended.
    pub fn complete(&self, id: usize, outcome: Outcome) {
        let mut inner = self.inner.lock();
        let ret = inner.next_seq;
        inner.next_seq += 1;
        if let Some(operation) = inner.operations.get_mut(id) {
            operation.ret = Some(ret);
            operation.outcome = Some(outcome);
        }
    }

    /// Every operation so far, in invocation order.
    pub fn operations(&self) -> Vec<Operation> {
        self.inner.lock().operations.clone()
    }
}
