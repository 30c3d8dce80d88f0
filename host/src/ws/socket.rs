//! The upgraded connection under the WebSocket library.
//!
//! tokio-tungstenite 0.29 fixes a stream's limits when the stream is made
//! (`WebSocketStream` has `get_config` but no `set_config`), and a stream
//! taken apart with `into_inner` loses whatever it had read ahead. So until
//! `connect` succeeds, [`Conn`] hands the library one frame at a time: the
//! library never holds bytes past the frame it returns, and after `connect`
//! the connection moves, at a frame boundary, to a new library stream with
//! the client's own limit. It also notes when the peer last took bytes, which
//! tells a client that reads slowly from one that stopped reading.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// The raw upgraded connection as hyper hands it over.
pub type Io = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

/// A protocol connection: the library over [`Conn`].
pub type Socket = WebSocketStream<Conn<Io>>;

/// How long a closing connection keeps reading (and dropping) what the
/// client still sends, so our close frame is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(2);

/// Library settings for a stream whose frames and messages may be at most `limit` bytes.
pub fn config(limit: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        // Measured (bench ws-idle): the 128 KiB defaults are nearly all of an
        // idle connection's memory. Larger frames still assemble.
        .read_buffer_size(8 << 10)
        .write_buffer_size(8 << 10)
        // The library checks a frame's announced length before it reserves
        // room for it, so nothing over `limit` is ever buffered.
        .max_frame_size(Some(limit))
        .max_message_size(Some(limit))
}

/// Wrap `conn` in a library stream with `limit`.
pub async fn open<T: AsyncRead + AsyncWrite + Unpin>(conn: T, limit: usize) -> WebSocketStream<T> {
    WebSocketStream::from_raw_socket(conn, Role::Server, Some(config(limit))).await
}

/// True when the library refused a frame or message over its limit.
pub fn too_big(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_))
}

/// Flush what the library holds, half-close, and drop the client's input for
/// a moment: a socket closed with unread input is reset, and a reset can
/// destroy the close frame we just sent. Reads in small pieces, keeps nothing.
pub async fn linger(mut ws: Socket) {
    let _ = tokio::time::timeout(LINGER, futures::SinkExt::flush(&mut ws)).await;
    let mut conn = ws.into_inner();
    // Often mid-frame (a refused frame's rest is what we drop): no handover here.
    conn.gate = None;
    let _ = tokio::time::timeout(LINGER, async {
        let _ = conn.shutdown().await;
        let mut sink = [0u8; 8 << 10];
        while let Ok(1..) = conn.read(&mut sink).await {}
    })
    .await;
}

/// When the client last took bytes from us.
#[derive(Debug)]
pub struct Progress {
    born: Instant,
    /// Milliseconds after `born` of the last write that moved bytes.
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self { born: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long no bytes have moved, counting from `since` at the earliest.
    pub fn stalled_for(&self, since: Instant) -> Duration {
        let last = self.born + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(last.max(since))
    }
}

/// An upgraded connection that, while gated, yields one WebSocket frame at a time.
pub struct Conn<T> {
    io: T,
    /// While gated: bytes of the current frame not yet handed out; 0 at a frame start.
    gate: Option<u64>,
    /// Bytes read from `io` and not yet handed out. While gated this is at
    /// most a frame header plus one read; once open it is served first.
    ahead: BytesMut,
    eof: bool,
    progress: Arc<Progress>,
}

/// What one read from the connection asks for while gated.
const GATED_READ: usize = 4 << 10;

impl<T> Conn<T> {
    /// A gated connection.
    pub fn new(io: T) -> Self {
        Self { io, gate: Some(0), ahead: BytesMut::new(), eof: false, progress: Arc::new(Progress::new()) }
    }

