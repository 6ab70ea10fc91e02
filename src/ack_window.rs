//! Which DLQ deliveries may be acknowledged, as pure bookkeeping: deliveries are taken
//! in tag order, finish in any order, and some are held (never acknowledged on this
//! channel). The window says what to acknowledge — one `multiple` ack for everything
//! done below the oldest delivery still in flight or held, single acks above a held one.

use std::collections::BTreeSet;

/// An acknowledgement to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Every delivery up to and including this tag (`multiple`).
    UpTo(u64),
    /// This one delivery.
    One(u64),
}

/// The deliveries of one consuming channel that are not acknowledged yet.
#[derive(Debug, Default)]
pub struct AckWindow {
    /// Taken, action not finished.
    pending: BTreeSet<u64>,
    /// Finished, not acknowledged yet.
    done: BTreeSet<u64>,
    /// Kept unacknowledged until the channel closes (the broker then takes them back).
    held: BTreeSet<u64>,
}

impl AckWindow {
    pub fn take(&mut self, tag: u64) {
        self.pending.insert(tag);
    }

    /// The action for `tag` finished: its delivery may be acknowledged.
    pub fn finish(&mut self, tag: u64) {
        if self.pending.remove(&tag) {
            self.done.insert(tag);
        }
    }

    /// `tag` must not be acknowledged: it goes back to the queue with the channel.
    pub fn hold(&mut self, tag: u64) {
        if self.pending.remove(&tag) {
            self.held.insert(tag);
        }
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The acknowledgements that may be sent now; the window forgets them.
    pub fn acks(&mut self) -> Vec<Ack> {
        let floor = match (self.pending.first(), self.held.first()) {
            (Some(&p), Some(&h)) => Some(p.min(h)),
            (p, h) => p.or(h).copied(),
        };
        let upto = match floor {
            Some(floor) => self.done.range(..floor).next_back().copied(),
            None => self.done.last().copied(),
        };
        let mut out = Vec::new();
        if let Some(tag) = upto {
            self.done = self.done.split_off(&(tag + 1));
            out.push(Ack::UpTo(tag));
        }
        // Above a held delivery, acknowledge one by one what is done below the next
        // pending one (a `multiple` ack would take the held one with it).
        if let Some(&held) = self.held.first() {
            let limit = self.pending.first().copied().unwrap_or(u64::MAX);
            let singles: Vec<u64> = self
                .done
                .range(held..limit)
                .copied()
                .filter(|t| !self.held.contains(t))
                .collect();
            for t in singles {
                self.done.remove(&t);
                out.push(Ack::One(t));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_multiple_ack_for_everything_done_in_order() {
        let mut w = AckWindow::default();
        for t in 1..=3 {
            w.take(t);
        }
        w.finish(1);
        w.finish(2);
        assert_eq!(w.acks(), vec![Ack::UpTo(2)]);
        assert_eq!(w.acks(), vec![]);
        w.finish(3);
        assert_eq!(w.acks(), vec![Ack::UpTo(3)]);
    }

    #[test]
    fn nothing_is_acknowledged_past_a_delivery_still_in_flight() {
        let mut w = AckWindow::default();
        for t in 1..=4 {
            w.take(t);
        }
        w.finish(2);
        w.finish(3);
        assert_eq!(w.acks(), vec![]);
        w.finish(1);
        assert_eq!(w.acks(), vec![Ack::UpTo(3)]);
        assert_eq!(w.in_flight(), 1);
    }

    #[test]
    fn a_held_delivery_is_never_acknowledged_and_does_not_block_the_rest() {
        let mut w = AckWindow::default();
        for t in 1..=5 {
            w.take(t);
        }
        w.finish(1);
        w.hold(2);
        w.finish(3);
        w.finish(5);
        // 4 is still in flight: 3 may go singly, 5 waits for 4.
        assert_eq!(w.acks(), vec![Ack::UpTo(1), Ack::One(3)]);
        w.finish(4);
        assert_eq!(w.acks(), vec![Ack::One(4), Ack::One(5)]);
        assert_eq!(w.held(), 1);
        assert_eq!(w.acks(), vec![]);
    }

    #[test]
    fn finishing_an_unknown_or_held_tag_changes_nothing() {
        let mut w = AckWindow::default();
        w.take(1);
        w.hold(1);
        w.finish(1);
        w.finish(9);
        assert_eq!(w.acks(), vec![]);
    }
}
