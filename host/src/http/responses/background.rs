//! Background responses (`background: true`): the run goes on in a task of
//! its own, not tied to the request that started it, so a client may hang up
//! and come back. `GET /v1/responses/{id}` shows the current object, `?stream=true
//! &starting_after=N` replays the SSE events after sequence number N and then
//! follows the live ones, and `POST …/cancel` stops the run.
//!
//! Everything a client can make the host keep here is bounded: at most
//! `maxBackgroundPerPrincipal` runs in flight per principal (more is a 429),
//! and as many finished ones, each kept for [`KEEP_FINISHED`]; each run keeps
//! at most `backgroundEventBytes` of events (the oldest go first, and a
//! resume before them is refused, and a live reader that falls that far
//! behind gets an `error` event rather than a silent gap). The finished object is stored like any
//! other (`store` is required), so it outlives this memory.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::Keeper;
use super::object::Encoder;
use crate::auth::Principal;
use crate::http::error::ApiError;
use crate::runs::RunHandle;
use crate::sessions::access;

/// How long a finished background response stays resumable here.
pub const KEEP_FINISHED: Duration = Duration::from_secs(600);

/// The background runs of this process.
#[derive(Default)]
pub struct BackgroundRuns {
    runs: Mutex<HashMap<String, Arc<Run>>>,
}

/// One background response.
struct Run {
    owner: String,
    agent: String,
    state: Mutex<State>,
    /// Bumped on every change; followers wait on it.
    changed: watch::Sender<u64>,
    abort: Mutex<Option<AbortHandle>>,
}

struct State {
    /// The `response` object as it stands.
    object: Value,
    /// `(sequence_number, event, data)`, oldest first.
    events: VecDeque<(u64, &'static str, String)>,
    bytes: usize,
    /// Sequence numbers below this are no longer kept.
    first_kept: u64,
    finished: Option<Instant>,
}

/// Limits from `gateway.http.endpoints.responses`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_principal: usize,
    pub event_bytes: usize,
}

impl BackgroundRuns {
    /// Start `handle` in the background; the answer is the object as it
    /// stands once the run has been accepted (`in_progress`).
    pub fn start(
        self: &Arc<Self>,
        limits: Limits,
        caller: &Principal,
        agent: &str,
        mut encoder: Encoder,
        keeper: Keeper,
        mut handle: RunHandle,
    ) -> Result<Value, ApiError> {
        encoder.start();
        let opening = encoder.take();
        let object = opening
            .iter()
            .rev()
            .find_map(|(_, data)| serde_json::from_str::<Value>(data).ok().map(|d| d["response"].clone()))
            .unwrap_or(Value::Null);
        let id = object["id"].as_str().unwrap_or_default().to_string();
        let run = Arc::new(Run {
            owner: caller.name().to_string(),
            agent: agent.to_string(),
            state: Mutex::new(State {
                object: object.clone(),
                events: VecDeque::new(),
                bytes: 0,
                first_kept: 0,
                finished: None,
            }),
            changed: watch::channel(0).0,
            abort: Mutex::new(None),
        });
        {
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            forget_finished(&mut runs, &run.owner, limits.per_principal);
            let running = runs.values().filter(|r| r.owner == run.owner && !r.is_finished()).count();
            if running >= limits.per_principal {
                return Err(ApiError::too_many_background(limits.per_principal));
            }
            runs.insert(id, run.clone());
        }
        run.push(opening, limits.event_bytes);
        let task_run = run.clone();
        let task = tokio::spawn(async move {
            let run = task_run;
            while let Some(event) = handle.next().await {
                encoder.event(&event);
                run.push(encoder.take(), limits.event_bytes);
            }
            let outcome = match handle.finish().await {
                Ok(()) => {
                    let object = encoder.finish();
                    run.push(encoder.take(), limits.event_bytes);
                    keeper.keep(&object).await.map(|()| object)
                }
                Err(e) => Err(ApiError::from(e)),
            };
            match outcome {
                Ok(object) => encoder.completed(object),
                Err(e) => {
                    tracing::warn!(error = %e.message, "background response failed");
                    encoder.failed(&e);
                }
            }
            run.push(encoder.take(), limits.event_bytes);
            run.finish(None);
        });
        *run.abort.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        Ok(object)
    }

