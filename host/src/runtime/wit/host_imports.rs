//! The host side of the imports every world shares, written once. A world's
//! module generates its bindings and then invokes [`host_imports!`], so
//! each world's `types`, `llm`, `output`… get the same impls and conversions to
//! `crate::chat`, and only what a world changes (0.2's message parts, its
//! `memo`) is written in its module. A new world invokes it too; a world that
//! changes one of these interfaces writes that impl itself and this macro
//! leaves it out (split the macro by interface then).

/// The `Host` impls and type conversions of the interfaces all worlds share.
/// Names resolve where it is invoked: the module must have in scope the
/// world's interface modules (`config`, `llm`, `log`, `output`, `session`,
/// `tool_activity`, `types`) and `chat`, `CompletionRequest`,
/// `CompletionStream`, `LlmFailure`, `OutputStop`, `Resource`, `RunState`.
macro_rules! host_imports {
    () => {
        impl types::Host for RunState {}

        impl output::Host for RunState {
            async fn emit(&mut self, ev: types::Event) -> wasmtime::Result<Result<(), types::EmitError>> {
                Ok(self.output.emit(ev.into()).await?.map_err(|stop| match stop {
                    OutputStop::Closed => types::EmitError::Closed,
                    OutputStop::Limit => types::EmitError::OutputLimit,
                }))
            }
        }

        impl config::Host for RunState {
            fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
                Ok(self.config.get(&key))
            }
        }

        impl session::Host for RunState {
            fn history(&mut self) -> wasmtime::Result<Vec<types::Message>> {
                Ok(self.session.history().iter().cloned().map(Into::into).collect())
            }

            fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
                Ok(self.session.get(&key))
            }

            fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
                Ok(self.session.set(key, value))
            }

            fn delete(&mut self, key: String) -> wasmtime::Result<()> {
                self.session.delete(key);
                Ok(())
            }
        }

        impl log::Host for RunState {
            fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
                let level = match level {
                    log::Level::Trace => tracing::Level::TRACE,
                    log::Level::Debug => tracing::Level::DEBUG,
                    log::Level::Info => tracing::Level::INFO,
                    log::Level::Warn => tracing::Level::WARN,
                    log::Level::Error => tracing::Level::ERROR,
                };
                self.log.write(level, &message);
                Ok(())
            }

            fn panicked(&mut self, message: String) -> wasmtime::Result<()> {
                self.log.panicked(&message);
                Ok(())
            }
        }

        impl tool_activity::Host for RunState {
            async fn called(&mut self, call: types::ToolCall) -> wasmtime::Result<()> {
                self.tools.called(&mut self.output, call.into()).await;
                Ok(())
            }

            async fn returned(&mut self, call_id: String, output: String, is_error: bool) -> wasmtime::Result<()> {
                self.tools.returned(&mut self.output, chat::ToolResult { call_id, output, is_error }).await;
                Ok(())
            }
        }

        impl llm::Host for RunState {
            async fn complete(
                &mut self,
                req: llm::CompletionRequest,
            ) -> wasmtime::Result<Result<Resource<CompletionStream>, llm::LlmError>> {
                let req = CompletionRequest {
                    messages: req.messages.into_iter().map(Into::into).collect(),
                    tools: req.tools.into_iter().map(Into::into).collect(),
                    params: req.params,
                    model: req.model,
                };
                Ok(self.llm.complete(&mut self.table, req).await?.map_err(Into::into))
            }
        }

        impl llm::HostCompletion for RunState {
            async fn next(
                &mut self,
                this: Resource<CompletionStream>,
            ) -> wasmtime::Result<Result<Option<types::Event>, llm::LlmError>> {
                let outbox = self.output.outbox().map(|o| &**o);
                Ok(self.llm.next(&mut self.table, &this, outbox, guest_event).await?.map_err(Into::into))
            }

            fn drop(&mut self, this: Resource<CompletionStream>) -> wasmtime::Result<()> {
                self.llm.close(&mut self.table, this)
            }
        }

        impl From<LlmFailure> for llm::LlmError {
            fn from(f: LlmFailure) -> Self {
                match f {
                    LlmFailure::RateLimited(after) => Self::RateLimited(after),
                    LlmFailure::Unauthorized(m) => Self::Unauthorized(m),
                    LlmFailure::BadRequest(m) => Self::BadRequest(m),
                    LlmFailure::Unavailable(m) => Self::Unavailable(m),
                    LlmFailure::Timeout(m) => Self::Timeout(m),
                }
            }
        }

        impl From<types::Role> for chat::Role {
            fn from(r: types::Role) -> Self {
                match r {
                    types::Role::System => Self::System,
                    types::Role::User => Self::User,
                    types::Role::Assistant => Self::Assistant,
                    types::Role::Tool => Self::Tool,
                }
            }
        }

        impl From<chat::Role> for types::Role {
            fn from(r: chat::Role) -> Self {
                match r {
                    chat::Role::System => Self::System,
                    chat::Role::User => Self::User,
                    chat::Role::Assistant => Self::Assistant,
                    chat::Role::Tool => Self::Tool,
                }
            }
        }

        impl From<types::ToolCall> for chat::ToolCall {
            fn from(c: types::ToolCall) -> Self {
                Self { id: c.id, name: c.name, arguments: c.arguments }
            }
        }

        impl From<chat::ToolCall> for types::ToolCall {
            fn from(c: chat::ToolCall) -> Self {
                Self { id: c.id, name: c.name, arguments: c.arguments }
            }
        }

        impl From<types::ToolSpec> for chat::ToolSpec {
            fn from(t: types::ToolSpec) -> Self {
                Self { name: t.name, description: t.description, parameters: t.parameters }
            }
        }

        impl From<chat::ToolSpec> for types::ToolSpec {
            fn from(t: chat::ToolSpec) -> Self {
                Self { name: t.name, description: t.description, parameters: t.parameters }
            }
        }

        impl From<types::FinishReason> for chat::FinishReason {
            fn from(f: types::FinishReason) -> Self {
                match f {
                    types::FinishReason::Stop => Self::Stop,
                    types::FinishReason::Length => Self::Length,
                    types::FinishReason::ToolCalls => Self::ToolCalls,
                }
            }
        }

        impl From<chat::FinishReason> for types::FinishReason {
            fn from(f: chat::FinishReason) -> Self {
                match f {
                    chat::FinishReason::Stop => Self::Stop,
                    chat::FinishReason::Length => Self::Length,
                    chat::FinishReason::ToolCalls => Self::ToolCalls,
                }
            }
        }

        impl From<types::Event> for chat::Event {
            fn from(e: types::Event) -> Self {
                match e {
                    types::Event::Text(t) => Self::Text(t),
                    types::Event::Reasoning(t) => Self::Reasoning(t),
                    types::Event::ToolCall(d) => Self::ToolCall(chat::ToolCallDelta {
                        index: d.index,
                        id: d.id,
                        name: d.name,
                        arguments: d.arguments,
                    }),
                    types::Event::Usage(u) => Self::Usage(chat::Usage {
                        prompt_tokens: u.prompt_tokens,
                        completion_tokens: u.completion_tokens,
                    }),
                    types::Event::Finish(f) => Self::Finish(f.into()),
                }
            }
        }

        /// A provider's event as the guest sees it; `None` for what the WIT event
        /// cannot carry (server tool activity, which no provider streams).
        fn guest_event(e: chat::Event) -> Option<types::Event> {
            Some(match e {
                chat::Event::Text(t) => types::Event::Text(t),
                chat::Event::Reasoning(t) => types::Event::Reasoning(t),
                chat::Event::ToolCall(d) => types::Event::ToolCall(types::ToolCallDelta {
                    index: d.index,
                    id: d.id,
                    name: d.name,
                    arguments: d.arguments,
                }),
                chat::Event::Usage(u) => types::Event::Usage(types::Usage {
                    prompt_tokens: u.prompt_tokens,
                    completion_tokens: u.completion_tokens,
                }),
                chat::Event::Finish(f) => types::Event::Finish(f.into()),
                chat::Event::ServerTool(_) => return None,
            })
        }

        impl From<chat::RunRequest> for types::RunRequest {
            fn from(r: chat::RunRequest) -> Self {
                Self {
                    run_id: r.run_id,
                    agent_id: r.agent_id,
                    session_key: r.session_key,
                    messages: r.messages.into_iter().map(Into::into).collect(),
                    tools: r.tools.into_iter().map(Into::into).collect(),
                    user: r.user,
                    params: r.params,
                }
            }
        }

        impl From<types::AgentError> for chat::AgentError {
            fn from(e: types::AgentError) -> Self {
                match e {
                    types::AgentError::InvalidRequest(m) => Self::InvalidRequest(m),
                    types::AgentError::Unavailable(m) => Self::Unavailable(m),
                    types::AgentError::Failed(m) => Self::Failed(m),
                }
            }
        }

        impl From<types::AgentInfo> for chat::AgentInfo {
            fn from(i: types::AgentInfo) -> Self {
                Self { name: i.name, version: i.version, description: i.description }
            }
        }
    };
}
