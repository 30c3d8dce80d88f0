//! The bare baselines: what the same bytes cost without wasmclaw.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Run baseline server `mode` until killed, printing its address first.
pub async fn serve(mode: &str) -> anyhow::Result<()> {
    let app = match mode {
        // Holds WebSocket connections open and idle, as the gateway does after hello.
        "ws" => Router::new().route(
            "/",
            get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    let _ = socket.send(Message::Text("{}".into())).await;
                    while let Some(Ok(_)) = socket.recv().await {}
                })
            }),
        ),
        // The echo agent's replies, byte for byte in shape, built natively.
        "http" => Router::new().route("/v1/chat/completions", post(echo)),
        other => anyhow::bail!("unknown baseline {other:?}"),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    // Same socket options as the gateway, so only the work differs.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

/// What `/v1/chat/completions` with the echo agent does, minus WebAssembly:
/// parse the request, split the last user message into words, answer as JSON
/// or as one SSE chunk per word. A body with `hold: true` streams the role
/// chunk and then stays silent, like a run waiting on a slow model.
async fn echo(body: axum::body::Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (axum::http::StatusCode::BAD_REQUEST, "bad json").into_response();
    };
    let text = request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let model = request["model"].as_str().unwrap_or("openclaw").to_string();
    let id = format!("chatcmpl-{}", uuid_like());
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    if request["stream"] != true {
        return axum::Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    let hold = request["hold"] == true;
    if !hold {
        events.extend(text.split_inclusive(' ').map(|w| chunk(json!({"content": w}), Value::Null)));
        events.push(chunk(json!({}), json!("stop")));
        events.push("[DONE]".into());
    }
    let stream = futures::stream::iter(events.into_iter().map(|d| Ok::<_, Infallible>(Event::default().data(d))));
    let stream: futures::stream::BoxStream<'static, Result<Event, Infallible>> =
        if hold { Box::pin(futures::StreamExt::chain(stream, futures::stream::pending())) } else { Box::pin(stream) };
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{:032x}", NEXT.fetch_add(1, Ordering::Relaxed))
}
