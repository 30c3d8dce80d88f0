//! The bare baselines: what the same bytes cost without wasmclaw.

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::get;

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
        other => anyhow::bail!("unknown baseline {other:?}"),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
