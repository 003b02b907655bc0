//! A linearizability checker: Wing & Gong's search with Lowe's memoization (the algorithm of
//! Knossos and Porcupine), for any sequential [`Model`].
//!
//! Guarantees: [`check`] returns `Ok` exactly when some total order of the operations
//! respects real time (an operation that completed before another was invoked comes first)
//! and takes the model from its initial state through every operation's recorded result.
//! Operations with no known completion (`ret: None`) may be placed anywhere after their
//! invocation — including after everything else, where they change nothing observed — so
//! they count as "may or may not have happened". The model may be nondeterministic (a step
//! returns every possible next state); the search tries each.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Op;

    /// Every state the model may be in after `op` runs in `state` and returns what was
    /// recorded; empty when that result is impossible there.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Vec<Self::State>;
}

/// One operation of a history, positioned in one global sequence.
#[derive(Debug, Clone)]
pub struct Timed<Op> {
    pub call: u64,
    /// `None`: never known to have completed.
    pub ret: Option<u64>,
    pub op: Op,
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No order exists; `stuck_at` is the operation whose completion the longest partial
    /// order could not get past, `linearized` how many operations that order held.
    NotLinearizable { stuck_at: usize, linearized: usize },
    /// The search exceeded its step budget (the history is too concurrent to decide).
    GaveUp { steps: u64 },
}

/// How many search steps [`check`] takes before giving up.
pub const STEP_BUDGET: u64 = 20_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Call,
    Return,
}

/// The doubly linked list of call and return events the search lifts operations out of.
struct Events {
    /// Node 0 is the head sentinel; node `1 + 2i` is op i's call, `2 + 2i` its return.
    next: Vec<usize>,
    prev: Vec<usize>,
}

const HEAD: usize = 0;
const END: usize = usize::MAX;

fn call_node(op: usize) -> usize {
    1 + 2 * op
}

fn return_node(op: usize) -> usize {
    2 + 2 * op
}

fn op_of(node: usize) -> (usize, Kind) {
    let kind = if node.is_multiple_of(2) {
        Kind::Return
    } else {
        Kind::Call
    };
    ((node - 1) / 2, kind)
}

impl Events {
    fn new<Op>(ops: &[Timed<Op>]) -> Self {
        let mut order: Vec<(u64, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            order.push((op.call, call_node(i)));
            order.push((op.ret.unwrap_or(u64::MAX), return_node(i)));
        }
        order.sort_unstable();
        let size = 1 + 2 * ops.len();
        let mut next = vec![END; size];
        let mut prev = vec![HEAD; size];
        let mut last = HEAD;
        for (_, node) in order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Self { next, prev }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != END {
            self.prev[next] = prev;
        }
    }

    /// Reinserts `node` where it was (valid in reverse order of unlinking).
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != END {
            self.prev[next] = node;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(call_node(op));
        self.unlink(return_node(op));
    }

    fn unlift(&mut self, op: usize) {
        self.relink(return_node(op));
        self.relink(call_node(op));
    }
}

struct Frame<S> {
    op: usize,
    before: S,
    candidates: Vec<S>,
    tried: usize,
}

