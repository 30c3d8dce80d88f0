//! The run's side of its event channel: what a guest emits is held here and
//! handed to the door when the door needs it, so a burst of events (a
//! provider's reply that arrived in one read) wakes the door once and leaves
//! in one frame instead of one frame per token.
//!
//! The one rule: held events are handed over when the run returns and when
//! holding more would break backpressure (see below); a streamed
//! [`Delivery`] also hands them over whenever the run's future returns
//! `Pending` ([`hand_over_on_wait`], around the guest's call). Every host
//! import that can wait (a model call, WASI sleep or HTTP, any import added
//! later) waits by returning `Pending`, so none can forget to hand over. So
//! does the epoch yield (`EPOCH_TICK`): a guest that emits and then computes
//! without any host call holds its events at most one tick (10 ms). The one
//! `Pending` that does not hand over is the single yield
//! [`ready_or_after_a_yield`] makes while events are held, which lets another
//! task (hyper's client connection, woken by the poll) make the awaited thing
//! ready: the burst goes on if it did.
//!
//! A door that only collects the whole reply says so ([`Delivery::whole`]):
//! nothing reaches it before the end anyway, and waking it at every wait
//! costs a thread wake-up per emit on an idle machine (the second worker
//! unparked to poll a door that goes back to sleep; BENCHMARKS.md, "Outbound
//! HTTP", round 7). Its run hands over only at the bound and when it returns.
//!
//! Backpressure holds for both: events are held only while the channel could
//! take all of them at once (the run is its channel's only sender, so the
//! room can only grow meanwhile) and at most [`MAX_HELD`]; otherwise `pass`
//! hands over and waits as a plain send would.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::chat::Event;

/// Most events held before they are handed over regardless.
pub const MAX_HELD: usize = 64;

/// How the door takes its run's events, shared by the door and the run's
/// outbox: streamed unless the door says it only wants the whole reply.
#[derive(Debug, Clone, Default)]
pub struct Delivery(Arc<AtomicBool>);

