//! OpenAI chat- and legacy-completions wire types: requests in, responses and chunks out.

mod page;
mod params;
mod request;
mod response;
mod text;

pub use page::{PageQuery, Paging};
pub use request::{ChatRequest, parse_json};
pub use response::{ChunkEncoder, Completion};
pub use text::TextRequest;
