//! `POST /v1/chat/completions` request bodies, parsed leniently where OpenAI
//! is lenient (unknown fields pass on as params) and strictly where it is strict.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::chat::{self, Message, Role, ToolCall, ToolSpec};
use crate::http::error::ApiError;

/// The fields the gateway consumes itself; everything else is `rest`, the
/// agent's `params` (the parameter rule, `params.rs`).
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub user: Option<String>,
    pub tools: Option<Vec<ToolDefinition>>,
    pub n: Option<u32>,
    /// Every other field, as sent (`tool_choice`, sampling, unknown fields).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `stream_options`
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// One entry of `messages`.
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    pub name: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_calls: Option<Vec<ToolCallIn>>,
}

/// `content`: a string or an array of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part, as OpenAI's chat (and Responses `input_*`) parts.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub image_url: Option<ImageUrl>,
    /// Responses-style `input_image` puts `detail` beside a string `image_url`.
    pub detail: Option<String>,
    pub input_audio: Option<InputAudio>,
    pub file: Option<FileIn>,
}

/// `image_url`: `{url, detail}`, or the URL alone.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl {
    Url(String),
    Object { url: Option<String>, detail: Option<String> },
}

/// `input_audio`: base64 data and its format (both required; checked with the
/// part so the error names it).
#[derive(Debug, Deserialize)]
pub struct InputAudio {
    pub data: Option<String>,
    pub format: Option<String>,
}

/// `file`: an uploaded file's id or its data, and a name.
#[derive(Debug, Deserialize)]
pub struct FileIn {
    pub file_id: Option<String>,
    pub file_data: Option<String>,
    pub filename: Option<String>,
}

impl ContentPart {
    /// The part as agents see it; `None` when its type or its fields are not understood.
    fn to_agent(&self) -> Option<chat::ContentPart> {
        Some(match self.kind.as_str() {
            "text" | "input_text" => chat::ContentPart::Text(self.text.clone()?),
            "image_url" | "input_image" => match self.image_url.as_ref()? {
                ImageUrl::Url(url) => chat::ContentPart::Image { url: url.clone(), detail: self.detail.clone() },
                ImageUrl::Object { url, detail } => chat::ContentPart::Image {
                    url: url.clone()?,
                    detail: detail.clone().or_else(|| self.detail.clone()),
                },
            },
            "input_audio" => {
                let audio = self.input_audio.as_ref()?;
                chat::ContentPart::Audio { data: audio.data.clone()?, format: audio.format.clone()? }
            }
            "file" => {
                let file = self.file.as_ref()?;
                if file.file_id.is_none() && file.file_data.is_none() {
                    return None;
                }
                chat::ContentPart::File {
                    file_id: file.file_id.clone(),
                    file_data: file.file_data.clone(),
                    filename: file.filename.clone(),
                }
            }
            _ => return None,
        })
    }
}

/// A tool call inside an earlier assistant message.
#[derive(Debug, Deserialize)]
pub struct ToolCallIn {
    pub id: String,
    pub function: FunctionCall,
}

/// `{name, arguments}`
#[derive(Debug, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// One entry of `tools`.
#[derive(Debug, Deserialize)]
pub struct ToolDefinition {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDefinition,
}

/// A function tool's description.
#[derive(Debug, Deserialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

impl ChatRequest {
    /// Parse a body; errors name the offending field in `param`.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let request: Self = parse_json(body)?;
        super::params::one_choice("n", request.n)?;
        if request.messages.is_empty() {
            return Err(ApiError::invalid_request(
                "`messages` must contain at least one message",
                Some("messages".into()),
            ));
        }
        Ok(request)
    }

    /// True for `stream: true`.
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// True when the client asked for the final usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    /// Messages as agents see them.
    pub fn agent_messages(&self) -> Result<Vec<Message>, ApiError> {
        self.messages.iter().enumerate().map(|(i, m)| m.to_agent(i)).collect()
    }

    /// Function tools as agents see them.
    pub fn agent_tools(&self) -> Result<Vec<ToolSpec>, ApiError> {
        let Some(tools) = &self.tools else {
            return Ok(Vec::new());
        };
        tools
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.kind != "function" {
                    return Err(ApiError::invalid_request(
                        format!("Unsupported tool type {:?}; only \"function\" tools are supported", t.kind),
                        Some(format!("tools[{i}].type")),
                    ));
                }
                Ok(ToolSpec {
                    name: t.function.name.clone(),
                    description: t.function.description.clone().unwrap_or_default(),
                    parameters: t.function.parameters.as_ref().map(Value::to_string).unwrap_or_else(|| "{}".into()),
                })
            })
            .collect()
    }

    /// The fields the gateway does not consume, for the agent's `params`.
    pub fn params(&self) -> Result<Value, ApiError> {
        super::params::agent_params(&self.rest)
    }
}

/// A JSON body as `T`; errors name the offending field in `param`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid_request(format!("Malformed JSON body: {inner}"), None)
        } else {
            let param = (path != ".").then_some(path);
            ApiError::invalid_request(format!("Invalid request: {inner}"), param)
        }
    })?;
    de.end().map_err(|e| ApiError::invalid_request(format!("Malformed JSON body: {e}"), None))?;
    Ok(value)
}

impl ChatMessage {
    fn to_agent(&self, index: usize) -> Result<Message, ApiError> {
        let role = match self.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            other => {
                return Err(ApiError::invalid_request(
                    format!("Unknown role {other:?}; expected system, developer, user, assistant or tool"),
                    Some(format!("messages[{index}].role")),
                ));
            }
        };
        let parts = match &self.content {
            None => Vec::new(),
            Some(Content::Text(t)) => vec![chat::ContentPart::Text(t.clone())],
            Some(Content::Parts(parts)) => parts
                .iter()
                .enumerate()
                .map(|(p, part)| {
                    part.to_agent().ok_or_else(|| {
                        ApiError::invalid_request(
                            format!(
                                "Unsupported or incomplete content part {:?}; expected text, input_text, \
                                 image_url, input_audio or file with its fields",
                                part.kind
                            ),
                            Some(format!("messages[{index}].content[{p}]")),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let tool_calls = self
            .tool_calls
            .iter()
            .flatten()
            .map(|c| ToolCall {
                id: c.id.clone(),
                name: c.function.name.clone(),
                arguments: c.function.arguments.clone(),
            })
            .collect();
        Ok(Message {
            name: self.name.clone(),
            tool_call_id: self.tool_call_id.clone(),
            tool_calls,
            ..Message::with_parts(role, parts)
        })
    }
}
