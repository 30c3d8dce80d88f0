//! Idle WebSocket connections: memory per connection held by the gateway
//! (after the full handshake) against a bare axum WebSocket server.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::process::ServerProcess;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(base: &str, handshake: bool) -> anyhow::Result<Socket> {
    let (mut socket, _) = tokio_tungstenite::connect_async(base.replace("http://", "ws://")).await?;
    socket.next().await; // challenge (or the baseline's greeting)
    if handshake {
        let connect = json!({"type": "req", "id": "1", "method": "connect", "params": {
            "minProtocol": 4, "maxProtocol": 4, "auth": {"token": crate::TOKEN},
            "client": {"id": "cli", "version": "bench", "platform": "linux", "mode": "cli"}}});
        socket.send(Message::Text(connect.to_string().into())).await?;
        let hello = socket.next().await.ok_or_else(|| anyhow::anyhow!("no hello"))??;
        anyhow::ensure!(hello.to_text()?.contains("hello-ok"), "connect failed: {hello}");
    }
    Ok(socket)
}

async fn per_connection(server: &ServerProcess, n: usize, handshake: bool) -> anyhow::Result<(u64, u64)> {
    drop(open(&server.base, handshake).await?); // warm up the code paths
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = server.rss_kib()?;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(open(&server.base, handshake).await?);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = server.rss_kib()?;
    drop(sockets);
    Ok((before, after))
}

/// Run the scenario and print its table.
pub async fn run(connections: usize) -> anyhow::Result<Value> {
    let baseline = ServerProcess::baseline("ws")?;
    let (b0, b1) = per_connection(&baseline, connections, false).await?;
    drop(baseline);
    let gateway = ServerProcess::wasmclaw("{ agents: { entries: { main: { plugin: \"echo\" } } } }")?;
    let (g0, g1) = per_connection(&gateway, connections, true).await?;
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / connections as f64;
    let (base_per, gw_per) = (per(b0, b1), per(g0, g1));
    println!("\nidle WebSocket connections ({connections} open, RSS from /proc)");
    println!("  {:<34} {:>11} {:>11} {:>14}", "server", "RSS before", "RSS after", "KiB/connection");
    println!("  {:<34} {:>8} KiB {:>8} KiB {:>14.1}", "bare axum WebSocket (baseline)", b0, b1, base_per);
    println!("  {:<34} {:>8} KiB {:>8} KiB {:>14.1}", "wasmclaw (after connect/hello)", g0, g1, gw_per);
    println!("  wasmclaw / baseline: {:.2}×", gw_per / base_per.max(0.001));
    Ok(json!({
        "connections": connections,
        "baseline_kib_per_connection": base_per,
        "wasmclaw_kib_per_connection": gw_per,
        "baseline_rss_kib": [b0, b1],
        "wasmclaw_rss_kib": [g0, g1],
    }))
}
