//! The tape handle a run's capabilities consult at each host crossing: off
//! (nothing happens, nothing is allocated), recording (each crossing and its
//! answer is kept, within a byte limit), or replaying (each crossing is
//! answered from a recording, and the first one it cannot answer is kept).

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::recording::{Blob, Failure, HttpCall, LlmCall, LlmRequest, MemoRead, Recording};
use crate::chat::Event;

/// One run's tape; cloning shares it (the HTTP hook runs on another task).
#[derive(Clone, Default)]
pub struct Tape(Option<Arc<Mutex<Reel>>>);

enum Reel {
    Record(Recorder),
    Replay(Player),
}

struct Recorder {
    rec: Box<Recording>,
    max_bytes: usize,
}

/// Where a replay stands, and what it found.
pub struct Player {
    rec: Arc<Recording>,
    live: bool,
    llm: usize,
    http: usize,
    wall: usize,
    monotonic: usize,
    /// The first call the recording could not answer.
    pub divergence: Option<Divergence>,
    /// Calls that went out for real (`--live`).
    pub went_live: usize,
    /// What the replayed run put out.
    pub output: Vec<Event>,
}

/// The first host call a replay asked for that its recording cannot answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Divergence {
    /// `llm #2`, `http #1`: which call, counted from 1 in its kind.
    pub call: String,
    /// What the recording holds at that place (`null`: it holds no more).
    pub recorded: serde_json::Value,
    /// What the candidate asked for instead.
    pub new: serde_json::Value,
}

/// How a crossing is answered.
pub enum Crossing<T> {
    /// Go out for real; record under this index (`None`: not recording).
    Live(Option<usize>),
    /// The recorded answer.
    Answered(T),
    /// The recording cannot answer, and the replay is not live: fail the call.
    Diverged,
}

impl Tape {
    /// Record a run whose header (`rec`, crossings empty) is filled in; stops at `max_bytes`.
    pub fn record(mut rec: Recording, max_bytes: usize) -> Self {
        rec.bytes = json_len(&rec);
        let mut recorder = Recorder { rec: Box::new(rec), max_bytes };
        recorder.check();
        Self(Some(Arc::new(Mutex::new(Reel::Record(recorder)))))
    }

    /// Answer a run from `rec`; `live`: calls it cannot answer go out for real.
    pub fn replay(rec: Arc<Recording>, live: bool) -> Self {
        let player = Player {
            rec,
            live,
            llm: 0,
            http: 0,
            wall: 0,
            monotonic: 0,
            divergence: None,
            went_live: 0,
            output: Vec::new(),
        };
        Self(Some(Arc::new(Mutex::new(Reel::Replay(player)))))
    }

