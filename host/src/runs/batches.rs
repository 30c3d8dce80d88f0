//! Rows written after runs end, in batches on a task of their own: a run
//! never waits for the write, and a burst of runs is one transaction rather
//! than one each (the usage ledger, run recordings). On a graceful shutdown
//! [`Batches::flush`] writes what is still waiting.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::sessions::StoreFuture;

/// How a writer gathers rows: at most `batch` in one call of its store
/// method, waiting up to `linger` after the first one for more.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    /// Rows waiting at most; beyond, a row is dropped (and its writer logs it).
    pub queue: usize,
    pub batch: usize,
    /// Rows reach their readers this much later at most.
    pub linger: Duration,
}

/// What a writer's queue carries: rows, and requests to write them now.
enum Item<T> {
    Row(T),
    /// Write everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// A queue of rows in front of one store method.
pub(super) struct Batches<T> {
    rows: mpsc::Sender<Item<T>>,
    /// Cuts a writer's linger short when a flush is queued.
    hurry: Arc<Notify>,
}

impl<T> Clone for Batches<T> {
    fn clone(&self) -> Self {
        Self { rows: self.rows.clone(), hurry: self.hurry.clone() }
    }
}

impl<T: Send + 'static> Batches<T> {
    /// Start the writer: rows gather as `shape` says and go in one call of
    /// `write`; `lost` is logged with the error when a batch is refused. It
    /// ends when every sender is gone.
    pub fn spawn<W>(shape: Shape, lost: &'static str, write: W) -> Self
    where
        W: Fn(Vec<T>) -> StoreFuture<()> + Send + 'static,
    {
        let (rows, mut waiting) = mpsc::channel::<Item<T>>(shape.queue);
        let hurry = Arc::new(Notify::new());
        let woken = hurry.clone();
        tokio::spawn(async move {
            let mut items = Vec::with_capacity(shape.batch);
            while waiting.recv_many(&mut items, shape.batch).await > 0 {
                let mut flushing = items.iter().any(Item::is_flush);
                // One wake-up per linger, not one per row: the rows that came
                // meanwhile are taken at its end.
                if items.len() < shape.batch && !flushing {
                    tokio::select! {
                        () = tokio::time::sleep(shape.linger) => {}
                        () = woken.notified() => {}
                    }
                    while items.len() < shape.batch
                        && !flushing
                        && let Ok(item) = waiting.try_recv()
                    {
                        flushing = item.is_flush();
                        items.push(item);
                    }
                }
                let (mut batch, mut answers) = (Vec::with_capacity(items.len()), Vec::new());
                for item in items.drain(..) {
                    match item {
                        Item::Row(row) => batch.push(row),
                        Item::Flush(answer) => answers.push(answer),
                    }
                }
                let n = batch.len();
                if n > 0
                    && let Err(e) = write(batch).await
                {
                    tracing::warn!(rows = n, error = %e, "{lost}");
                }
                for answer in answers {
                    let _ = answer.send(());
                }
            }
        });
        Self { rows, hurry }
    }

    /// Queue a row; the row back when the queue is full (or the writer gone).
    pub fn push(&self, row: T) -> Result<(), T> {
        self.rows.try_send(Item::Row(row)).map_err(|refused| match refused.into_inner() {
            Item::Row(row) => row,
            Item::Flush(_) => unreachable!("a row was sent"),
        })
    }

    /// Write every row queued so far now (its linger cut short); resolves
    /// once they are written, or refused and logged.
    pub async fn flush(&self) {
        let (answer, written) = oneshot::channel();
        // Waits for room rather than dropping: a flush is never lost to a full queue.
        if self.rows.send(Item::Flush(answer)).await.is_err() {
            return;
        }
        self.hurry.notify_one();
        let _ = written.await;
    }
}

impl<T> Item<T> {
    fn is_flush(&self) -> bool {
        matches!(self, Item::Flush(_))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The batches a test writer was given, in order.
    type Written = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A writer whose linger outlasts the test: only a flush writes.
    fn slow_writer() -> (Batches<u32>, Written) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let seen = written.clone();
        let shape = Shape { queue: 16, batch: 4, linger: Duration::from_secs(3600) };
        let batches = Batches::spawn(shape, "lost", move |rows| {
            seen.lock().unwrap().push(rows);
            Box::pin(async { Ok(()) })
        });
        (batches, written)
    }

    #[tokio::test]
    async fn a_flush_writes_what_is_queued_without_waiting_for_the_linger() {
        let (batches, written) = slow_writer();
        for row in 1..=6 {
            assert!(batches.push(row).is_ok());
        }
        tokio::time::timeout(Duration::from_secs(30), batches.flush()).await.expect("the flush ends");
        // A full batch goes at once; the rest waited for the flush.
        assert_eq!(*written.lock().unwrap(), vec![vec![1, 2, 3, 4], vec![5, 6]]);
        // Nothing queued: a flush still answers, and writes nothing.
        tokio::time::timeout(Duration::from_secs(30), batches.flush()).await.expect("the flush ends");
        assert_eq!(written.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_hands_the_row_back_to_be_logged() {
        let (batches, _written) = slow_writer();
        // The writer holds at most one batch while it lingers; the queue holds 16 more.
        let kept = (0..64).filter(|&row| batches.push(row).is_ok()).count();
        assert!((16..=20).contains(&kept), "{kept} of 64 rows queued");
        assert_eq!(batches.push(99), Err(99));
    }
}
