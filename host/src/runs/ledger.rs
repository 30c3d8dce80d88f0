//! Usage rows to the ledger after runs end, in batches on a task of their
//! own: a run never waits for the write, and a burst of runs is one
//! transaction rather than one each.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::sessions::SessionStore;
use crate::usage::{Meter, UsageRow};

/// Rows waiting for the writer at most; beyond, rows are dropped and logged.
const QUEUE: usize = 4096;
/// Rows written in one transaction at most.
const BATCH: usize = 256;
/// How long the writer lets rows gather after the first one. Woken for every
/// few runs, its transactions were ~7 % of the gateway's CPU at ~1.4k runs/s
/// (BENCHMARKS.md, the assistant profile); rows reach `/usage` this much later.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// Hands finished runs' usage to the background writer.
#[derive(Clone)]
pub struct LedgerWriter {
    rows: mpsc::Sender<UsageRow>,
}

impl LedgerWriter {
    /// Start the writer on `store`; it ends when every sender is gone.
    pub fn spawn(store: Arc<dyn SessionStore>) -> Self {
        let (rows, mut queue) = mpsc::channel::<UsageRow>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while queue.recv_many(&mut batch, BATCH).await > 0 {
                if batch.len() < BATCH {
                    tokio::time::sleep(LINGER).await;
                    while batch.len() < BATCH
                        && let Ok(row) = queue.try_recv()
                    {
                        batch.push(row);
                    }
                }
                let n = batch.len();
                if let Err(e) = store.record_usage(std::mem::take(&mut batch)).await {
                    tracing::warn!(rows = n, error = %e, "cannot write usage to the ledger; these runs are missing from /usage");
                }
            }
        });
        Self { rows }
    }

    /// Queue a run's rows (none for a run that called no model).
    pub fn record(&self, run_id: &str, agent: &str, meter: &Meter) {
        let at = crate::sessions::now_ms() as i64;
        for row in meter.rows(run_id, agent, at) {
            if self.rows.try_send(row).is_err() {
                tracing::warn!(run_id, agent, "usage ledger queue full; a run's usage row was dropped");
            }
        }
    }
}
