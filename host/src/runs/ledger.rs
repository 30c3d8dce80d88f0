//! Usage rows to the ledger after runs end, in batches (`batches`).

use std::sync::Arc;

use super::batches::{Batches, Shape};
use crate::sessions::SessionStore;
use crate::usage::{Meter, UsageRow};

/// 4096 rows wait at most (beyond, rows are dropped and logged), 256 go in
/// one transaction. Woken for every few runs, the ledger's transactions were
/// ~7 % of the gateway's CPU at ~1.4k runs/s (BENCHMARKS.md, the assistant
/// profile); 50 ms later on `/usage` is what gathering them costs.
const SHAPE: Shape = Shape { queue: 4096, batch: 256, linger: std::time::Duration::from_millis(50) };

/// Hands finished runs' usage to the background writer.
#[derive(Clone)]
pub struct LedgerWriter {
    rows: Batches<UsageRow>,
}

impl LedgerWriter {
    /// Start the writer on `store`; it ends when every sender is gone.
    pub fn spawn(store: Arc<dyn SessionStore>) -> Self {
        let lost = "cannot write usage to the ledger; these runs are missing from /usage";
        Self { rows: Batches::spawn(SHAPE, lost, move |rows| store.record_usage(rows)) }
    }

    /// Write the rows queued so far now (graceful shutdown).
    pub async fn flush(&self) {
        self.rows.flush().await
    }

    /// Queue a run's rows (none for a run that called no model).
    pub fn record(&self, run_id: &str, agent: &str, meter: &Meter) {
        let at = crate::sessions::now_ms() as i64;
        for row in meter.rows(run_id, agent, at) {
            if self.rows.push(row).is_err() {
                tracing::warn!(run_id, agent, "usage ledger queue full; a run's usage row was dropped");
            }
        }
    }
}
