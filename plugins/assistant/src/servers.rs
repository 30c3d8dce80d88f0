//! The MCP servers of `config.mcpServers`: their tools, offered to the model
//! next to the client's, and calls routed to the server that offers them.
//! Each server's list is reused by later runs of this agent version for
//! `config.mcpToolsTtlSeconds` (see [`ttl_for`]), kept by the gateway.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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
    /// `ttls` is `config.mcpToolsTtlSeconds`.
    pub fn connect(urls: &str, ttls: &str, client_tools: &[ToolSpec]) -> Self {
        let mut taken: BTreeSet<String> = client_tools.iter().map(|t| t.name.clone()).collect();
        let mut this = Self::default();
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let (client, tools) = match McpClient::cached(url, ttl_for(ttls, url)) {
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

/// How long a server's tool list is reused, from `config.mcpToolsTtlSeconds`:
/// comma-separated entries, each `SECONDS` (every server) or `URL=SECONDS`
/// (that server; it wins). Five minutes when nothing applies; 0 lists every run.
pub fn ttl_for(config: &str, url: &str) -> Duration {
    let mut every = None;
    for entry in config.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.rsplit_once('=') {
            Some((server, secs)) if server.trim() == url => {
                if let Ok(secs) = secs.trim().parse() {
                    return Duration::from_secs(secs);
                }
            }
            Some(_) => {}
            None => every = entry.parse().ok().or(every),
        }
    }
    Duration::from_secs(every.unwrap_or(DEFAULT_TOOLS_TTL_SECONDS))
}

/// How long a tool list is reused unless `config.mcpToolsTtlSeconds` says otherwise.
pub const DEFAULT_TOOLS_TTL_SECONDS: u64 = 300;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_own_ttl_wins_over_the_one_for_every_server() {
        let (a, b) = ("http://127.0.0.1:9100/mcp", "http://127.0.0.1:9200/mcp?key=x");
        assert_eq!(ttl_for("", a), Duration::from_secs(DEFAULT_TOOLS_TTL_SECONDS));
        assert_eq!(ttl_for("60", a), Duration::from_secs(60));
        let both = format!("60, {b}=0, {a} = 5");
        assert_eq!(ttl_for(&both, a), Duration::from_secs(5));
        assert_eq!(ttl_for(&both, b), Duration::ZERO, "a URL with '=' in it");
        assert_eq!(ttl_for(&both, "http://other/mcp"), Duration::from_secs(60));
        assert_eq!(ttl_for("soon", a), Duration::from_secs(DEFAULT_TOOLS_TTL_SECONDS), "not a number: the default");
    }
}
