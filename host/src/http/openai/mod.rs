//! OpenAI chat- and legacy-completions wire types: requests in, responses and chunks out.

mod params;
mod request;
mod response;
mod text;

pub use request::ChatRequest;
pub use response::{ChunkEncoder, Completion};
pub use text::TextRequest;
