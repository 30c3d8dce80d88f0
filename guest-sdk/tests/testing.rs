//! The fake host of `wasmclaw_sdk::testing`, driven the way an agent author would.

use serde::{Deserialize, Serialize};
use wasmclaw_sdk::llm::{self, CompletionRequest, LlmError};
use wasmclaw_sdk::testing::TestHost;
use wasmclaw_sdk::{
    Agent, AgentError, AgentInfo, EmitError, Event, FinishReason, Message, Output, RunRequest, ToolCallDelta, Usage,
    config, log, session,
};

#[derive(Default, Serialize, Deserialize, Debug, PartialEq)]
struct Notes {
    turns: u32,
}

#[derive(Deserialize, Default)]
struct Params {
    #[serde(default)]
    draft_only: bool,
}

/// Drafts an answer with the model, has the model review it, keeps count.
#[derive(Default)]
struct Reviewer;

impl Agent for Reviewer {
    fn info() -> AgentInfo {
        AgentInfo::new("reviewer", "0.1.0", "Drafts, then reviews")
    }

    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
        let params: Params = req.params_as()?;
        let mut notes: Notes = session::get_json("notes")?.unwrap_or_default();
        notes.turns += 1;
        session::set_json("notes", &notes)?;
        let system = config::get("style").unwrap_or_else(|| "plain".into());
        let mut messages = vec![Message::system(system)];
        messages.extend(session::history());
        messages.push(Message::user(req.last_user_text().unwrap_or_default()));
        log::debug!("asking the model with {} messages", messages.len());
        let draft = llm::complete_text(&CompletionRequest::new(messages))?;
        if params.draft_only {
            out.text(&draft.text)?;
            return Ok(());
        }
        let review = llm::complete_text(&CompletionRequest::new(vec![
            Message::system("review"),
            Message::user(draft.text.clone()),
        ]))?;
        log::info!("draft {} bytes, review {} bytes", draft.text.len(), review.text.len());
        out.text(&review.text)?;
        out.llm_usage()?;
        Ok(())
    }
}

#[test]
fn scripted_model_config_state_and_history() {
    let mut host = TestHost::new()
        .config("style", "terse")
        .llm_reply_with_usage("first draft", 10, 2)
        .llm_reply_with_usage("better draft", 5, 3);
    let run = host.run::<Reviewer>("write something").ok();
    assert_eq!(run.text(), "better draft");
    // Usage of both model calls, summed.
    assert_eq!(run.usage(), Some(Usage { prompt_tokens: 15, completion_tokens: 5 }));
    assert_eq!(run.llm_requests.len(), 2);
    assert_eq!(run.llm_requests[0].messages[0], Message::system("terse"));
    assert_eq!(run.llm_requests[1].messages[1], Message::user("first draft"));
    assert!(run.logged(log::Level::Info, "draft 11 bytes"));
    assert_eq!(run.state_json::<Notes>("notes"), Some(Notes { turns: 1 }));

    // The session goes on: the turn and the reply joined the history.
    assert_eq!(host.session(), [Message::user("write something"), Message::assistant("better draft")]);
    let mut req = host.request("again");
    req.params = r#"{"draft_only": true}"#.into();
    let host = &mut host.llm_reply("short");
    let run = host.run_request::<Reviewer>(req).ok();
    assert_eq!(run.text(), "short");
    assert_eq!(run.state_json::<Notes>("notes"), Some(Notes { turns: 2 }));
    // History, then the new message, went to the model.
    assert_eq!(run.llm_requests[0].messages.len(), 4);
}

#[test]
fn a_failed_run_keeps_nothing_and_model_errors_convert_with_question_mark() {
    let mut host = TestHost::new().state_json("notes", &Notes { turns: 7 }).llm_error(LlmError::RateLimited(Some(3)));
    let run = host.run::<Reviewer>("hi");
    assert!(matches!(run.result, Err(AgentError::Unavailable(ref m)) if m.contains("retry after 3s")), "{run:?}");
    // The write of turn 8 is not kept, and the turn is not in the history.
    assert_eq!(serde_json::from_slice::<Notes>(host.stored("notes").unwrap()).unwrap(), Notes { turns: 7 });
    assert!(host.session().is_empty());

    // A stream that breaks off mid-answer is an error too.
    let mut host = TestHost::new().llm_broken_stream([Event::Text("par".into())], LlmError::Timeout("slow".into()));
    assert!(host.run::<Reviewer>("hi").result.is_err());
    // No scripted answer left: the model is "unavailable", and says how to script one.
    let run = TestHost::new().run::<Reviewer>("hi");
    assert!(matches!(run.result, Err(AgentError::Unavailable(ref m)) if m.contains("llm_reply")));
}

