//! Usage rows to the ledger after runs end, in batches (`batches`).

use std::sync::Arc;

use super::batches::Batches;
use crate::sessions::SessionStore;
use crate::usage::{Meter, UsageRow};

/// Rows waiting for the writer at most; beyond, rows are dropped and logged.
const QUEUE: usize = 4096;
/// Rows written in one transaction at most.
const BATCH: usize = 256;

/// Hands finished runs' usage to the background writer.
#[derive(Clone)]
pub struct LedgerWriter {
    rows: Batches<UsageRow>,
}

impl LedgerWriter {
    /// Start the writer on `store`; it ends when every sender is gone.
    pub fn spawn(store: Arc<dyn SessionStore>) -> Self {
        let lost = "cannot write usage to the ledger; these runs are missing from /usage";
        Self { rows: Batches::spawn(QUEUE, BATCH, lost, move |rows| store.record_usage(rows)) }
    }

    /// Queue a run's rows (none for a run that called no model).
    pub fn record(&self, run_id: &str, agent: &str, meter: &Meter) {
        let at = crate::sessions::now_ms() as i64;
        for row in meter.rows(run_id, agent, at) {
            if !self.rows.push(row) {
                tracing::warn!(run_id, agent, "usage ledger queue full; a run's usage row was dropped");
            }
        }
    }
}