    /// False when off: callers skip their tape work entirely.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// True while replaying: nothing may leave a trace outside the run.
    pub fn is_replay(&self) -> bool {
        self.with(|reel| matches!(reel, Reel::Replay(_))).unwrap_or(false)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Reel) -> T) -> Option<T> {
        let reel = self.0.as_ref()?;
        let mut reel = reel.lock().unwrap_or_else(|p| p.into_inner());
        Some(f(&mut reel))
    }

    /// `Some(live)` while replaying.
    pub fn replay_live(&self) -> Option<bool> {
        self.with(|reel| match reel {
            Reel::Replay(p) => Some(p.live),
            Reel::Record(_) => None,
        })
        .flatten()
    }

    /// The seed of the guest's random generators, when taped.
    pub fn seed(&self) -> Option<[u8; 32]> {
        let hex_seed = self.with(|reel| match reel {
            Reel::Record(r) => r.rec.seed.clone(),
            Reel::Replay(p) => p.rec.seed.clone(),
        })?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(hex_seed, &mut seed).ok()?;
        Some(seed)
    }

    /// A clock reading: recorded as `live` gives it, or the recorded one.
    pub fn clock(&self, wall: bool, live: impl FnOnce() -> u64) -> u64 {
        let mut live = Some(live);
        let mut now = || live.take().map_or(0, |f| f());
        self.with(|reel| match reel {
            Reel::Record(r) => {
                let now = now();
                if r.add(8) {
                    let list = if wall { &mut r.rec.clocks.wall } else { &mut r.rec.clocks.monotonic };
                    list.push(now);
                }
                now
            }
            Reel::Replay(p) => {
                let (list, at) =
                    if wall { (&p.rec.clocks.wall, &mut p.wall) } else { (&p.rec.clocks.monotonic, &mut p.monotonic) };
                // Past the recorded readings time stands still a nanosecond at a time: never backwards.
                let value = list.get(*at).copied().unwrap_or_else(|| list.last().map_or(0, |v| v + 1 + *at as u64));
                *at += 1;
                value
            }
        })
        .unwrap_or_else(now)
    }

    /// A `config.get`: recorded, or answered from the recording.
    pub fn config(&self, key: &str, live: impl FnOnce() -> Option<String>) -> Option<String> {
        let mut live = Some(live);
        let mut read = || live.take().and_then(|f| f());
        let answered = self.with(|reel| match reel {
            Reel::Record(r) => {
                let value = read();
                if !r.rec.config.contains_key(key) && r.add(key.len() + value.as_ref().map_or(4, |v| v.len() + 2) + 6) {
                    r.rec.config.insert(key.to_string(), value.clone());
                }
                Some(value)
            }
            // A key the recorded run never read: the replaying version's own value.
            Reel::Replay(p) => p.rec.config.get(key).cloned(),
        });
        match answered.flatten() {
            Some(value) => value,
            None => read(),
        }
    }

    /// A `memo.get`: recorded, or answered from the recording (a key it never read is a miss).
    pub fn memo(&self, key: &str, live: impl FnOnce() -> Option<Vec<u8>>) -> Option<Vec<u8>> {
        let mut live = Some(live);
        let mut read = || live.take().and_then(|f| f());
        self.with(|reel| match reel {
            Reel::Record(r) => {
                let value = read();
                if r.add(key.len() + value.as_ref().map_or(4, Vec::len) + 20) {
                    r.rec.memo.push(MemoRead { key: key.to_string(), value: value.clone().map(Blob) });
                }
                value
            }
            Reel::Replay(p) => p.rec.memo.iter().find(|m| m.key == key).and_then(|m| m.value.clone()).map(|b| b.0),
        })
        .unwrap_or_else(read)
    }

    /// A completion starts; `request` is kept (recording) or compared (replay), never copied.
    pub fn llm_start(&self, request: LlmRequest) -> Crossing<LlmCall> {
        self.with(|reel| match reel {
            Reel::Record(r) => {
                let call = LlmCall { request, events: vec![], failure: None };
                match r.add(json_len(&call)) {
                    true => {
                        r.rec.llm.push(call);
                        Crossing::Live(Some(r.rec.llm.len() - 1))
                    }
                    false => Crossing::Live(None),
                }
            }
            Reel::Replay(p) => {
                let at = p.llm;
                p.llm += 1;
                match p.rec.llm.get(at) {
                    Some(call) if call.request == request => Crossing::Answered(call.clone()),
                    recorded => {
                        let recorded = json(recorded.map(|c| &c.request));
                        p.diverged(format!("llm #{}", at + 1), recorded, &request)
                    }
                }
            }
        })
        .unwrap_or(Crossing::Live(None))
    }

    /// Recorded completion `index` streamed `event`.
    pub fn llm_event(&self, index: usize, event: &Event) {
        self.with(|reel| {
            if let Reel::Record(r) = reel
                && r.add(event_len(event) + 1)
                && let Some(call) = r.rec.llm.get_mut(index)
            {
                call.events.push(event.clone());
            }
        });
    }

    /// Recorded completion `index` failed (to start, or midway).
    pub fn llm_failed(&self, index: usize, failure: Failure) {
        self.with(|reel| {
            if let Reel::Record(r) = reel
                && r.add(json_len(&failure))
                && let Some(call) = r.rec.llm.get_mut(index)
            {
                call.failure = Some(failure);
            }
        });
    }

    /// An outbound request, its body read: answered from the recording, or live.
    pub fn http_request(&self, method: &str, uri: &str, body: &[u8]) -> Crossing<HttpCall> {
        self.with(|reel| match reel {
            Reel::Record(_) => Crossing::Live(None),
            Reel::Replay(p) => {
                let at = p.http;
                p.http += 1;
                match p.rec.http.get(at) {
                    Some(call) if call.method == method && call.uri == uri && call.body.0 == body => {
                        Crossing::Answered(call.clone())
                    }
                    recorded => {
                        let recorded = json(recorded.map(|c| (&c.method, &c.uri, &c.body)));
                        let new = (method, uri, Blob(body.to_vec()));
                        p.diverged(format!("http #{}", at + 1), recorded, &new)
                    }
                }
            }
        })
        .unwrap_or(Crossing::Live(None))
    }

    /// A request that went out, and what it got (recording only).
    pub fn http_done(&self, call: HttpCall) {
        self.with(|reel| {
            if let Reel::Record(r) = reel
                && r.add(json_len(&call))
            {
                r.rec.http.push(call);
            }
        });
    }

    /// The run streamed `event` (the host's metered usage is not the agent's output).
    pub fn output(&self, event: &Event) {
        if matches!(event, Event::Usage(_)) {
            return;
        }
        self.with(|reel| match reel {
            Reel::Record(r) => {
                if r.add(event_len(event) + 1) {
                    r.rec.output.push(event.clone());
                }
            }
            Reel::Replay(p) => p.output.push(event.clone()),
        });
    }

    /// The session the run found (recording only).
    pub fn session_read(&self, session: &crate::sessions::SessionData) {
        self.with(|reel| {
            if let Reel::Record(r) = reel {
                let history = json_len(&session.history);
                let state: usize = session.state.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
                if r.add(history + state) {
                    r.rec.history = session.history.clone();
                    r.rec.state = session.state.iter().map(|(k, v)| (k.clone(), Blob(v.clone()))).collect();
                }
            }
        });
    }

    /// The state writes the run made (recording only).
    pub fn state_written(&self, changes: &crate::sessions::StateChanges) {
        self.with(|reel| {
            if let Reel::Record(r) = reel {
                let bytes: usize = changes.iter().map(|(k, v)| k.len() + v.as_ref().map_or(4, Vec::len) + 8).sum();
                if r.add(bytes) {
                    r.rec.state_changes = changes.iter().map(|(k, v)| (k.clone(), v.clone().map(Blob))).collect();
                }
            }
        });
    }

    /// The recording, once the run is over (`None` unless recording). It is
    /// moved out, not copied: the tape records nothing after this.
    pub fn take_recording(&self) -> Option<Recording> {
        let reel = self.0.as_ref()?;
        let mut reel = reel.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *reel {
            Reel::Record(r) => {
                let rec = std::mem::take(&mut *r.rec);
                // What is left is an empty recording marked full: nothing more is kept.
                r.rec.truncated = true;
                Some(rec)
            }
            Reel::Replay(_) => None,
        }
    }

    /// The player, once a replay is over (`None` unless replaying).
    pub fn take_player(&self) -> Option<Player> {
        let reel = self.0.as_ref()?;
        let mut reel = reel.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *reel {
            Reel::Replay(p) => Some(Player {
                rec: p.rec.clone(),
                live: p.live,
                llm: p.llm,
                http: p.http,
                wall: p.wall,
                monotonic: p.monotonic,
                divergence: p.divergence.take(),
                went_live: p.went_live,
                output: std::mem::take(&mut p.output),
            }),
            Reel::Record(_) => None,
        }
    }
}

