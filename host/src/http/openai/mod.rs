//! OpenAI chat-completions wire types: requests in, responses and chunks out.

mod request;
mod response;

pub use request::ChatRequest;
pub use response::{ChunkEncoder, Completion};
