//! The sequential model of one etcd key, for [`super::wgl`]: a register holding a value and
//! the revision that last modified it.
//!
//! Guarantees of the model (what a linearizable etcd must satisfy per key): a read returns the
//! value and mod_revision of the latest write before it; a delete reports a deletion exactly
//! when the key exists; a compare-and-put succeeds exactly when the key's mod_revision (0 when
//! absent) equals the expected one, and so does a compare-and-delete (which then deletes the
//! key, so it existed); a failed compare reads back a key whose mod_revision differs; the
//! revisions of a key's successive writes grow. A write
//! whose outcome is unknown leaves its revision unknown until a read reveals it.

use super::wgl::Model;
use crate::history::{Observed, Outcome, Request, Response};

/// A key's value; `mod_revision` is `None` when written by an operation whose result is not
/// known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value {
    pub value: String,
    pub mod_revision: Option<i64>,
}

/// The model state of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyState {
    pub current: Option<Value>,
    /// The highest revision known to have modified the key so far.
    pub last_revision: i64,
}

/// One operation on the key with what it returned (`None`: unknown).
#[derive(Debug, Clone)]
pub struct KeyOp {
    pub request: Request,
    pub response: Option<Response>,
}

impl KeyOp {
    pub fn new(request: Request, outcome: Option<&Outcome>) -> Self {
        let response = match outcome {
            Some(Outcome::Ok(response)) => Some(response.clone()),
            _ => None,
        };
        Self { request, response }
    }
}

/// The register model of one etcd key.
pub struct KeyRegister;

/// `state` after a read that returned `found`, if that read is possible in `state`.
fn observe(state: &KeyState, found: &Option<Observed>) -> Option<KeyState> {
    match (&state.current, found) {
        (None, None) => Some(state.clone()),
        (Some(value), Some(seen)) if value.value == seen.value => match value.mod_revision {
            Some(revision) if revision == seen.mod_revision => Some(state.clone()),
            Some(_) => None,
            // A write of unknown result is revealed: it happened after every known one.
            None if seen.mod_revision > state.last_revision => Some(KeyState {
                current: Some(Value {
                    value: seen.value.clone(),
                    mod_revision: Some(seen.mod_revision),
                }),
                last_revision: seen.mod_revision,
            }),
            None => None,
        },
        _ => None,
    }
}

/// `state` after a write of `value` at `revision` (known), if revisions allow it.
fn written(state: &KeyState, value: Option<&str>, revision: i64) -> Option<KeyState> {
    (revision > state.last_revision).then(|| KeyState {
        current: value.map(|value| Value {
            value: value.to_string(),
            mod_revision: Some(revision),
        }),
        last_revision: revision,
    })
}

/// `state` after a write of `value` whose revision is not known.
fn written_unknown(state: &KeyState, value: Option<&str>) -> KeyState {
    KeyState {
        current: value.map(|value| Value {
            value: value.to_string(),
            mod_revision: None,
        }),
        last_revision: state.last_revision,
    }
}

impl Model for KeyRegister {
    type State = KeyState;
    type Op = KeyOp;

    fn step(&self, state: &KeyState, op: &KeyOp) -> Vec<KeyState> {
        let next = match (&op.request, &op.response) {
            (Request::Put { value, .. }, Some(Response::Put { revision })) => {
                written(state, Some(value), *revision)
            }
            (Request::Put { value, .. }, None) => Some(written_unknown(state, Some(value))),
            (Request::Get { .. }, Some(Response::Get { found, .. })) => observe(state, found),
            // A read that failed observed nothing.
            (Request::Get { .. }, None) => Some(state.clone()),
            (Request::Delete { .. }, Some(Response::Delete { revision, deleted })) => {
                match (&state.current, *deleted) {
                    (Some(_), 1) => written(state, None, *revision),
                    (None, 0) => Some(state.clone()),
                    _ => None,
                }
            }
            (Request::Delete { .. }, None) => Some(written_unknown(state, None)),
            (
                Request::CompareAndPut {
                    expected, value, ..
                },
                Some(Response::CompareAndPut {
                    revision,
                    succeeded,
                    found,
                }),
            ) => {
                if *succeeded {
                    match compare(state, *expected) {
                        Some(false) => None,
                        _ => written(state, Some(value), *revision),
                    }
                } else {
                    observe(state, found).filter(|seen| {
                        current_mod_revision(seen).is_none_or(|current| current != *expected)
                    })
                }
            }
            (
                Request::CompareAndPut {
                    expected, value, ..
                },
                None,
            ) => {
                return match compare(state, *expected) {
                    Some(true) => vec![written_unknown(state, Some(value))],
                    Some(false) => vec![state.clone()],
                    None => vec![state.clone(), written_unknown(state, Some(value))],
                };
            }
            (
                Request::CompareAndDelete { expected, .. },
                Some(Response::CompareAndDelete {
                    revision,
                    succeeded,
                    deleted,
                    found,
                }),
            ) => {
                if *succeeded {
                    match (compare(state, *expected), &state.current, *deleted) {
                        (Some(false), _, _) => None,
                        (_, Some(_), 1) => written(state, None, *revision),
                        (_, None, 0) => Some(state.clone()),
                        _ => None,
                    }
                } else {
                    observe(state, found).filter(|seen| {
                        current_mod_revision(seen).is_none_or(|current| current != *expected)
                    })
                }
            }
            (Request::CompareAndDelete { expected, .. }, None) => {
                return match compare(state, *expected) {
                    Some(true) => vec![written_unknown(state, None)],
                    Some(false) => vec![state.clone()],
                    None => vec![state.clone(), written_unknown(state, None)],
                };
            }
            // A response of another kind than the request: impossible.
            _ => None,
        };
        next.into_iter().collect()
    }
}

