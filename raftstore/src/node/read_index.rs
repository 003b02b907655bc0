//! Linearizable reads through raft's ReadIndex, batched into rounds.
//!
//! Every read queued while no round is in flight joins the next round; a round asks raft for one
//! read index with a fresh context. When raft answers, the round's readers wait until the applied
//! index reaches it, then may read local state. raft-rs drops read requests silently (no leader,
//! or a leader that has not yet committed in its term), so a round that gets no answer within
//! `retry_after_ticks` is asked again with a new context; a leader change fails the round as
//! retryable. Each reader also has the caller's own deadline.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use crate::error::EtcdError;

pub type ReadResponder = oneshot::Sender<Result<(), EtcdError>>;

/// A round sent to raft, waiting for its read state.
struct InFlightRound {
    context: u64,
    readers: Vec<ReadResponder>,
    ticks_waited: usize,
}

/// Read rounds in every stage: queued, asked, and waiting for apply.
pub struct ReadRounds {
    queued: Vec<ReadResponder>,
    in_flight: Option<InFlightRound>,
    /// (read index, readers), in ascending read index order.
    awaiting_apply: VecDeque<(u64, Vec<ReadResponder>)>,
    next_context: u64,
    retry_after_ticks: usize,
}

impl ReadRounds {
    pub fn new(retry_after_ticks: usize) -> Self {
        Self {
            queued: Vec::new(),
            in_flight: None,
            awaiting_apply: VecDeque::new(),
            next_context: 1,
            retry_after_ticks: retry_after_ticks.max(1),
        }
    }

    pub fn enqueue(&mut self, reader: ReadResponder) {
        self.queued.push(reader);
    }

    /// Starts a round if readers are queued and none is in flight; returns the context to pass
    /// to raft's `read_index`.
    pub fn start_round(&mut self) -> Option<Vec<u8>> {
        if self.in_flight.is_some() || self.queued.is_empty() {
            return None;
        }
        let readers = std::mem::take(&mut self.queued);
        let context = self.fresh_context();
        self.in_flight = Some(InFlightRound {
            context,
            readers,
            ticks_waited: 0,
        });
        Some(context.to_be_bytes().to_vec())
    }

    /// Counts a tick; returns a new context to ask raft with when the round went unanswered.
    pub fn tick(&mut self) -> Option<Vec<u8>> {
        let retry_after = self.retry_after_ticks;
        let round = self.in_flight.as_mut()?;
        round.ticks_waited += 1;
        if round.ticks_waited < retry_after {
            return None;
        }
        let context = self.next_context;
        self.next_context += 1;
        let round = self.in_flight.as_mut()?;
        round.context = context;
        round.ticks_waited = 0;
        Some(context.to_be_bytes().to_vec())
    }

    /// Raft answered a read request: the round with `context` may read once `read_index` is
    /// applied. Answers for stale contexts are ignored.
    pub fn on_read_state(&mut self, context: &[u8], read_index: u64, applied_index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(context) else {
            return;
        };
        let context = u64::from_be_bytes(bytes);
        if self.in_flight.as_ref().map(|r| r.context) != Some(context) {
            return;
        }
        let Some(round) = self.in_flight.take() else {
            return;
        };
        if read_index <= applied_index {
            for reader in round.readers {
                let _ = reader.send(Ok(()));
            }
            return;
        }
        // Rounds are answered in order, so read indexes only grow.
        match self.awaiting_apply.back_mut() {
            Some((index, readers)) if *index >= read_index => readers.extend(round.readers),
            _ => self.awaiting_apply.push_back((read_index, round.readers)),
        }
    }

    /// The applied index moved: releases every reader whose read index it reached.
    pub fn on_applied(&mut self, applied_index: u64) {
        while let Some((index, _)) = self.awaiting_apply.front() {
            if *index > applied_index {
                break;
            }
            if let Some((_, readers)) = self.awaiting_apply.pop_front() {
                for reader in readers {
                    let _ = reader.send(Ok(()));
                }
            }
        }
    }

    /// The leader changed: the round in flight can no longer be trusted to be answered.
    pub fn fail_in_flight(&mut self, error: EtcdError) {
        if let Some(round) = self.in_flight.take() {
            for reader in round.readers {
                let _ = reader.send(Err(error.clone()));
            }
        }
    }

    /// Fails every reader in every stage (shutdown).
    pub fn fail_all(&mut self, error: EtcdError) {
        self.fail_in_flight(error.clone());
        for reader in self.queued.drain(..) {
            let _ = reader.send(Err(error.clone()));
        }
        for (_, readers) in self.awaiting_apply.drain(..) {
            for reader in readers {
                let _ = reader.send(Err(error.clone()));
            }
        }
    }

    fn fresh_context(&mut self) -> u64 {
        let context = self.next_context;
        self.next_context += 1;
        context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> (ReadResponder, oneshot::Receiver<Result<(), EtcdError>>) {
        oneshot::channel()
    }

    #[test]
    fn readers_queued_together_share_one_round() {
        let mut rounds = ReadRounds::new(10);
        let (a, mut a_rx) = reader();
        let (b, mut b_rx) = reader();
        rounds.enqueue(a);
        rounds.enqueue(b);
        let ctx = rounds.start_round().expect("readers are queued");
        assert!(rounds.start_round().is_none(), "one round at a time");
        rounds.on_read_state(&ctx, 5, 3);
        assert!(a_rx.try_recv().is_err(), "index 5 not applied yet");
        rounds.on_applied(5);
        assert_eq!(a_rx.try_recv().expect("released"), Ok(()));
        assert_eq!(b_rx.try_recv().expect("released"), Ok(()));
    }

    #[test]
    fn unanswered_round_is_retried_with_fresh_context() {
        let mut rounds = ReadRounds::new(2);
        let (a, mut a_rx) = reader();
        rounds.enqueue(a);
        let first = rounds.start_round().expect("queued");
        assert!(rounds.tick().is_none());
        let second = rounds.tick().expect("retried after 2 ticks");
        assert_ne!(first, second);
        rounds.on_read_state(&first, 1, 1);
        assert!(a_rx.try_recv().is_err(), "stale context ignored");
        rounds.on_read_state(&second, 1, 1);
        assert_eq!(a_rx.try_recv().expect("released"), Ok(()));
    }

    #[test]
    fn leader_change_fails_round_as_retryable() {
        let mut rounds = ReadRounds::new(10);
        let (a, mut a_rx) = reader();
        rounds.enqueue(a);
        rounds.start_round();
        rounds.fail_in_flight(EtcdError::LeaderChanged);
        let err = a_rx.try_recv().expect("answered").expect_err("failed");
        assert!(err.is_retryable());
    }
}