    /// When the client last took bytes, shared with whoever watches for stalls.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Stop gating. Call at a frame boundary: after the library returned a
    /// whole message, it holds nothing of the next frame.
    pub fn open_gate(&mut self) {
        debug_assert!(self.gate.is_none_or(|left| left == 0), "opened mid-frame");
        self.gate = None;
    }
}

/// Length of the frame starting at `b` (header included), once its length is readable.
fn frame_len(b: &[u8]) -> Option<u64> {
    let second = *b.get(1)?;
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let (extended, payload) = match second & 0x7f {
        126 => (2, u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?))),
        127 => (8, u64::from_be_bytes(b.get(2..10)?.try_into().ok()?)),
        n => (0, u64::from(n)),
    };
    Some((2 + extended + mask) as u64).map(|header| header.saturating_add(payload))
}

impl<T: AsyncRead + Unpin> AsyncRead for Conn<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // How much of what we hold may go to the library now.
            let deliverable = match &mut this.gate {
                None => this.ahead.len(),
                Some(left) => {
                    if *left == 0
                        && let Some(len) = frame_len(&this.ahead)
                    {
                        *left = len;
                    }
                    match *left {
                        // A header still incomplete: all of it once input ended.
                        0 if this.eof => this.ahead.len(),
                        0 => 0,
                        left => usize::try_from(left).unwrap_or(usize::MAX).min(this.ahead.len()),
                    }
                }
            };
            if deliverable > 0 {
                let n = deliverable.min(out.remaining());
                out.put_slice(&this.ahead[..n]);
                this.ahead.advance(n);
                if let Some(left) = &mut this.gate {
                    *left = left.saturating_sub(n as u64);
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.gate.is_none() {
                return Pin::new(&mut this.io).poll_read(cx, out);
            }
            let mut chunk = [0u8; GATED_READ];
            let mut buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                this.eof = true;
            } else {
                this.ahead.extend_from_slice(buf.filled());
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.io).poll_write(cx, buf));
        if matches!(written, Ok(1..)) {
            this.progress.touch();
        }
        Poll::Ready(written)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    #[test]
    fn frame_lengths_count_header_mask_and_payload() {
        assert_eq!(frame_len(&[0x81]), None);
        assert_eq!(frame_len(&[0x81, 0x85]), Some(2 + 4 + 5));
        assert_eq!(frame_len(&[0x81, 0x05]), Some(2 + 5));
        assert_eq!(frame_len(&[0x81, 0x80 | 126, 0x01]), None);
        assert_eq!(frame_len(&[0x81, 0x80 | 126, 0x01, 0x00]), Some(4 + 4 + 256));
        let huge = [0x81, 0x80 | 127, 0, 0, 0, 0, 0x04, 0, 0, 0];
        assert_eq!(frame_len(&huge), Some(10 + 4 + (64 << 20)));
        assert_eq!(frame_len(&[0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Some(u64::MAX));
    }

    /// A client that pipelines: everything it sends arrives in one read.
    #[tokio::test]
    async fn a_gated_connection_hands_over_exactly_at_the_end_of_a_message() {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let mut client =
            WebSocketStream::from_raw_socket(client_io, Role::Client, Some(WebSocketConfig::default())).await;
        client.feed(Message::Ping(vec![7].into())).await.unwrap();
        client.feed(Message::Text("connect".into())).await.unwrap();
        client.feed(Message::Text("x".repeat(100_000).into())).await.unwrap();
        client.flush().await.unwrap();

        let mut server = open(Conn::new(server_io), 64 << 10).await;
        assert!(matches!(server.next().await, Some(Ok(Message::Ping(_)))));
        assert_eq!(server.next().await.unwrap().unwrap(), Message::Text("connect".into()));
        server.flush().await.unwrap();
        let mut conn = server.into_inner();
        conn.open_gate();
        let mut server = open(conn, 1 << 20).await;
        let big = server.next().await.unwrap().unwrap();
        assert_eq!(big.len(), 100_000, "the frame behind connect survived the handover");
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_at_its_header() {
        let (mut client_io, server_io) = tokio::io::duplex(1 << 20);
        // A 64 MiB text frame's header and a little of its payload.
        client_io.write_all(&[0x81, 0x80 | 127, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0]).await.unwrap();
        client_io.write_all(&[b'x'; 1000]).await.unwrap();
        let mut server = open(Conn::new(server_io), 64 << 10).await;
        let e = server.next().await.unwrap().unwrap_err();
        assert!(too_big(&e), "{e}");
    }
}