/// Whether the key's mod_revision (0 when absent) equals `expected`, if that is known: a key
/// written by an operation of unknown result exists, so its mod_revision is not 0.
fn compare(state: &KeyState, expected: i64) -> Option<bool> {
    match &state.current {
        None => Some(expected == 0),
        Some(Value {
            mod_revision: Some(current),
            ..
        }) => Some(*current == expected),
        Some(Value {
            mod_revision: None, ..
        }) => (expected == 0).then_some(false),
    }
}

/// The key's mod_revision in `state` (0 when absent), if known.
fn current_mod_revision(state: &KeyState) -> Option<i64> {
    match &state.current {
        None => Some(0),
        Some(value) => value.mod_revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(value: &str, revision: Option<i64>) -> KeyOp {
        KeyOp {
            request: Request::Put {
                key: "k".into(),
                value: value.into(),
            },
            response: revision.map(|revision| Response::Put { revision }),
        }
    }

    fn get(found: Option<(&str, i64)>) -> KeyOp {
        KeyOp {
            request: Request::Get {
                key: "k".into(),
                serializable: false,
            },
            response: Some(Response::Get {
                revision: 100,
                found: found.map(|(value, mod_revision)| Observed {
                    value: value.into(),
                    mod_revision,
                }),
            }),
        }
    }

    fn apply(ops: &[KeyOp]) -> Vec<KeyState> {
        let mut states = vec![KeyState::default()];
        for op in ops {
            states = states
                .iter()
                .flat_map(|state| KeyRegister.step(state, op))
                .collect();
        }
        states
    }

    #[test]
    fn a_read_sees_the_last_write_and_its_revision() {
        assert_eq!(apply(&[put("a", Some(2)), get(Some(("a", 2)))]).len(), 1);
        assert!(apply(&[put("a", Some(2)), get(Some(("a", 3)))]).is_empty());
        assert!(apply(&[put("a", Some(2)), get(None)]).is_empty());
    }

    #[test]
    fn revisions_of_a_key_only_grow() {
        assert!(apply(&[put("a", Some(5)), put("b", Some(4))]).is_empty());
    }

    #[test]
    fn an_unknown_write_is_revealed_by_a_read() {
        let states = apply(&[put("a", Some(2)), put("b", None), get(Some(("b", 7)))]);
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].last_revision, 7);
        assert!(apply(&[put("a", Some(9)), put("b", None), get(Some(("b", 7)))]).is_empty());
    }

    #[test]
    fn compare_and_put_succeeds_exactly_on_the_expected_revision() {
        let cas = |expected, succeeded| KeyOp {
            request: Request::CompareAndPut {
                key: "k".into(),
                expected,
                value: "c".into(),
            },
            response: Some(Response::CompareAndPut {
                revision: 10,
                succeeded,
                found: (!succeeded).then(|| Observed {
                    value: "a".into(),
                    mod_revision: 2,
                }),
            }),
        };
        assert_eq!(apply(&[put("a", Some(2)), cas(2, true)]).len(), 1);
        assert!(apply(&[put("a", Some(2)), cas(3, true)]).is_empty());
        assert_eq!(apply(&[put("a", Some(2)), cas(3, false)]).len(), 1);
        assert!(apply(&[put("a", Some(2)), cas(2, false)]).is_empty());
    }

    #[test]
    fn compare_and_delete_deletes_exactly_on_the_expected_revision() {
        let cad = |expected, succeeded| KeyOp {
            request: Request::CompareAndDelete {
                key: "k".into(),
                expected,
            },
            response: Some(Response::CompareAndDelete {
                revision: 10,
                succeeded,
                deleted: i64::from(succeeded),
                found: (!succeeded).then(|| Observed {
                    value: "a".into(),
                    mod_revision: 2,
                }),
            }),
        };
        let deleted = apply(&[put("a", Some(2)), cad(2, true)]);
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].current, None);
        assert!(apply(&[put("a", Some(2)), cad(3, true)]).is_empty());
        assert_eq!(apply(&[put("a", Some(2)), cad(3, false)]).len(), 1);
        assert!(apply(&[put("a", Some(2)), cad(2, false)]).is_empty());
        assert!(apply(&[put("a", Some(2)), cad(2, true), get(Some(("a", 2)))]).is_empty());
        assert_eq!(
            apply(&[put("a", Some(2)), cad(2, true), get(None)]).len(),
            1
        );
    }
}
