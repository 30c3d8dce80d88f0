//! `wasmclaw:agent@0.2.2`: the generated bindings, their conversions to the
//! host's own types, and the host side of every import. The imports it shares
//! with 0.1 come from `host_imports!`; what differs is content: a 0.2 message carries its parts, which
//! map one to one onto `chat::ContentPart`. 0.2.1 added `memo`, 0.2.2 `http`;
//! components built for 0.2.0 and 0.2.1 link against these bindings unchanged
//! (the linker matches semver-compatible names, and they do not import what came later).

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::chat;
use crate::providers::CompletionStream;
use crate::runtime::capabilities::RunState;
use crate::runtime::capabilities::http::{FetchError, FetchRequest};
use crate::runtime::capabilities::llm::{CompletionRequest, LlmFailure};
use crate::runtime::capabilities::output::OutputStop;

wasmtime::component::bindgen!({
    path: "../wit/v0.2",
    world: "agent",
    imports: {
        // As in 0.1: async where the guest waits on a client or a network,
        // trappable everywhere so a misbehaving guest can be stopped.
        "wasmclaw:agent/output.emit": async | trappable,
        "wasmclaw:agent/llm.complete": async | trappable,
        "wasmclaw:agent/llm.[method]completion.next": async | trappable,
        // As in 0.1.2: reports share the output stream and its backpressure.
        "wasmclaw:agent/tool-activity.called": async | trappable,
        "wasmclaw:agent/tool-activity.returned": async | trappable,
        // 0.2.2: a network wait, like `llm.complete`.
        "wasmclaw:agent/http.fetch": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "wasmclaw:agent/llm.completion": crate::providers::CompletionStream,
    },
});

// `self::` because the generated module shares the crate's name.
use self::wasmclaw::agent::{config, llm, log, memo, output, session, tool_activity, types};
// Not `http`: that is the crate's name too.
use self::wasmclaw::agent::http as guest_http;

/// The world's name, as logs and errors show it.
pub const WORLD: &str = "wasmclaw:agent@0.2.2";

/// Link every import of this world.
pub fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    Agent::add_to_linker::<RunState, HasSelf<RunState>>(linker, |s| s)
}

host_imports!();

impl memo::Host for RunState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.memo.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> wasmtime::Result<Result<(), String>> {
        Ok(self.memo.set(key, value, ttl_ms))
    }

    fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        self.memo.remove(&key);
        Ok(())
    }
}

impl guest_http::Host for RunState {
    async fn fetch(
        &mut self,
        req: guest_http::Request,
    ) -> wasmtime::Result<Result<guest_http::Response, guest_http::HttpError>> {
        let req = FetchRequest { method: req.method, url: req.url, headers: req.headers, body: req.body };
        Ok(match self.http.fetch(req).await {
            Ok(r) => Ok(guest_http::Response { status: r.status, headers: r.headers, body: r.body }),
            Err(e) => Err(match e {
                FetchError::Denied => guest_http::HttpError::Denied,
                FetchError::InternalAddress => guest_http::HttpError::InternalAddress,
                FetchError::Timeout => guest_http::HttpError::Timeout,
                FetchError::TooLarge => guest_http::HttpError::TooLarge,
                FetchError::Failed(message) => guest_http::HttpError::Failed(message),
            }),
        })
    }
}

impl From<types::ContentPart> for chat::ContentPart {
    fn from(p: types::ContentPart) -> Self {
        match p {
            types::ContentPart::Text(t) => Self::Text(t),
            types::ContentPart::Image(i) => Self::Image { url: i.url, detail: i.detail },
            types::ContentPart::Audio(a) => Self::Audio { data: a.data, format: a.format },
            types::ContentPart::File(f) => Self::File { file_id: f.id, file_data: f.data, filename: f.filename },
        }
    }
}

impl From<chat::ContentPart> for types::ContentPart {
    fn from(p: chat::ContentPart) -> Self {
        match p {
            chat::ContentPart::Text(t) => Self::Text(t),
            chat::ContentPart::Image { url, detail } => Self::Image(types::Image { url, detail }),
            chat::ContentPart::Audio { data, format } => Self::Audio(types::Audio { data, format }),
            chat::ContentPart::File { file_id, file_data, filename } => {
                Self::File(types::File { id: file_id, data: file_data, filename })
            }
        }
    }
}

impl From<types::Message> for chat::Message {
    fn from(m: types::Message) -> Self {
        Self {
            name: m.name,
            tool_call_id: m.tool_call_id,
            tool_calls: m.tool_calls.into_iter().map(Into::into).collect(),
            ..Self::with_parts(m.role.into(), m.content.into_iter().map(Into::into).collect())
        }
    }
}

impl From<chat::Message> for types::Message {
    fn from(m: chat::Message) -> Self {
        Self {
            role: m.role.into(),
            content: m.content_parts().into_iter().map(Into::into).collect(),
            name: m.name,
            tool_call_id: m.tool_call_id,
            tool_calls: m.tool_calls.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_survive_the_round_trip_and_text_is_one_part() {
        let parts = vec![
            chat::ContentPart::Text("what is this?".into()),
            chat::ContentPart::Image { url: "https://x.test/cat.png".into(), detail: Some("high".into()) },
            chat::ContentPart::Audio { data: "UklG".into(), format: "wav".into() },
            chat::ContentPart::File { file_id: Some("file-1".into()), file_data: None, filename: None },
        ];
        let message = chat::Message::with_parts(chat::Role::User, parts);
        assert_eq!(chat::Message::from(types::Message::from(message.clone())), message);

        let text = types::Message::from(chat::Message::text(chat::Role::User, "hi"));
        assert!(matches!(&text.content[..], [types::ContentPart::Text(t)] if t == "hi"));
        assert!(types::Message::from(chat::Message::text(chat::Role::Assistant, "")).content.is_empty());
        // Two text parts from a 0.2 guest read as one text, joined.
        let two = types::Message {
            content: vec![types::ContentPart::Text("a".into()), types::ContentPart::Text("b".into())],
            ..text
        };
        assert_eq!(chat::Message::from(two).content, "a\nb");
    }
}
