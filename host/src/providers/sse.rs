//! Server-sent events from a provider, split on the body's own [`Bytes`]:
//! an event's `data` is a slice of the chunk it arrived in (no per-line
//! `String`), copied only when a line spans two chunks or an event has
//! several `data:` lines. Only `data` matters to a chat-completions stream;
//! other fields and comments are skipped. Line ends are `\n`, `\r\n` or `\r`
//! (the WHATWG parsing rules), wherever the chunks happen to be cut.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Most bytes one SSE event may take (its lines together, line ends not
/// counted). The parser keeps an unfinished event in memory, so a provider
/// sending a line that never ends must meet a limit; real chunks are a few
/// hundred bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// The `data` of an event that is still being read.
enum Data {
    None,
    /// One `data:` line so far: a slice of the body.
    One(Bytes),
    /// Several, joined with `\n`.
    Many(BytesMut),
}

/// Splits a byte stream into the `data` of its events.
pub struct SseParser {
    /// The start of a line whose end has not arrived yet.
    partial: BytesMut,
    /// The last chunk ended in `\r`: a `\n` opening the next one belongs to it.
    skip_lf: bool,
    /// Whether a line was read: a UTF-8 byte order mark opening the first is skipped.
    started: bool,
    data: Data,
    /// Bytes of the current event's complete lines.
    event_bytes: usize,
    ready: VecDeque<Bytes>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self {
            partial: BytesMut::new(),
            skip_lf: false,
            started: false,
            data: Data::None,
            event_bytes: 0,
            ready: VecDeque::new(),
        }
    }
}

/// The event is larger than [`MAX_EVENT_BYTES`].
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

