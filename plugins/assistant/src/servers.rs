//! The MCP servers of `config.mcpServers`: their tools, offered to the model
//! next to the client's, and calls routed to the server that offers them.

use std::collections::{BTreeMap, BTreeSet};

use wasmclaw_sdk::mcp::McpClient;
use wasmclaw_sdk::{ToolCall, ToolSpec, log};

/// The tools of every server that could be listed, by name.
#[derive(Default)]
pub struct ServerTools {
    servers: Vec<McpClient>,
    /// Tool name → its server's place in `servers`.
    owner: BTreeMap<String, usize>,
    specs: Vec<ToolSpec>,
}

impl ServerTools {
    /// Connect to each comma-separated URL and list its tools. A server that
    /// cannot be listed is skipped with a warning: the run still answers.
    /// Names already taken (by the client's tools, then by servers earlier in
    /// the list) are not offered again: the client's tools win.
    pub fn connect(urls: &str, client_tools: &[ToolSpec]) -> Self {
        let mut taken: BTreeSet<String> = client_tools.iter().map(|t| t.name.clone()).collect();
        let mut this = Self::default();
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let listed = McpClient::connect(url).and_then(|mut client| Ok((client.list_tools()?, client)));
            let (tools, client) = match listed {
                Ok(listed) => listed,
                Err(e) => {
                    log::warn!("MCP server {url} (config.mcpServers) skipped: {e}");
                    continue;
                }
            };
            let index = this.servers.len();
            for tool in tools {
                if !taken.insert(tool.name.clone()) {
                    log::warn!("MCP server {url}: tool {:?} not offered, the name is already taken", tool.name);
                    continue;
                }
                this.owner.insert(tool.name.clone(), index);
                this.specs.push(tool.to_tool_spec());
            }
            this.servers.push(client);
        }
        this
    }

    /// The tools to offer the model.
    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    /// Whether `name` is a server's tool (else it is the client's).
    pub fn offers(&self, name: &str) -> bool {
        self.owner.contains_key(name)
    }

    /// Run `call` on its server: the output, or the error text for the model.
    pub fn call(&mut self, call: &ToolCall) -> Result<String, String> {
        let index = *self.owner.get(&call.name).ok_or_else(|| format!("no server offers tool {:?}", call.name))?;
        let server = &mut self.servers[index];
        match server.call_tool(&call.name, &call.arguments) {
            Ok(result) if result.is_error => Err(result.text),
            Ok(result) => Ok(result.text),
            Err(e) => {
                log::warn!("MCP server {}: tool {} failed: {e}", server.url(), call.name);
                Err(e.to_string())
            }
        }
    }
}
