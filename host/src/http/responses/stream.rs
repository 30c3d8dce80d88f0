//! The Responses API's shape of the one SSE loop (`http::stream`): named
//! events (`event:` + `data:`) in their semantic order, and the finished
//! object stored before `response.completed` goes out.

use super::Keeper;
use super::object::Encoder;
use crate::chat::Event;
use crate::http::error::ApiError;
use crate::http::stream::{SseWriter, Wire};

/// A streaming [`Encoder`] and the [`Keeper`] that stores what it finishes.
pub struct ResponsesWire {
    pub encoder: Encoder,
    pub keeper: Keeper,
}

impl ResponsesWire {
    fn flush(&mut self, out: &mut SseWriter) {
        for (kind, data) in self.encoder.take() {
            out.named(kind, &data);
        }
    }
}

impl Wire for ResponsesWire {
    fn start(&mut self, out: &mut SseWriter) {
        self.encoder.start();
        self.flush(out);
    }

    fn event(&mut self, event: &Event, out: &mut SseWriter) {
        self.encoder.event(event);
        self.flush(out);
    }

    /// Close the items, store the finished object, then `response.completed`.
    async fn finish(&mut self, out: &mut SseWriter) -> Result<(), ApiError> {
        let response = self.encoder.finish();
        self.keeper.keep(&response).await?;
        self.encoder.completed(response);
        self.flush(out);
        Ok(())
    }

    fn failed(&mut self, error: &ApiError, out: &mut SseWriter) {
        self.encoder.failed(error);
        self.flush(out);
    }
}