impl SseParser {
    /// Feed the next chunk of the body; finished events become [`Self::next`]'s.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), TooLarge> {
        let mut chunk = chunk;
        if chunk.is_empty() {
            return Ok(());
        }
        if std::mem::take(&mut self.skip_lf) && chunk[0] == b'\n' {
            let _ = chunk.split_to(1);
        }
        let mut rest = if self.partial.is_empty() {
            chunk
        } else {
            // A line cut by the chunk boundary: join it with its end (rarely more than a line).
            self.partial.extend_from_slice(&chunk);
            self.partial.split().freeze()
        };
        while let Some(end) = memchr::memchr2(b'\n', b'\r', &rest) {
            let line = rest.split_to(end);
            let cr = rest[0] == b'\r';
            let _ = rest.split_to(1);
            if cr {
                match rest.first() {
                    Some(b'\n') => drop(rest.split_to(1)),
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            self.line(line)?;
        }
        if self.event_bytes + self.partial.len() + rest.len() > MAX_EVENT_BYTES {
            return Err(TooLarge);
        }
        self.partial.extend_from_slice(&rest);
        Ok(())
    }

    /// The `data` of the next finished event, oldest first.
    pub fn next(&mut self) -> Option<Bytes> {
        self.ready.pop_front()
    }

    fn line(&mut self, mut line: Bytes) -> Result<(), TooLarge> {
        if !std::mem::replace(&mut self.started, true) && line.starts_with(b"\xEF\xBB\xBF") {
            let _ = line.split_to(3);
        }
        if line.is_empty() {
            self.event_bytes = 0;
            match std::mem::replace(&mut self.data, Data::None) {
                Data::None => {}
                Data::One(data) => self.ready.push_back(data),
                Data::Many(data) => self.ready.push_back(data.freeze()),
            }
            return Ok(());
        }
        self.event_bytes += line.len();
        if self.event_bytes > MAX_EVENT_BYTES {
            return Err(TooLarge);
        }
        let (name, value) = match memchr::memchr(b':', &line) {
            Some(0) => return Ok(()), // a comment
            Some(colon) => {
                let skip = if line.get(colon + 1) == Some(&b' ') { 2 } else { 1 };
                (&line[..colon], line.slice(colon + skip..))
            }
            None => (&line[..], Bytes::new()),
        };
        if name != b"data" {
            return Ok(());
        }
        self.data = match std::mem::replace(&mut self.data, Data::None) {
            Data::None => Data::One(value),
            Data::One(first) => {
                let mut joined = BytesMut::with_capacity(first.len() + 1 + value.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(b"\n");
                joined.extend_from_slice(&value);
                Data::Many(joined)
            }
            Data::Many(mut joined) => {
                joined.extend_from_slice(b"\n");
                joined.extend_from_slice(&value);
                Data::Many(joined)
            }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event's data, the body fed in pieces cut at `cuts`.
    fn parse(body: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&body.len()]) {
            parser.push(Bytes::copy_from_slice(&body[from..cut])).unwrap();
            from = cut;
            while let Some(data) = parser.next() {
                out.push(String::from_utf8(data.to_vec()).unwrap());
            }
        }
        out
    }

    const BODY: &str = "\u{feff}data: {\"a\":1}\r\n\r\n: hello\r\ndata: {\"a\":1}\r\n\r\nevent: x\nid: 7\ndata:first\ndata: second\ndata\n\n\
                        data: [DONE]\r\rdata: cut off";

    #[test]
    fn events_come_out_the_same_however_the_body_is_cut() {
        let want = vec![r#"{"a":1}"#.to_string(), r#"{"a":1}"#.into(), "first\nsecond\n".into(), "[DONE]".into()];
        let body = BODY.as_bytes();
        assert_eq!(parse(body, &[]), want, "in one piece");
        for cut in 0..=body.len() {
            assert_eq!(parse(body, &[cut]), want, "cut at {cut}");
        }
        let every_byte: Vec<usize> = (1..body.len()).collect();
        assert_eq!(parse(body, &every_byte), want, "byte by byte");
        for a in 0..body.len() {
            for b in a..body.len() {
                assert_eq!(parse(body, &[a, b]), want, "cut at {a} and {b}");
            }
        }
    }

    #[test]
    fn a_crlf_cut_between_its_two_bytes_ends_one_line() {
        // "\r" then "\n" in the next chunk is one line end, not an empty line between.
        assert_eq!(parse(b"data: a\r\ndata: b\r\n\r\n", &[8]), vec!["a\nb".to_string()]);
        assert_eq!(parse(b"data: a\r\r\ndata: b\r\n\r\n", &[8]), vec!["a".to_string(), "b".into()]);
    }

    #[test]
    fn a_single_line_event_is_a_slice_of_its_chunk() {
        let chunk = Bytes::from_static(b"data: {\"x\":2}\n\n");
        let mut parser = SseParser::default();
        parser.push(chunk.clone()).unwrap();
        let data = parser.next().unwrap();
        assert_eq!(&data[..], b"{\"x\":2}");
        assert_eq!(data.as_ptr(), chunk[6..].as_ptr(), "no copy of the data");
    }

    #[test]
    fn an_event_that_never_ends_is_refused() {
        let mut parser = SseParser::default();
        parser.push(Bytes::from_static(b"data: ")).unwrap();
        let endless = Bytes::from(vec![b'a'; 1 << 16]);
        let mut refused = false;
        for _ in 0..20 {
            refused |= parser.push(endless.clone()).is_err();
        }
        assert!(refused, "a line that never ends meets the limit");
        let mut parser = SseParser::default();
        let line = format!("data: {}\n", "b".repeat(1 << 16));
        let results: Vec<_> = (0..20).map(|_| parser.push(Bytes::from(line.clone()))).collect();
        assert!(results.contains(&Err(TooLarge)), "so do many lines without a blank one");
        let mut parser = SseParser::default();
        for _ in 0..40 {
            parser.push(Bytes::from(format!("{line}\n"))).unwrap();
        }
        assert_eq!(parser.ready.len(), 40, "finished events do not count against the next");
    }
}