impl Recorder {
    /// Count `bytes` more; false (and the recording marked truncated) past the limit.
    fn add(&mut self, bytes: usize) -> bool {
        if self.rec.truncated {
            return false;
        }
        self.rec.bytes += bytes;
        self.check()
    }

    fn check(&mut self) -> bool {
        if self.rec.bytes > self.max_bytes {
            self.rec.truncated = true;
        }
        !self.rec.truncated
    }
}

impl Player {
    /// Note the first divergence; a live replay lets the call go out instead.
    fn diverged<T>(&mut self, call: String, recorded: serde_json::Value, new: &impl Serialize) -> Crossing<T> {
        if self.live {
            self.went_live += 1;
            return Crossing::Live(None);
        }
        if self.divergence.is_none() {
            self.divergence = Some(Divergence { call, recorded, new: json(new) });
        }
        Crossing::Diverged
    }
}

/// `value` as JSON (`null` if it cannot be).
fn json(value: impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The bytes `event` takes in the recording's JSON form. Text (nearly every
/// event) is counted by arithmetic, the rest by serialising into a counter:
/// this runs twice for each token a relaying agent streams.
fn event_len(event: &Event) -> usize {
    match event {
        // `{"Text":"…"}`, `{"Reasoning":"…"}`
        Event::Text(t) => 11 + escaped_len(t),
        Event::Reasoning(t) => 16 + escaped_len(t),
        other => json_len(other),
    }
}

/// The length of `text` as the inside of a JSON string, as `serde_json` escapes it.
fn escaped_len(text: &str) -> usize {
    let extra: usize = text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    text.len() + extra
}

/// The length of `value` as JSON, counted without building the text.
fn json_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_or(0, |()| count.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{FinishReason, Message, Role, RunRequest};

    fn header() -> Recording {
        let request = RunRequest {
            run_id: "r".into(),
            agent_id: "a".into(),
            session_key: "k".into(),
            messages: vec![],
            tools: vec![],
            user: None,
            params: "{}".into(),
            model: None,
        };
        Recording {
            format: crate::tape::FORMAT,
            id: "r".into(),
            agent: "a".into(),
            digest: "d".into(),
            world: "w".into(),
            owner: "o".into(),
            started_at_ms: 0,
            request,
            persistent: false,
            history: vec![],
            state: Default::default(),
            config: Default::default(),
            seed: "00".repeat(32),
            clocks: Default::default(),
            llm: vec![],
            http: vec![],
            memo: vec![],
            output: vec![],
            state_changes: Default::default(),
            outcome: "ok".into(),
            error: None,
            truncated: false,
            bytes: 0,
        }
    }

    fn ask(text: &str) -> LlmRequest {
        LlmRequest { messages: vec![Message::text(Role::User, text)], tools: vec![], params: "{}".into(), model: None }
    }

    #[test]
    fn what_is_recorded_is_answered_in_order_and_the_first_other_call_diverges() {
        let tape = Tape::record(header(), 1 << 20);
        let Crossing::Live(Some(i)) = tape.llm_start(ask("one")) else { panic!("recording goes live") };
        tape.llm_event(i, &Event::Text("1".into()));
        tape.llm_event(i, &Event::Finish(FinishReason::Stop));
        assert_eq!(tape.config("k", || Some("v".into())), Some("v".into()));
        let wall = tape.clock(true, || 42);
        let rec = Arc::new(tape.take_recording().unwrap());
        assert_eq!((rec.llm[0].events.len(), wall, rec.clocks.wall.clone()), (2, 42, vec![42]));

        let replay = Tape::replay(rec.clone(), false);
        assert!(matches!(replay.llm_start(ask("one")), Crossing::Answered(c) if c.events.len() == 2));
        assert_eq!(replay.config("k", || panic!("answered from the tape")), Some("v".into()));
        assert_eq!(replay.clock(true, || panic!("answered from the tape")), 42);
        assert!(replay.clock(true, || 0) > 42, "past the recorded readings time still moves on");
        assert!(matches!(replay.llm_start(ask("two")), Crossing::Diverged));
        let player = replay.take_player().unwrap();
        let d = player.divergence.unwrap();
        assert_eq!((d.call.as_str(), &d.recorded), ("llm #2", &serde_json::Value::Null));
        assert_eq!(d.new["messages"][0]["content"], "two");

        let live = Tape::replay(rec, true);
        live.llm_start(ask("one"));
        assert!(matches!(live.llm_start(ask("other")), Crossing::Live(None)), "--live lets it go out");
        assert!(live.take_player().unwrap().divergence.is_none());
    }

    #[test]
    fn a_recording_stops_at_its_byte_limit_and_says_so() {
        let tape = Tape::record(header(), 2000);
        let Crossing::Live(Some(i)) = tape.llm_start(ask("q")) else { panic!() };
        for _ in 0..100 {
            tape.llm_event(i, &Event::Text("0123456789".into()));
        }
        let rec = tape.take_recording().unwrap();
        assert!(rec.truncated);
        assert!(rec.llm[0].events.len() < 100, "nothing is kept past the limit");
        assert!(rec.bytes <= 2000 + 64, "{}", rec.bytes);
        assert!(matches!(tape.llm_start(ask("later")), Crossing::Live(None)), "the run goes on, unrecorded");
    }

    #[test]
    fn event_sizes_are_counted_as_their_json_length() {
        let texts =
            ["", "tok0 ", "quote \" and \\ slash", "lines\n\r\ttab \u{8}\u{c} \u{1} \u{1f}", "déjà vu ✓ \u{7f}"];
        for t in texts {
            for event in [Event::Text(t.into()), Event::Reasoning(t.into())] {
                assert_eq!(event_len(&event), serde_json::to_string(&event).unwrap().len(), "{event:?}");
            }
        }
        let finish = Event::Finish(FinishReason::Stop);
        assert_eq!(event_len(&finish), serde_json::to_string(&finish).unwrap().len());
    }

    #[test]
    fn a_taken_recording_is_moved_out_and_nothing_more_is_kept() {
        let tape = Tape::record(header(), 1 << 20);
        let Crossing::Live(Some(i)) = tape.llm_start(ask("q")) else { panic!("recording goes live") };
        tape.llm_event(i, &Event::Text("a".into()));
        tape.output(&Event::Text("a".into()));
        let rec = tape.take_recording().unwrap();
        assert_eq!((rec.id.as_str(), rec.llm[0].events.len(), rec.output.len(), rec.truncated), ("r", 1, 1, false));
        tape.output(&Event::Text("late".into()));
        assert!(matches!(tape.llm_start(ask("late")), Crossing::Live(None)), "nothing is recorded after the take");
        let after = tape.take_recording().unwrap();
        assert!(after.output.is_empty() && after.llm.is_empty());
    }

    #[test]
    fn an_off_tape_is_not_consulted() {
        let tape = Tape::default();
        assert!(!tape.is_on() && tape.seed().is_none() && tape.take_recording().is_none());
        assert_eq!(tape.clock(true, || 7), 7);
        assert!(matches!(tape.llm_start(ask("q")), Crossing::Live(None)));
    }
}
