//! The echo agent: replies with the last user message, one `text` event per
//! word. Whitespace stays attached to the word before it, so the events
//! concatenate to exactly the input. In a session with history the reply
//! starts with `[turn N] `, N counting this turn. Parts other than text are
//! echoed as what the agent received, e.g. `[image https://… detail=high]`,
//! each on a line of its own, in order.

use wasmclaw_sdk::{Agent, AgentError, AgentInfo, ContentPart, Message, Output, RunRequest, export_agent, session};

#[derive(Default)]
struct Echo;

impl Agent for Echo {
    fn info() -> AgentInfo {
        AgentInfo::new("echo", env!("CARGO_PKG_VERSION"), "Replies with the last user message")
    }

    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
        let text = req.last_user_message().map(echo).unwrap_or_default();
        let earlier = session::user_turns();
        if earlier > 0 {
            out.text(format!("[turn {}] ", earlier + 1))?;
        }
        for piece in words(&text) {
            out.text(piece)?;
        }
        Ok(())
    }
}

/// The message's parts as text, joined with "\n": text as it is, other parts
/// described (a text-only message is its text, exactly).
fn echo(message: &Message) -> String {
    let lines: Vec<String> = message
        .content
        .iter()
        .map(|part| match part {
            ContentPart::Text(text) => text.clone(),
            ContentPart::Image(image) => match &image.detail {
                Some(detail) => format!("[image {} detail={detail}]", image.url),
                None => format!("[image {}]", image.url),
            },
            ContentPart::Audio(audio) => format!("[audio {} {} base64 bytes]", audio.format, audio.data.len()),
            ContentPart::File(file) => {
                let name = file.filename.as_deref().or(file.id.as_deref()).unwrap_or("unnamed");
                format!("[file {name}]")
            }
        })
        .collect();
    lines.join("\n")
}

/// Split after each run of whitespace: "a  b c" → ["a  ", "b ", "c"].
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let end = rest[word_end..].find(|c: char| !c.is_whitespace()).map_or(rest.len(), |i| word_end + i);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

export_agent!(Echo);
