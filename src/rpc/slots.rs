//! Bounded concurrency with a bounded priority queue (PROTOCOL.md §4).
//!
//! [`Slots::admit`] is synchronous, so overload is decided the moment a line is read.
//! A [`Permit`] is one running request; dropping it hands the slot to the oldest waiter
//! of the highest priority. A [`Ticket`] is a place in the queue; dropping it (cancel,
//! deadline) leaves the queue, and if a permit was already handed to it in that instant,
//! the permit is dropped with it and passes to the next waiter, so a slot is never lost.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use quarry_protocol::Priority;

/// Worker slots and the queue in front of them.
#[derive(Debug)]
pub struct Slots {
    max_concurrency: usize,
    max_queue: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    free: usize,
    queued: usize,
    peak_queued: usize,
    next_seq: u64,
    /// Indexed by [`Priority::rank`]: high, normal, low.
    queues: [VecDeque<Waiter>; 3],
}

#[derive(Debug)]
struct Waiter {
    seq: u64,
    tx: oneshot::Sender<Permit>,
}

/// A running request's slot; released on drop.
#[derive(Debug)]
pub struct Permit {
    slots: Arc<Slots>,
}

/// A queued request's place; leaves the queue on drop.
#[derive(Debug)]
pub struct Ticket {
    slots: Arc<Slots>,
    seq: u64,
    rank: usize,
    rx: Option<oneshot::Receiver<Permit>>,
}

/// Outcome of [`Slots::admit`].
#[derive(Debug)]
pub enum Admission {
    /// A slot was free: run now.
    Run(Permit),
    /// Wait for a slot.
    Queued(Ticket),
    /// The queue is full (`-32002 overloaded`).
    Full,
}

/// Occupancy figures.
#[derive(Debug, Clone, Copy)]
pub struct Occupancy {
    /// Requests holding a slot.
    pub running: usize,
    /// Requests waiting for one.
    pub queued: usize,
    /// Highest `queued` seen.
    pub peak_queued: usize,
}

impl Slots {
    /// `max_concurrency` slots (at least 1) and room for `max_queue` waiters.
    pub fn new(max_concurrency: usize, max_queue: usize) -> Arc<Self> {
        let max_concurrency = max_concurrency.max(1);
        Arc::new(Slots {
            max_concurrency,
            max_queue,
            inner: Mutex::new(Inner {
                free: max_concurrency,
                queued: 0,
                peak_queued: 0,
                next_seq: 0,
                queues: Default::default(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured limits `(max_concurrency, max_queue)`.
    pub fn limits(&self) -> (usize, usize) {
        (self.max_concurrency, self.max_queue)
    }

    /// Current occupancy.
    pub fn occupancy(&self) -> Occupancy {
        let g = self.lock();
        Occupancy {
            running: self.max_concurrency - g.free,
            queued: g.queued,
            peak_queued: g.peak_queued,
        }
    }

    /// Takes a slot, a place in the queue, or reports the queue full.
    pub fn admit(self: &Arc<Self>, priority: Priority) -> Admission {
        let mut g = self.lock();
        if g.free > 0 && g.queued == 0 {
            g.free -= 1;
            return Admission::Run(Permit {
                slots: self.clone(),
            });
        }
        if g.queued >= self.max_queue {
            return Admission::Full;
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        let (tx, rx) = oneshot::channel();
        let rank = priority.rank();
        g.queues[rank].push_back(Waiter { seq, tx });
        g.queued += 1;
        g.peak_queued = g.peak_queued.max(g.queued);
        Admission::Queued(Ticket {
            slots: self.clone(),
            seq,
            rank,
            rx: Some(rx),
        })
    }

    fn release(self: &Arc<Self>) {
        loop {
            let waiter = {
                let mut g = self.lock();
                let next = g.queues.iter_mut().find_map(VecDeque::pop_front);
                match next {
                    Some(w) => {
                        g.queued -= 1;
                        w
                    }
                    None => {
                        g.free += 1;
                        return;
                    }
                }
            };
            match waiter.tx.send(Permit {
                slots: self.clone(),
            }) {
                Ok(()) => return,
                // The waiter left between pop and send: try the next one without
                // running this permit's Drop (which would recurse).
                Err(permit) => std::mem::forget(permit),
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl Ticket {
    /// Waits for a slot. Cancel-safe: dropping the future keeps the ticket's place.
    pub async fn wait(&mut self) -> Permit {
        let rx = self.rx.as_mut().expect("ticket already used");
        match rx.await {
            Ok(permit) => {
                self.rx = None;
                permit
            }
            // The sender is only dropped after a send; unreachable, but never hang.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.rx.is_none() {
            return;
        }
        let mut g = self.slots.lock();
        let q = &mut g.queues[self.rank];
        if let Some(pos) = q.iter().position(|w| w.seq == self.seq) {
            q.remove(pos);
            g.queued -= 1;
        }
        // Otherwise a permit is in flight to us: dropping `rx` drops it, which releases
        // the slot to the next waiter.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn priority_then_fifo_and_no_slot_lost() {
        let slots = Slots::new(1, 10);
        let Admission::Run(running) = slots.admit(Priority::Normal) else {
            panic!()
        };
        let mut order = Vec::new();
        let mut tickets = Vec::new();
        for (i, p) in [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Normal,
        ]
        .into_iter()
        .enumerate()
        {
            let Admission::Queued(t) = slots.admit(p) else {
                panic!()
            };
            tickets.push((i, t));
        }
        assert_eq!(slots.occupancy().queued, 4);
        // A waiter that gives up after being chosen must pass the slot on.
        drop(running);
        let (i, t) = tickets.remove(2);
        assert_eq!(i, 2);
        drop(t); // high-priority waiter held the permit; dropping hands it on
        while !tickets.is_empty() {
            // Whoever holds the permit now is the next in order.
            let mut found = None;
            for (k, (_, t)) in tickets.iter_mut().enumerate() {
                if let Some(Ok(p)) = t.rx.as_mut().map(|rx| rx.try_recv()) {
                    t.rx = None;
                    found = Some((k, p));
                    break;
                }
            }
            let (k, permit) = found.expect("someone holds the slot");
            let (i, _) = tickets.remove(k);
            order.push(i);
            drop(permit);
        }
        assert_eq!(order, vec![1, 3, 0]);
        assert_eq!(slots.occupancy().running, 0);
        assert_eq!(slots.occupancy().queued, 0);
    }

    #[test]
    fn full_queue_is_refused() {
        let slots = Slots::new(1, 1);
        let _a = slots.admit(Priority::Normal);
        let _b = slots.admit(Priority::Normal);
        assert!(matches!(slots.admit(Priority::High), Admission::Full));
    }
}