impl Delivery {
    /// The door only collects: from now on the run hands its events over at
    /// the bound and when it returns, not whenever it waits.
    pub fn whole(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the door only collects the whole reply.
    pub fn is_whole(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The run's side of its event channel, as a run is started with it.
pub struct RunEvents {
    pub tx: mpsc::Sender<Event>,
    pub delivery: Delivery,
    /// Timed when the guest emits its first event (`None`: not measured).
    pub first: Option<crate::metrics::FirstEvent>,
}

impl RunEvents {
    /// Into `tx`: streamed until the door says otherwise, first event untimed.
    pub fn new(tx: mpsc::Sender<Event>) -> Self {
        Self { tx, delivery: Delivery::default(), first: None }
    }
}

/// The consumer is gone (the client disconnected or the run was cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// One run's outgoing events: the channel to its door, and what is held back.
pub struct Outbox {
    tx: mpsc::Sender<Event>,
    delivery: Delivery,
    held: Mutex<VecDeque<Event>>,
    /// Set around the one yield that must not hand over.
    yielding: AtomicBool,
}

impl Outbox {
    /// The run's side of `tx`; the run must be its only sender.
    pub fn new(tx: mpsc::Sender<Event>, delivery: Delivery) -> Self {
        Self { tx, delivery, held: Mutex::new(VecDeque::new()), yielding: AtomicBool::new(false) }
    }

    /// Pass `ev` on: held while the channel has room for everything held,
    /// else everything is handed over, waiting while the consumer is slow.
    pub async fn pass(&self, ev: Event) -> Result<(), Closed> {
        if self.tx.is_closed() {
            return Err(Closed);
        }
        let batch = {
            let mut held = self.held();
            if held.len() < MAX_HELD && held.len() < self.tx.capacity() {
                held.push_back(ev);
                return Ok(());
            }
            std::mem::take(&mut *held)
        };
        for held in batch {
            self.tx.send(held).await.map_err(|_| Closed)?;
        }
        self.tx.send(ev).await.map_err(|_| Closed)
    }

    /// Hand every held event to the consumer now, without waiting (there is
    /// room for all of them, see [`Self::pass`]).
    pub fn hand_over(&self) {
        let mut held = self.held();
        while let Some(ev) = held.pop_front() {
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    // Not reachable while the run is the only sender; kept, not lost.
                    debug_assert!(false, "the outbox held more than its channel had room for");
                    held.push_front(ev);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    held.clear();
                    return;
                }
            }
        }
    }

    /// Whether any event is held.
    pub fn holds(&self) -> bool {
        !self.held().is_empty()
    }

    /// Whether a wait of the run hands the held events over now.
    fn hands_over_on_wait(&self) -> bool {
        !self.yielding.load(Ordering::Relaxed) && !self.delivery.is_whole()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        // A panic while held cannot leave the queue half-changed.
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `fut`'s output. When it is not ready at once and events are held for a
/// streamed delivery, the run yields to the scheduler once, still holding,
/// and polls again; only then does it wait (and [`hand_over_on_wait`] hands
/// the events over). A whole delivery holds through the wait anyway.
pub async fn ready_or_after_a_yield<F: Future>(outbox: Option<&Outbox>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let Some(outbox) = outbox.filter(|o| o.holds() && !o.delivery.is_whole()) else {
        return fut.await;
    };
    if let Poll::Ready(out) = futures::poll!(fut.as_mut()) {
        return out;
    }
    {
        let _yielding = Yielding::set(outbox);
        tokio::task::yield_now().await;
    }
    fut.await
}

/// Marks the one yield that must not hand over, until dropped (also when
/// the yield is cancelled, so no later wait is mistaken for it).
struct Yielding<'a>(&'a Outbox);

impl<'a> Yielding<'a> {
    fn set(outbox: &'a Outbox) -> Self {
        outbox.yielding.store(true, Ordering::Relaxed);
        Self(outbox)
    }
}

impl Drop for Yielding<'_> {
    fn drop(&mut self) {
        self.0.yielding.store(false, Ordering::Relaxed);
    }
}

/// `run`, whose guest emits into `outbox`, handing the held events over
/// when it is done and, for a streamed delivery, whenever it is about to wait.
pub async fn hand_over_on_wait<F: Future>(outbox: Option<Arc<Outbox>>, run: F) -> F::Output {
    let mut run = pin!(run);
    std::future::poll_fn(|cx| {
        let polled = run.as_mut().poll(cx);
        if let Some(outbox) = &outbox
            && (polled.is_ready() || outbox.hands_over_on_wait())
        {
            outbox.hand_over();
        }
        polled
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(i: usize) -> Event {
        Event::Text(i.to_string())
    }

    fn drain(rx: &mut mpsc::Receiver<Event>) -> Vec<Event> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[tokio::test]
    async fn a_burst_reaches_the_consumer_together_and_in_order_when_the_run_waits() {
        let (tx, mut rx) = mpsc::channel(32);
        let outbox = Arc::new(Outbox::new(tx, Delivery::default()));
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let run = {
            let outbox = outbox.clone();
            async move {
                for i in 0..5 {
                    outbox.pass(text(i)).await.unwrap();
                }
                assert_eq!(outbox.tx.capacity(), 32, "nothing handed over during the burst");
                wait.await.unwrap();
                outbox.pass(text(5)).await.unwrap();
            }
        };
        let mut run = pin!(hand_over_on_wait(Some(outbox), run));
        assert!(futures::poll!(run.as_mut()).is_pending());
        assert_eq!(drain(&mut rx), (0..5).map(text).collect::<Vec<_>>(), "handed over before the wait");
        go.send(()).unwrap();
        run.await;
        assert_eq!(drain(&mut rx), [text(5)], "and what came after, when the run returned");
    }

    fn whole(tx: mpsc::Sender<Event>) -> Arc<Outbox> {
        let delivery = Delivery::default();
        delivery.whole();
        Arc::new(Outbox::new(tx, delivery))
    }

    #[tokio::test]
    async fn a_whole_delivery_holds_through_waits_and_hands_over_when_the_run_returns() {
        let (tx, mut rx) = mpsc::channel(32);
        let outbox = whole(tx);
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let run = {
            let outbox = outbox.clone();
            async move {
                for i in 0..5 {
                    outbox.pass(text(i)).await.unwrap();
                    // A host call that waits, as an outbound GET does between emits.
                    tokio::task::yield_now().await;
                }
                wait.await.unwrap();
                outbox.pass(text(5)).await.unwrap();
            }
        };
        let mut run = pin!(hand_over_on_wait(Some(outbox.clone()), run));
        for _ in 0..10 {
            assert!(futures::poll!(run.as_mut()).is_pending());
        }
        assert!(rx.try_recv().is_err(), "nothing handed over while the run waits");
        assert!(outbox.holds());
        go.send(()).unwrap();
        run.await;
        assert_eq!(drain(&mut rx), (0..6).map(text).collect::<Vec<_>>(), "all of it, in order, at the end");
        assert!(!outbox.holds());
    }

    #[tokio::test]
    async fn a_whole_delivery_hands_over_at_the_bound_and_holds_the_rest() {
        let (tx, mut rx) = mpsc::channel(1024);
        let outbox = whole(tx);
        let run = {
            let outbox = outbox.clone();
            async move {
                for i in 0..MAX_HELD + 3 {
                    outbox.pass(text(i)).await.unwrap();
                }
                std::future::pending::<()>().await;
            }
        };
        let mut run = pin!(hand_over_on_wait(Some(outbox.clone()), run));
        for _ in 0..3 {
            assert!(futures::poll!(run.as_mut()).is_pending());
            // The first MAX_HELD + 1 went at the bound; the two after are held, however often it waits.
            assert_eq!(rx.len(), MAX_HELD + 1);
        }
        assert_eq!(drain(&mut rx), (0..=MAX_HELD).map(text).collect::<Vec<_>>());
        assert!(outbox.holds());
    }

    #[tokio::test]
    async fn a_whole_delivery_still_blocks_the_emitter_when_the_channel_is_full() {
        let (tx, mut rx) = mpsc::channel(4);
        let outbox = whole(tx);
        let run = {
            let outbox = outbox.clone();
            async move {
                for i in 0..8 {
                    outbox.pass(text(i)).await.unwrap();
                }
            }
        };
        let mut run = pin!(hand_over_on_wait(Some(outbox.clone()), run));
        assert!(futures::poll!(run.as_mut()).is_pending(), "the fifth waits for the consumer");
        assert!(futures::poll!(run.as_mut()).is_pending(), "and keeps waiting");
        assert_eq!(drain(&mut rx), (0..4).map(text).collect::<Vec<_>>(), "no more than the channel takes");
        assert!(futures::poll!(run.as_mut()).is_ready(), "room again: the run goes on to its end");
        assert_eq!(drain(&mut rx), (4..8).map(text).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_whole_delivery_makes_no_yield_to_keep_a_burst() {
        let (tx, _rx) = mpsc::channel(32);
        let outbox = whole(tx);
        outbox.pass(text(0)).await.unwrap();
        let mut waiting = pin!(ready_or_after_a_yield(Some(&outbox), std::future::pending::<()>()));
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        assert!(!outbox.yielding.load(Ordering::Relaxed), "it holds through the wait anyway");
    }

    /// A provider whose next item is made ready by another task, woken by the
    /// poll (as hyper's client body is decoded by its connection task).
    fn provider(items: usize) -> (mpsc::Receiver<usize>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1);
        let feeder = tokio::spawn(async move {
            for i in 0..items {
                if tx.send(i).await.is_err() {
                    return;
                }
            }
        });
        (rx, feeder)
    }

    /// Batch sizes as a consumer woken by the channel sees them.
    fn consumer(mut rx: mpsc::Receiver<Event>) -> tokio::task::JoinHandle<Vec<usize>> {
        tokio::spawn(async move {
            let mut batches = Vec::new();
            while rx.recv().await.is_some() {
                batches.push(1 + drain(&mut rx).len());
            }
            batches
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_provider_ready_after_one_yield_keeps_the_burst_together() {
        let (tx, rx) = mpsc::channel(32);
        let outbox = Arc::new(Outbox::new(tx, Delivery::default()));
        let consumer = consumer(rx);
        let (mut chunks, feeder) = provider(16);
        let run = {
            let outbox = outbox.clone();
            async move {
                while let Some(i) = ready_or_after_a_yield(Some(&outbox), chunks.recv()).await {
                    outbox.pass(text(i)).await.unwrap();
                }
            }
        };
        tokio::spawn(hand_over_on_wait(Some(outbox), run)).await.unwrap();
        feeder.await.unwrap();
        // Each item was ready after one yield: one or two hand-overs, not sixteen.
        let batches = consumer.await.unwrap();
        assert_eq!(batches.iter().sum::<usize>(), 16);
        assert!(batches.len() <= 2, "one frame per burst, not per item: {batches:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn held_events_go_out_before_a_wait_that_lasts() {
        let (tx, mut rx) = mpsc::channel(32);
        let outbox = Arc::new(Outbox::new(tx, Delivery::default()));
        let (next, mut model) = mpsc::channel::<usize>(1);
        let run = {
            let outbox = outbox.clone();
            tokio::spawn(hand_over_on_wait(Some(outbox.clone()), async move {
                outbox.pass(text(0)).await.unwrap();
                // The model is slow: the first token must not wait for the second.
                let i = ready_or_after_a_yield(Some(&outbox), model.recv()).await.unwrap();
                outbox.pass(text(i)).await.unwrap();
            }))
        };
        let first = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
        assert_eq!(first.expect("the held token was handed over while the model was silent"), Some(text(0)));
        next.send(1).await.unwrap();
        run.await.unwrap();
        assert_eq!(drain(&mut rx), [text(1)]);
    }

    #[tokio::test]
    async fn at_the_bound_everything_held_is_handed_over() {
        let (tx, mut rx) = mpsc::channel(1024);
        let outbox = Outbox::new(tx, Delivery::default());
        for i in 0..MAX_HELD {
            outbox.pass(text(i)).await.unwrap();
        }
        assert!(rx.try_recv().is_err(), "{MAX_HELD} events are held");
        outbox.pass(text(MAX_HELD)).await.unwrap();
        assert_eq!(drain(&mut rx), (0..=MAX_HELD).map(text).collect::<Vec<_>>());
        assert!(!outbox.holds());
    }

    #[tokio::test]
    async fn a_slow_consumer_still_blocks_the_emitter() {
        let (tx, mut rx) = mpsc::channel(4);
        let outbox = Outbox::new(tx, Delivery::default());
        for i in 0..4 {
            outbox.pass(text(i)).await.unwrap();
        }
        // The channel has room for the four held; a fifth would not fit with them.
        let blocked = tokio::time::timeout(Duration::from_millis(50), outbox.pass(text(4))).await;
        assert!(blocked.is_err(), "the fifth waits for the consumer");
        // The timed-out send was cancelled: the four held were handed over, the fifth was not sent.
        assert_eq!(drain(&mut rx), (0..4).map(text).collect::<Vec<_>>());
        outbox.pass(text(5)).await.unwrap();
        outbox.hand_over();
        assert_eq!(drain(&mut rx), [text(5)]);
    }

    #[tokio::test]
    async fn a_yield_cancelled_midway_does_not_stop_later_hand_overs() {
        let (tx, _rx) = mpsc::channel(32);
        let outbox = Outbox::new(tx, Delivery::default());
        outbox.pass(text(0)).await.unwrap();
        {
            let mut waiting = pin!(ready_or_after_a_yield(Some(&outbox), std::future::pending::<()>()));
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            assert!(outbox.yielding.load(Ordering::Relaxed), "in its yield");
        }
        assert!(!outbox.yielding.load(Ordering::Relaxed), "the next wait hands over");
    }

    #[tokio::test]
    async fn held_events_are_handed_over_when_the_run_fails() {
        let (tx, mut rx) = mpsc::channel(32);
        let outbox = Arc::new(Outbox::new(tx, Delivery::default()));
        let run = {
            let outbox = outbox.clone();
            async move {
                outbox.pass(text(0)).await.unwrap();
                outbox.pass(text(1)).await.unwrap();
                Err::<(), _>("trapped")
            }
        };
        assert_eq!(hand_over_on_wait(Some(outbox), run).await, Err("trapped"));
        assert_eq!(drain(&mut rx), [text(0), text(1)]);
    }

    #[tokio::test]
    async fn a_consumer_gone_is_seen_at_once_and_held_events_are_dropped() {
        let (tx, rx) = mpsc::channel(32);
        let outbox = Outbox::new(tx, Delivery::default());
        outbox.pass(text(0)).await.unwrap();
        drop(rx);
        assert_eq!(outbox.pass(text(1)).await, Err(Closed));
        outbox.hand_over();
        assert!(!outbox.holds());
    }
}
