//! The open-loop client's sender: one prepared POST over hyper's bare
//! HTTP/1.1 connections, reused while idle. The load client shares the two
//! cores with the server under test; reqwest's pooling and per-request
//! building cost it about as much CPU as the gateway itself at ~8k req/s,
//! which saturated the machine and measured the client, not the server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

/// Sends the same POST again and again over kept-alive connections.
pub struct Poster {
    addr: SocketAddr,
    path: String,
    host: String,
    bearer: Option<String>,
    body: Bytes,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Poster {
    /// POST `body` (JSON) to `url` (`http://IP:PORT/path`), with a bearer token if given.
    pub fn new(url: &str, body: &serde_json::Value, bearer: Option<&str>) -> anyhow::Result<Arc<Self>> {
        let uri: hyper::Uri = url.parse()?;
        let authority = uri.authority().ok_or_else(|| anyhow::anyhow!("no host in {url}"))?.as_str().to_string();
        Ok(Arc::new(Self {
            addr: authority.parse()?,
            path: uri.path().to_string(),
            host: authority,
            bearer: bearer.map(|t| format!("Bearer {t}")),
            body: Bytes::from(body.to_string()),
            idle: Mutex::default(),
        }))
    }

    /// Send once and read the response to its end; `Err` unless 2xx.
    pub async fn send(self: Arc<Self>) -> anyhow::Result<()> {
        let mut conn = loop {
            let idle = self.idle.lock().unwrap().pop();
            match idle {
                // A server may close a kept-alive connection at any time;
                // clients then use another one, as reqwest and browsers do.
                Some(mut conn) => match conn.ready().await {
                    Ok(()) => break conn,
                    Err(_) => continue,
                },
                None => break self.connect().await?,
            }
        };
        let mut request = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(bearer) = &self.bearer {
            request = request.header(hyper::header::AUTHORIZATION, bearer);
        }
        let response = conn.send_request(request.body(Full::new(self.body.clone()))?).await?;
        let status = response.status();
        response.into_body().collect().await?;
        anyhow::ensure!(status.is_success(), "status {status}");
        if conn.is_ready() {
            self.idle.lock().unwrap().push(conn);
        }
        Ok(())
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }
}
