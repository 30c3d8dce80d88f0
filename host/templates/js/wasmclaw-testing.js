// A fake wasmclaw gateway for unit tests (`node --test`): config, session
// history and state, scripted model answers and HTTP answers; it records what
// the agent emitted, logged, asked the model and sent out; MCP servers whose
// tools are JavaScript functions (`FakeMcpServer`, which mcp.js talks to).
// Like the gateway it keeps the session: a run that succeeds adds its turn and
// keeps its state writes. Requests nothing was scripted for are denied, as
// outside `http.allow`.

const text = (role, val) => ({ role, content: [{ tag: 'text', val }], toolCalls: [] });
const under = (prefix, url) => url.startsWith(prefix)
  && (url.length === prefix.length || prefix.endsWith('/') || '/?#'.includes(url[prefix.length]));

/** The session id every fake MCP server assigns. */
const MCP_SESSION = 'fake-mcp-session';

const rpc = (id, outcome) => ({
  status: 200,
  headers: [['content-type', 'application/json']],
  body: JSON.stringify({ jsonrpc: '2.0', id, ...outcome }),
});

/** An MCP server (Streamable HTTP, JSON answers) whose tools are JavaScript functions. */
export class FakeMcpServer {
  constructor(name) {
    this.name = name;
    this.tools = []; // [tool as tools/list shows it, function]
  }

  /** Offer tool `name`; `run(args)` returns the result text, or throws to fail (the model sees the message, isError). */
  tool(name, description, inputSchema, run) {
    this.tools.push([{ name, description, inputSchema }, run]);
    return this;
  }

  /** One JSON-RPC request over Streamable HTTP: `{ status, headers, body }`. */
  answer(session, body) {
    let request;
    try {
      request = JSON.parse(body);
    } catch {
      return { status: 400, headers: [], body: 'not JSON' };
    }
    const { id, method, params = {} } = request;
    if (method !== 'initialize' && session !== MCP_SESSION) {
      return { status: 400, headers: [], body: 'Bad Request: missing or unknown Mcp-Session-Id' };
    }
    if (id === undefined) return { status: 202, headers: [], body: '' }; // a notification
    if (method === 'initialize') {
      const answer = rpc(id, { result: { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: this.name, version: '0' } } });
      answer.headers.push(['mcp-session-id', MCP_SESSION]);
      return answer;
    }
    if (method === 'tools/list') return rpc(id, { result: { tools: this.tools.map(([tool]) => tool) } });
    if (method !== 'tools/call') return rpc(id, { error: { code: -32601, message: `Method not found: ${method}` } });
    const found = this.tools.find(([tool]) => tool.name === params.name);
    if (!found) return rpc(id, { error: { code: -32602, message: `Unknown tool: ${params.name}` } });
    let text;
    let isError = false;
    try {
      text = String(found[1](params.arguments ?? {}));
    } catch (e) {
      [text, isError] = [e.message ?? String(e), true];
    }
    return rpc(id, { result: { content: [{ type: 'text', text }], isError } });
  }
}

export class FakeHost {
  constructor({ config = {}, history = [], state = {} } = {}) {
    this.config = { ...config };
    this.history = [...history];
    this.state = new Map(Object.entries(state));
    this.llmAnswers = [];
    this.httpAnswers = new Map(); // `METHOD url` → [{ status, body }], in order; the last repeats
    this.credentials = []; // [url prefix, header, value]
    this.mcpServers = new Map(); // url → FakeMcpServer
  }

  /** The model's next answer: `text` in one piece. */
  llmReply(val) {
    this.llmAnswers.push([{ tag: 'text', val }]);
    return this;
  }

  /** Answer `method url` (exactly) with `status` and `body`. */
  httpResponse(method, url, status, body) {
    const key = `${method.toUpperCase()} ${url}`;
    this.httpAnswers.set(key, [...(this.httpAnswers.get(key) ?? []), { status, body }]);
    return this;
  }

  /** The gateway adds `header: value` to requests under `urlMatch` (`http.credentials`); answers never show it. */
  httpCredential(urlMatch, header, value) {
    this.credentials.push([urlMatch, header.toLowerCase(), value]);
    return this;
  }

  /** Serve `server` at `url` (every POST to exactly that URL): mcp.js's `connect(host.fetch, url)` works. */
  mcpServer(url, server) {
    this.mcpServers.set(url, server);
    return this;
  }

  /** The request a client sending one user message would produce. */
  request(message) {
    return { runId: 'test-run', agentId: 'test', sessionKey: 'agent:test:unit', messages: [text('user', message)], tools: [], params: '{}' };
  }

  /** Run `agent` (logic.js) on one user message; resolves to what the run did. */
  async run(agent, message) {
    const req = this.request(message);
    const state = new Map(this.state);
    const run = { events: [], logs: [], llmRequests: [], httpRequests: [], error: undefined };
    const host = {
      emit: (event) => run.events.push(event),
      config: (key) => this.config[key],
      history: () => [...this.history],
      state: { get: (key) => state.get(key), set: (key, value) => state.set(key, value) },
      llm: (request) => {
        run.llmRequests.push(request);
        const events = this.llmAnswers.shift();
        if (!events) throw { tag: 'unavailable', val: 'no scripted model answer left: call FakeHost.llmReply' };
        return { next: () => events.shift() };
      },
      log: (level, line) => run.logs.push([level, line]),
      fetch: async (url, init = {}) => {
        new URL(url); // a TypeError for what is not a URL, as from the real fetch
        const method = (init.method ?? 'GET').toUpperCase();
        const headers = Object.entries(init.headers ?? {}).map(([n, v]) => [n.toLowerCase(), v]);
        const added = this.credentials.filter(([prefix]) => under(prefix, url)).map(([, h, v]) => [h, v]);
        const answers = this.httpAnswers.get(`${method} ${url}`);
        const server = this.mcpServers.get(url);
        let answer = answers && (answers.length > 1 ? answers.shift() : answers[0]);
        if (!answer && server && method === 'POST') {
          answer = server.answer(headers.find(([n]) => n === 'mcp-session-id')?.[1], init.body ?? '');
        }
        const body = init.body ?? '';
        run.httpRequests.push({ method, url, headers: [...headers, ...added], injected: added.map(([h]) => h), status: answer?.status, body });
        if (!answer) throw new TypeError(`the gateway does not allow this URL (add it to the agent's http.allow)`);
        const text = added.reduce((b, [, v]) => b.replaceAll(v, '[REDACTED]'), answer.body);
        return {
          status: answer.status,
          ok: answer.status < 300,
          headers: new Headers(answer.headers ?? []),
          text: async () => text,
          json: async () => JSON.parse(text),
        };
      },
    };
    try {
      await agent.run(req, host);
    } catch (e) {
      run.error = e;
    }
    run.text = () => run.events.filter((e) => e.tag === 'text').map((e) => e.val).join('');
    // The MCP tools the agent called: [server URL, tool name, arguments] of every tools/call, in order.
    run.mcpCalls = () => run.httpRequests
      .map((r) => [r.url, (() => { try { return JSON.parse(r.body); } catch { return undefined; } })()])
      .filter(([, message]) => message?.method === 'tools/call')
      .map(([url, message]) => [url, message.params.name, message.params.arguments ?? {}]);
    if (run.error === undefined) {
      this.history.push(...req.messages.filter((m) => m.role !== 'system'), text('assistant', run.text()));
      this.state = state;
    }
    return run;
  }
}
