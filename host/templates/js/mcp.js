// A small client for MCP tool servers over Streamable HTTP, on `fetch`:
// enough to list a server's tools and call one. The `initialize` handshake
// (revision 2025-11-25, or the older one the server answers), the session id
// the server assigns, `tools/list` (every page) and `tools/call`, with answers
// as JSON or as an SSE stream. Requests go through the gateway like any other:
// the server's URL must be in the agent's `http.allow`, and the gateway adds
// the credentials its `http.credentials` configure (the agent never sees them).

export const PROTOCOL_VERSION = '2025-11-25';

/** The server could not be reached or refused a request (a tool's own failure is a result with `isError`). */
export class McpError extends Error {}

/** Connect to the server at `url` with `fetch` (the host's): the `initialize` handshake. */
export async function connect(fetch, url) {
  const client = new McpClient(fetch, url);
  const clientInfo = { name: 'wasmclaw-agent', version: '0.1.0' };
  const result = await client.call('initialize', { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo });
  client.protocolVersion = result.protocolVersion ?? PROTOCOL_VERSION;
  await client.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  return client;
}

class McpClient {
  constructor(fetch, url) {
    this.fetch = fetch;
    this.url = url;
    this.session = undefined; // the Mcp-Session-Id the server assigned, if any
    this.protocolVersion = PROTOCOL_VERSION;
    this.nextId = 0;
  }

  /** Every tool the server offers: `name`, `description`, `inputSchema`. */
  async listTools() {
    const tools = [];
    let cursor;
    do {
      const result = await this.call('tools/list', cursor ? { cursor } : {});
      tools.push(...(result.tools ?? []));
      cursor = result.nextCursor;
    } while (cursor);
    return tools;
  }

  /** Run tool `name` with `args`: its text parts joined, and whether it failed. */
  async callTool(name, args) {
    const result = await this.call('tools/call', { name, arguments: args });
    const text = (result.content ?? []).filter((p) => p.type === 'text').map((p) => p.text).join('\n');
    return { text, isError: Boolean(result.isError) };
  }

  async call(method, params) {
    const id = ++this.nextId;
    const response = await this.send({ jsonrpc: '2.0', id, method, params });
    let answer;
    try {
      answer = messages(response).find((m) => m && m.id === id);
    } catch {
      throw new McpError(`${method}: the server's answer is not JSON-RPC`);
    }
    if (!answer) throw new McpError(`${method}: the server sent no answer`);
    if (answer.error) throw new McpError(`${method}: ${answer.error.message ?? JSON.stringify(answer.error)}`);
    return answer.result ?? {};
  }

  async send(message) {
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    if (this.session) Object.assign(headers, { 'mcp-session-id': this.session, 'mcp-protocol-version': this.protocolVersion });
    let response;
    try {
      response = await this.fetch(this.url, { method: 'POST', headers, body: JSON.stringify(message) });
    } catch (e) {
      throw new McpError(`cannot reach ${this.url}: ${e.message ?? e}`);
    }
    if (response.status >= 300) throw new McpError(`${message.method}: the server answered ${response.status}`);
    this.session = response.headers.get('mcp-session-id') ?? this.session;
    return { type: response.headers.get('content-type') ?? '', text: await response.text() };
  }
}

/** The JSON-RPC messages of an answer: one JSON body, or the `data:` events of an SSE stream. */
function messages({ type, text }) {
  if (!type.startsWith('text/event-stream')) return text.trim() ? [JSON.parse(text)] : [];
  const data = text.replaceAll('\r\n', '\n').split('\n\n')
    .map((event) => event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n'));
  return data.filter((d) => d.trim()).map((d) => JSON.parse(d));
}
