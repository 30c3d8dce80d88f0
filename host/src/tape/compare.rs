//! How a replay compares with its recording: `identical`, `changed` (with
//! both outputs and a line diff), `diverged` (the first call the recording
//! could not answer) or `failed` (the replay trapped or errored).

use serde::Serialize;

use super::reel::Divergence;
use crate::chat::{Event, ToolActivity};

/// A replay's verdict, as the CLI and `POST /admin/replay` report it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub run_id: String,
    /// `identical`, `changed`, `diverged` or `failed`.
    pub outcome: &'static str,
    /// The recorded output as text (see [`render`]).
    pub recorded: String,
    /// The replay's output as text.
    pub replayed: String,
    /// Line diff, recorded → replayed: `-` removed, `+` added, ` ` kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Calls the recording could not answer that went out for real (`live`).
    #[serde(skip_serializing_if = "is_zero")]
    pub went_live: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Judge a replay: `error` is how it ended if it did not succeed, and
/// `recorded_error` how the recorded run ended.
pub fn judge(
    run_id: &str,
    recorded: &[Event],
    recorded_error: Option<&str>,
    replayed: &[Event],
    divergence: Option<Divergence>,
    error: Option<String>,
) -> Verdict {
    let mut verdict = Verdict {
        run_id: run_id.to_string(),
        outcome: "identical",
        recorded: with_error(render(recorded), recorded_error),
        replayed: render(replayed),
        diff: vec![],
        divergence: None,
        error: None,
        went_live: 0,
    };
    // A divergence explains whatever happened after it, a failure included.
    if divergence.is_some() {
        verdict.outcome = "diverged";
        verdict.divergence = divergence;
        verdict.error = error;
        return verdict;
    }
    if error.is_some() && error.as_deref() != recorded_error {
        verdict.outcome = "failed";
        verdict.error = error;
        return verdict;
    }
    // How a run ended is part of its output: a recorded failure that now succeeds is a change.
    verdict.replayed = with_error(std::mem::take(&mut verdict.replayed), error.as_deref());
    if verdict.recorded != verdict.replayed {
        verdict.outcome = "changed";
        verdict.diff = line_diff(&verdict.recorded, &verdict.replayed);
    }
    verdict
}

/// A run's output as text: the reply text as streamed, reasoning, tool
/// calls and server tools each on lines of their own.
pub fn render(events: &[Event]) -> String {
    let mut out = String::new();
    let line = |out: &mut String, text: String| {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&text);
        out.push('\n');
    };
    for event in events {
        match event {
            Event::Text(text) => out.push_str(text),
            Event::Reasoning(text) => line(&mut out, format!("[reasoning] {text}")),
            Event::ToolCall(d) => {
                line(&mut out, format!("[tool call {}] {} {}", d.index, d.name.as_deref().unwrap_or(""), d.arguments))
            }
            Event::ServerTool(ToolActivity::Called(c)) => {
                line(&mut out, format!("[server tool {}] {} {}", c.id, c.name, c.arguments))
            }
            Event::ServerTool(ToolActivity::Returned(r)) => {
                let error = if r.is_error { " error" } else { "" };
                line(&mut out, format!("[server tool {} returned{error}] {}", r.call_id, r.output))
            }
            Event::Finish(reason) => line(&mut out, format!("[finish] {}", crate::chat::finish_reason_name(*reason))),
            Event::Usage(_) => {}
        }
    }
    out
}

/// `text` with the run's error as its last line, if it failed.
fn with_error(mut text: String, error: Option<&str>) -> String {
    if let Some(e) = error {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("[error] {e}\n"));
    }
    text
}

/// Most lines a diff compares (the LCS table is lines²): past it, both sides are shown whole.
const MAX_DIFF_LINES: usize = 2000;

/// A line diff by longest common subsequence.
pub fn line_diff(a: &str, b: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    if a.len() > MAX_DIFF_LINES || b.len() > MAX_DIFF_LINES {
        let removed = a.iter().map(|l| format!("-{l}"));
        return removed.chain(b.iter().map(|l| format!("+{l}"))).collect();
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!(" {}", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("-{}", a[i]));
            i += 1;
        } else {
            out.push(format!("+{}", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::FinishReason;

    fn text(t: &str) -> Vec<Event> {
        vec![Event::Text(t.into()), Event::Finish(FinishReason::Stop)]
    }

    #[test]
    fn the_same_output_is_identical_however_it_was_chunked() {
        let chunked = vec![Event::Text("hel".into()), Event::Text("lo".into()), Event::Finish(FinishReason::Stop)];
        let v = judge("r", &text("hello"), None, &chunked, None, None);
        assert_eq!(v.outcome, "identical");
        assert!(v.diff.is_empty());
    }

    #[test]
    fn a_different_output_is_changed_with_a_line_diff() {
        let v = judge("r", &text("one\ntwo\nthree"), None, &text("one\n2\nthree"), None, None);
        assert_eq!(v.outcome, "changed");
        assert_eq!(v.diff, vec![" one", "-two", "+2", " three", " [finish] stop"]);
        assert_eq!(v.recorded, "one\ntwo\nthree\n[finish] stop\n");
    }

    #[test]
    fn a_divergence_wins_over_the_failure_it_caused() {
        let d = Divergence { call: "llm #1".into(), recorded: serde_json::json!(1), new: serde_json::json!(2) };
        let v = judge("r", &text("a"), None, &[], Some(d.clone()), Some("model failed".into()));
        assert_eq!((v.outcome, v.divergence), ("diverged", Some(d)));
    }

    #[test]
    fn an_error_the_recording_did_not_have_is_failed() {
        let v = judge("r", &text("a"), None, &[], None, Some("trapped".into()));
        assert_eq!((v.outcome, v.error.as_deref()), ("failed", Some("trapped")));
        let same = judge("r", &[], Some("trapped"), &[], None, Some("trapped".into()));
        assert_eq!(same.outcome, "identical", "a run that failed the same way again");
        let fixed = judge("r", &[], Some("model refused"), &[], None, None);
        assert_eq!(fixed.outcome, "changed", "a recorded failure that now succeeds, with no output either time");
        assert_eq!(fixed.diff, vec!["-[error] model refused"]);
    }

    #[test]
    fn line_diff_of_disjoint_and_empty_sides() {
        assert_eq!(line_diff("", "x"), vec!["+x"]);
        assert_eq!(line_diff("a\nb", ""), vec!["-a", "-b"]);
        assert_eq!(line_diff("a\nb\nc", "a\nc"), vec![" a", "-b", " c"]);
    }
}