    /// The caller's background response `id`, if this process runs or ran it.
    fn owned(&self, caller: &Principal, id: &str) -> Option<Arc<Run>> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.get(id).filter(|r| access::is_owner(caller, &r.owner, &r.agent)).cloned()
    }

    /// The object as it stands, if `id` is the caller's background response here.
    pub fn object(&self, caller: &Principal, id: &str) -> Option<Value> {
        self.owned(caller, id).map(|run| run.lock().object.clone())
    }

    /// Stop the run (if it is still going) and return the object; `None` if
    /// `id` is not the caller's background response here.
    pub fn cancel(&self, caller: &Principal, id: &str) -> Option<Value> {
        let run = self.owned(caller, id)?;
        if let Some(abort) = run.abort.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // Dropping the run's handle cancels the run, as a hang-up does.
            abort.abort();
        }
        run.finish(Some("cancelled"));
        tracing::info!(response = id, "background response cancelled");
        Some(run.lock().object.clone())
    }

    /// The events after `starting_after`, then the live ones until the run ends.
    pub fn resume(
        &self,
        caller: &Principal,
        id: &str,
        starting_after: Option<u64>,
        keep_alive: Duration,
    ) -> Option<Result<Response, ApiError>> {
        let run = self.owned(caller, id)?;
        let next = starting_after.map_or(0, |n| n + 1);
        let first_kept = run.lock().first_kept;
        if next < first_kept {
            return Some(Err(ApiError::invalid_request(
                format!(
                    "Events before sequence number {first_kept} of this response are no longer kept \
                     (gateway.http.endpoints.responses.backgroundEventBytes)"
                ),
                Some("starting_after".into()),
            )));
        }
        let changes = run.changed.subscribe();
        let body = futures::stream::unfold((run, changes, Some(next)), |(run, mut changes, next)| async move {
            let next = next?;
            loop {
                let step = run.lock().after(next);
                let (kind, data, then) = match step {
                    Next::Event(seq, kind, data) => (kind, data, Some(seq + 1)),
                    Next::Gap(first_kept) => ("error", gap_error(next, first_kept), None),
                    Next::End => return None,
                    Next::Wait => {
                        if changes.changed().await.is_err() {
                            return None;
                        }
                        continue;
                    }
                };
                let sse: Result<SseEvent, Infallible> = Ok(SseEvent::default().event(kind).data(data));
                return Some((sse, (run, changes, then)));
            }
        });
        let mut response =
            Sse::new(body).keep_alive(KeepAlive::new().interval(keep_alive).text("ping")).into_response();
        response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
        Some(Ok(response))
    }
}

/// Drop finished runs kept too long, and the owner's oldest finished ones
/// over `keep` (the stored objects stay).
fn forget_finished(runs: &mut HashMap<String, Arc<Run>>, owner: &str, keep: usize) {
    let keep = keep.max(1);
    runs.retain(|_, r| r.lock().finished.is_none_or(|at| at.elapsed() < KEEP_FINISHED));
    let mut finished: Vec<(Instant, String)> = runs
        .iter()
        .filter(|(_, r)| r.owner == owner)
        .filter_map(|(id, r)| r.lock().finished.map(|at| (at, id.clone())))
        .collect();
    if finished.len() >= keep {
        finished.sort();
        for (_, id) in &finished[..=finished.len() - keep] {
            runs.remove(id);
        }
    }
}

/// What a follower at sequence number `next` gets.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Event(u64, &'static str, String),
    /// The events from `next` on went before the follower read them (the byte bound).
    Gap(u64),
    /// Nothing yet: wait for a change.
    Wait,
    End,
}

impl State {
    fn after(&self, next: u64) -> Next {
        if next < self.first_kept {
            return Next::Gap(self.first_kept);
        }
        if let Some((seq, kind, data)) = self.events.iter().find(|(seq, ..)| *seq >= next) {
            return Next::Event(*seq, kind, data.clone());
        }
        if self.finished.is_some() { Next::End } else { Next::Wait }
    }
}

/// The `error` event that ends a stream whose reader fell behind the kept events.
fn gap_error(next: u64, first_kept: u64) -> String {
    serde_json::json!({
        "type": "error",
        "code": "events_dropped",
        "message": format!(
            "This stream fell behind: events {next}..{first_kept} are no longer kept \
             (gateway.http.endpoints.responses.backgroundEventBytes); fetch the response instead"
        ),
        "param": null,
        "sequence_number": next,
    })
    .to_string()
}

impl Run {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_finished(&self) -> bool {
        self.lock().finished.is_some()
    }

    /// Keep `events` (within `limit` bytes, dropping the oldest) and follow
    /// the object they carry.
    fn push(&self, events: Vec<(&'static str, String)>, limit: usize) {
        if events.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            if state.finished.is_some() {
                return; // cancelled: nothing more is shown
            }
            for (kind, data) in events {
                let parsed: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                if let Some(object) = parsed.get("response") {
                    state.object = object.clone();
                }
                let seq = parsed["sequence_number"].as_u64().unwrap_or(0);
                state.bytes += data.len();
                state.events.push_back((seq, kind, data));
                while state.bytes > limit {
                    let Some((seq, _, data)) = state.events.pop_front() else { break };
                    state.bytes -= data.len();
                    state.first_kept = seq + 1;
                }
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// The run is over; `status` overrides the object's (a cancel).
    fn finish(&self, status: Option<&str>) {
        {
            let mut state = self.lock();
            if state.finished.is_some() {
                return;
            }
            if let Some(status) = status {
                state.object["status"] = Value::from(status);
            }
            state.finished = Some(Instant::now());
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(kept: &[u64], first_kept: u64, finished: bool) -> State {
        State {
            object: Value::Null,
            events: kept.iter().map(|n| (*n, "response.output_text.delta", format!("{{\"n\":{n}}}"))).collect(),
            bytes: 0,
            first_kept,
            finished: finished.then(Instant::now),
        }
    }

    #[test]
    fn a_follower_that_fell_behind_the_kept_events_is_told_so() {
        let s = state(&[5, 6], 5, false);
        assert_eq!(s.after(5), Next::Event(5, "response.output_text.delta", r#"{"n":5}"#.into()));
        assert_eq!(s.after(7), Next::Wait);
        assert_eq!(state(&[5, 6], 5, true).after(7), Next::End);
        // Events 2..5 went before this follower read them: not a silent skip to 5.
        assert_eq!(s.after(2), Next::Gap(5));
        assert_eq!(state(&[], 9, true).after(3), Next::Gap(9));
    }
}