fn set_bit(bits: &mut [u64], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

/// Tries the candidates of `frame` from `frame.tried` on, skipping (linearized set, state)
/// pairs already explored; returns the first new state with the op marked linearized, or
/// `None` with it unmarked.
fn advance<S: Clone + Eq + Hash>(
    frame: &mut Frame<S>,
    bits: &mut [u64],
    seen: &mut HashSet<(Vec<u64>, S)>,
) -> Option<S> {
    set_bit(bits, frame.op, true);
    while frame.tried < frame.candidates.len() {
        let candidate = frame.candidates[frame.tried].clone();
        frame.tried += 1;
        if seen.insert((bits.to_vec(), candidate.clone())) {
            return Some(candidate);
        }
    }
    set_bit(bits, frame.op, false);
    None
}

/// Checks that `ops` is linearizable with respect to `model` from `initial`.
pub fn check<M: Model>(model: &M, initial: M::State, ops: &[Timed<M::Op>]) -> Result<(), Verdict> {
    let mut events = Events::new(ops);
    let mut bits = vec![0u64; ops.len().div_ceil(64).max(1)];
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut state = initial;
    let mut node = events.next[HEAD];
    let mut steps = 0u64;
    let mut deepest = (0usize, 0usize);

    while node != END {
        steps += 1;
        if steps > STEP_BUDGET {
            return Err(Verdict::GaveUp { steps });
        }
        let (op, kind) = op_of(node);
        match kind {
            Kind::Call => {
                let mut frame = Frame {
                    op,
                    before: state.clone(),
                    candidates: model.step(&state, &ops[op].op),
                    tried: 0,
                };
                match advance(&mut frame, &mut bits, &mut seen) {
                    Some(next) => {
                        state = next;
                        events.lift(op);
                        stack.push(frame);
                        node = events.next[HEAD];
                    }
                    None => node = events.next[node],
                }
            }
            Kind::Return => {
                if stack.len() >= deepest.1 {
                    deepest = (op, stack.len());
                }
                // `op` completed before it could be linearized: undo the last choice.
                let Some(mut frame) = stack.pop() else {
                    return Err(Verdict::NotLinearizable {
                        stuck_at: deepest.0,
                        linearized: deepest.1,
                    });
                };
                state = frame.before.clone();
                set_bit(&mut bits, frame.op, false);
                if let Some(next) = advance(&mut frame, &mut bits, &mut seen) {
                    state = next;
                    stack.push(frame);
                    node = events.next[HEAD];
                } else {
                    events.unlift(frame.op);
                    node = events.next[call_node(frame.op)];
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of one integer.
    struct Register;

    #[derive(Debug, Clone)]
    enum RegOp {
        Write(u32),
        Read(u32),
        /// A write whose result is not known.
        MaybeWrite(u32),
    }

    impl Model for Register {
        type State = u32;
        type Op = RegOp;

        fn step(&self, state: &u32, op: &RegOp) -> Vec<u32> {
            match op {
                RegOp::Write(v) | RegOp::MaybeWrite(v) => vec![*v],
                RegOp::Read(v) if v == state => vec![*state],
                RegOp::Read(_) => vec![],
            }
        }
    }

    fn op(call: u64, ret: Option<u64>, op: RegOp) -> Timed<RegOp> {
        Timed { call, ret, op }
    }

    #[test]
    fn concurrent_write_and_read_may_go_either_way() {
        let ops = [
            op(0, Some(3), RegOp::Write(1)),
            op(1, Some(2), RegOp::Read(1)),
            op(4, Some(5), RegOp::Read(1)),
        ];
        assert_eq!(check(&Register, 0, &ops), Ok(()));
        let ops = [
            op(0, Some(3), RegOp::Write(1)),
            op(1, Some(2), RegOp::Read(0)),
        ];
        assert_eq!(check(&Register, 0, &ops), Ok(()));
    }

    #[test]
    fn a_read_after_a_completed_write_must_see_it() {
        let ops = [
            op(0, Some(1), RegOp::Write(1)),
            op(2, Some(3), RegOp::Read(0)),
        ];
        assert!(matches!(
            check(&Register, 0, &ops),
            Err(Verdict::NotLinearizable { .. })
        ));
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        let happened = [
            op(0, None, RegOp::MaybeWrite(7)),
            op(1, Some(2), RegOp::Read(7)),
        ];
        assert_eq!(check(&Register, 0, &happened), Ok(()));
        let not_happened = [
            op(0, None, RegOp::MaybeWrite(7)),
            op(1, Some(2), RegOp::Read(0)),
        ];
        assert_eq!(check(&Register, 0, &not_happened), Ok(()));
        let flickers = [
            op(0, None, RegOp::MaybeWrite(7)),
            op(1, Some(2), RegOp::Read(7)),
            op(3, Some(4), RegOp::Read(0)),
        ];
        assert!(check(&Register, 0, &flickers).is_err());
    }

    #[test]
    fn stale_read_after_overwrite_is_caught() {
        let ops = [
            op(0, Some(1), RegOp::Write(1)),
            op(2, Some(3), RegOp::Write(2)),
            op(4, Some(7), RegOp::Read(2)),
            op(5, Some(6), RegOp::Read(1)),
        ];
        assert!(check(&Register, 0, &ops).is_err());
    }
}
