//! The `mock-provider` binary, run as a user runs it, driven over real HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// The binary on a free port, killed when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-provider"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("mock-provider runs");
        // The first line names the address; it is printed once the port is bound.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("mock provider listening on ").unwrap_or_else(|| panic!("{line:?}"));
        let addr = url.trim_start_matches("http://").trim_end_matches("/v1").to_string();
        Self { child, addr }
    }

    /// POST a non-streaming chat completion; the status and the JSON body.
    fn complete(&self, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let mut tcp = TcpStream::connect(&self.addr).unwrap();
        write!(
            tcp,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "note": {"type": "string"}},
        "required": ["city", "days"]}}}])
}

fn message(body: &Value) -> &Value {
    &body["choices"][0]["message"]
}

#[test]
fn tool_calls_mode_calls_the_first_tool_with_schema_arguments_then_repeats_the_result() {
    let mock = Served::start(&["--tool-calls"]);
    let user = json!({"role": "user", "content": "weather?"});
    let (status, first) = mock.complete(&json!({"model": "m", "messages": [user], "tools": tools()}));
    assert_eq!(status, 200);
    assert_eq!(first["choices"][0]["finish_reason"], "tool_calls");
    let call = &message(&first)["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "sample", "days": 1}), "required properties only, typed");

    let result = json!({"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"});
    let assistant = json!({"role": "assistant", "content": null, "tool_calls": [call]});
    let (_, second) = mock.complete(&json!({"model": "m", "messages": [user, assistant, result], "tools": tools()}));
    assert_eq!(message(&second)["content"], "tool said: sunny, 21 C");
    assert_eq!(second["choices"][0]["finish_reason"], "stop");

    // No tools offered: it echoes, as without the flag.
    let (_, plain) = mock.complete(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(message(&plain)["content"], "You said: hi");
}

#[test]
fn a_script_is_replayed_in_order_then_the_flags_answer() {
    let dir = std::env::temp_dir().join(format!("mock-provider-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("replies.json");
    std::fs::write(
        &script,
        r#"[{"tool_calls": [{"id": "c7", "name": "lookup", "arguments": {"q": "rust"}}]},
            "first answer",
            {"status": 503, "message": "overloaded"}]"#,
    )
    .unwrap();
    let mock = Served::start(&["--tool-calls", "--script", script.to_str().unwrap()]);
    let ask = json!({"model": "m", "messages": [{"role": "user", "content": "go"}], "tools": tools()});
    let (_, one) = mock.complete(&ask);
    let call = &message(&one)["tool_calls"][0];
    assert_eq!((call["id"].as_str(), call["function"]["name"].as_str()), (Some("c7"), Some("lookup")));
    assert_eq!(call["function"]["arguments"], r#"{"q":"rust"}"#);
    assert_eq!(message(&mock.complete(&ask).1)["content"], "first answer");
    let (status, error) = mock.complete(&ask);
    assert_eq!((status, error["error"]["message"].as_str()), (503, Some("overloaded")));
    // The script is spent: `--tool-calls` answers from now on, every time.
    for _ in 0..2 {
        assert_eq!(message(&mock.complete(&ask).1)["tool_calls"][0]["function"]["name"], "get_weather");
    }

    std::fs::write(&script, r#"[{"nope": 1}]"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mock-provider")).args(["--script", script.to_str().unwrap()]).output();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--script") && stderr.contains("reply 0: expected"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
