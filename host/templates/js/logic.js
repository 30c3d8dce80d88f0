// {{name}}: an agent for the wasmclaw gateway, in JavaScript (componentize-js).
// - `ask: QUESTION` asks the agent's model (with `config.systemPrompt` and the
//   session's history) and streams its answer;
// - `fetch: URL` GETs the URL through the gateway (`fetch`: only what the
//   agent's `http.allow` names) and quotes the answer;
// - anything else is repeated, louder, with the configured suffix.
// `host` is the gateway (agent.js) or a fake one (logic.test.js).

export function info() {
  return { name: '{{name}}', version: '0.1.0', description: 'Shouts back, asks the model (ask:) or fetches a URL (fetch:)' };
}

/** A message's text parts, joined (contract 0.2: content is a list of parts). */
export const textOf = (m) => m.content.filter((p) => p.tag === 'text').map((p) => p.val).join('\n');

const message = (role, text) => ({ role, content: [{ tag: 'text', val: text }], toolCalls: [] });

export function run(req, host) {
  const last = [...req.messages].reverse().find((m) => m.role === 'user');
  const text = last ? textOf(last) : '';
  if (text.startsWith('ask:')) return ask(text.slice(4).trim(), req.params, host);
  if (text.startsWith('fetch:')) return get(text.slice(6).trim(), host);
  return shout(text, host);
}

function ask(question, params, host) {
  const system = host.config('systemPrompt');
  const messages = [...(system ? [message('system', system)] : []), ...host.history(), message('user', question)];
  const completion = host.llm({ messages, tools: [], params, model: undefined });
  for (let event = completion.next(); event !== undefined; event = completion.next()) {
    host.emit(event);
  }
}

// Async: componentize-js runs the event loop until the promise `run` returns settles.
async function get(url, host) {
  try {
    const response = await host.fetch(url);
    const body = await response.text();
    host.emit({ tag: 'text', val: `${response.status} ${body.slice(0, 500)}` });
  } catch (e) {
    host.emit({ tag: 'text', val: `cannot fetch ${url}: ${e.message ?? e}` });
  }
}

function shout(text, host) {
  // Settings from the gateway config (`agents.entries.<id>.config`, or `--set suffix=…`).
  const suffix = host.config('suffix') ?? '!';
  // State kept per session, saved only when the run succeeds.
  const stored = host.state.get('turns');
  const turns = (stored ? JSON.parse(new TextDecoder().decode(stored)) : 0) + 1;
  host.state.set('turns', new TextEncoder().encode(JSON.stringify(turns)));
  host.log('info', `turn ${turns} of this session`);
  host.emit({ tag: 'text', val: text.toUpperCase() });
  host.emit({ tag: 'text', val: suffix });
}
