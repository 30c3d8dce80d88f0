// A fake wasmclaw gateway for unit tests (`node --test`): config, session
// history and state, scripted model answers and HTTP answers; it records what
// the agent emitted, logged, asked the model and sent out. Like the gateway
// it keeps the session: a run that succeeds adds its turn and keeps its state
// writes. Requests nothing was scripted for are denied, as outside `http.allow`.

const text = (role, val) => ({ role, content: [{ tag: 'text', val }], toolCalls: [] });
const under = (prefix, url) => url.startsWith(prefix)
  && (url.length === prefix.length || prefix.endsWith('/') || '/?#'.includes(url[prefix.length]));

export class FakeHost {
  constructor({ config = {}, history = [], state = {} } = {}) {
    this.config = { ...config };
    this.history = [...history];
    this.state = new Map(Object.entries(state));
    this.llmAnswers = [];
    this.httpAnswers = new Map(); // `METHOD url` → [{ status, body }], in order; the last repeats
    this.credentials = []; // [url prefix, header, value]
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
        const headers = Object.entries(init.headers ?? {}).map(([n, v]) => [n.toLowerCase(), v]);
        const added = this.credentials.filter(([prefix]) => under(prefix, url)).map(([, h, v]) => [h, v]);
        const answers = this.httpAnswers.get(`${(init.method ?? 'GET').toUpperCase()} ${url}`);
        const answer = answers && (answers.length > 1 ? answers.shift() : answers[0]);
        const method = (init.method ?? 'GET').toUpperCase();
        run.httpRequests.push({ method, url, headers: [...headers, ...added], injected: added.map(([h]) => h), status: answer?.status });
        if (!answer) throw new TypeError(`the gateway does not allow this URL (add it to the agent's http.allow)`);
        const body = added.reduce((b, [, v]) => b.replaceAll(v, '[REDACTED]'), answer.body);
        return { status: answer.status, ok: answer.status < 300, text: async () => body, json: async () => JSON.parse(body) };
      },
    };
    try {
      await agent.run(req, host);
    } catch (e) {
      run.error = e;
    }
    run.text = () => run.events.filter((e) => e.tag === 'text').map((e) => e.val).join('');
    if (run.error === undefined) {
      this.history.push(...req.messages.filter((m) => m.role !== 'system'), text('assistant', run.text()));
      this.state = state;
    }
    return run;
  }
}
