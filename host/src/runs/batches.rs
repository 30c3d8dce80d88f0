//! Rows written after runs end, in batches on a task of their own: a run
//! never waits for the write, and a burst of runs is one transaction rather
//! than one each (the usage ledger, run recordings).

use std::time::Duration;

use tokio::sync::mpsc;

use crate::sessions::StoreFuture;

/// How long the writer lets rows gather after the first one. Woken for every
/// few runs, its transactions were ~7 % of the gateway's CPU at ~1.4k runs/s
/// (BENCHMARKS.md, the assistant profile); rows reach their readers this much later.
const LINGER: Duration = Duration::from_millis(50);

/// A queue of rows in front of one store method.
pub(super) struct Batches<T> {
    rows: mpsc::Sender<T>,
}

impl<T> Clone for Batches<T> {
    fn clone(&self) -> Self {
        Self { rows: self.rows.clone() }
    }
}

impl<T: Send + 'static> Batches<T> {
    /// Start the writer: at most `queue` rows wait, `batch` go in one call of
    /// `write`; `lost` is logged with the error when a batch is refused. It
    /// ends when every sender is gone.
    pub fn spawn<W>(queue: usize, batch: usize, lost: &'static str, write: W) -> Self
    where
        W: Fn(Vec<T>) -> StoreFuture<()> + Send + 'static,
    {
        let (rows, mut waiting) = mpsc::channel::<T>(queue);
        tokio::spawn(async move {
            let mut pending = Vec::with_capacity(batch);
            while waiting.recv_many(&mut pending, batch).await > 0 {
                if pending.len() < batch {
                    tokio::time::sleep(LINGER).await;
                    while pending.len() < batch
                        && let Ok(row) = waiting.try_recv()
                    {
                        pending.push(row);
                    }
                }
                let n = pending.len();
                if let Err(e) = write(std::mem::take(&mut pending)).await {
                    tracing::warn!(rows = n, error = %e, "{lost}");
                }
            }
        });
        Self { rows }
    }

    /// Queue a row; `false` when the queue is full and the row was dropped.
    pub fn push(&self, row: T) -> bool {
        self.rows.try_send(row).is_ok()
    }
}