#[test]
fn bad_params_and_bad_state_are_errors_with_names() {
    let mut host = TestHost::new().llm_reply("x");
    let mut req = host.request("hi");
    req.params = r#"{"draft_only": "yes"}"#.into();
    assert!(
        matches!(host.run_request::<Reviewer>(req).result, Err(AgentError::InvalidRequest(m)) if m.starts_with("params:"))
    );
    let run = TestHost::new().state("notes", "not json").run::<Reviewer>("hi");
    assert!(matches!(run.result, Err(AgentError::Failed(ref m)) if m.contains("\"notes\"")), "{run:?}");
}

/// Emits a tool call, then text until the client goes away.
#[derive(Default)]
struct Chatty;

impl Agent for Chatty {
    fn info() -> AgentInfo {
        AgentInfo::new("chatty", "0.1.0", "Talks until stopped")
    }

    fn run(&self, _req: RunRequest, out: &Output) -> Result<(), AgentError> {
        out.tool_call(0, "call-1", "lookup", r#"{"q":1}"#)?;
        out.finish(FinishReason::ToolCalls)?;
        if session::set("big", &vec![0u8; 70_000]).is_ok() {
            return Err(AgentError::Failed("the value limit must hold".into()));
        }
        loop {
            if let Err(EmitError::Closed) = out.text("more ") {
                log::warn!("client gone");
                return Ok(());
            }
        }
    }
}

#[test]
fn tool_calls_limits_and_a_closed_output_are_observable() {
    let run = TestHost::new().close_output_after(5).run::<Chatty>("go").ok();
    assert_eq!(run.tool_calls().len(), 1);
    assert_eq!((run.tool_calls()[0].name.as_str(), run.tool_calls()[0].arguments.as_str()), ("lookup", r#"{"q":1}"#));
    assert_eq!(run.finish(), Some(FinishReason::ToolCalls));
    assert_eq!(run.text(), "more more more ");
    assert!(run.logged(log::Level::Warn, "client gone"));
    assert_eq!(
        run.events[0],
        Event::ToolCall(ToolCallDelta {
            index: 0,
            id: Some("call-1".into()),
            name: Some("lookup".into()),
            arguments: r#"{"q":1}"#.into()
        })
    );
}

#[test]
fn calls_outside_a_test_host_explain_themselves() {
    let panic = std::panic::catch_unwind(|| config::get("x")).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("testing::TestHost"), "{message}");
    // Logging never fails, even outside a run.
    log::info!("fine");
}

/// Says what images it was shown.
#[derive(Default)]
struct Looker;

impl Agent for Looker {
    fn info() -> AgentInfo {
        AgentInfo::new("looker", "0.2.0", "Describes the images it gets")
    }

    fn run(&self, req: RunRequest, out: &Output) -> Result<(), AgentError> {
        let message = req.last_user_message().ok_or_else(|| AgentError::InvalidRequest("no message".into()))?;
        for image in message.images() {
            out.text(format!("{} ({}); ", image.url, image.detail.as_deref().unwrap_or("auto")))?;
        }
        out.text(message.text())?;
        Ok(())
    }
}

#[test]
fn an_agent_reads_image_parts_and_the_session_keeps_their_text() {
    use wasmclaw_sdk::{ContentPart, Image};
    let mut host = TestHost::new();
    let parts = vec![
        ContentPart::text("what"),
        ContentPart::Image(Image { url: "https://x.test/a.png".into(), detail: Some("high".into()) }),
        ContentPart::image("data:image/png;base64,AA"),
        ContentPart::text("are these?"),
    ];
    let run = host.run_parts::<Looker>(parts).ok();
    assert_eq!(run.text(), "https://x.test/a.png (high); data:image/png;base64,AA (auto); what\nare these?");
    // Like the gateway's transcript, the session keeps the text of the turn.
    assert_eq!(host.session()[0], Message::user("what\nare these?"));
}
