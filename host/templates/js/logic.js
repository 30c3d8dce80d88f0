// {{name}}: an agent for the wasmclaw gateway, in JavaScript (componentize-js).
// - `ask: QUESTION` asks the agent's model (with `config.systemPrompt` and the
//   session's history) and streams its answer;
// - `fetch: URL` GETs the URL through the gateway (`fetch`: only what the
//   agent's `http.allow` names) and quotes the answer;
// - `tool: NAME {"arg": …}` calls tool NAME of the MCP server at
//   `config.mcpServer` (mcp.js, through the gateway like `fetch:`);
// - anything else is repeated, louder, with the configured suffix.
// `host` is the gateway (agent.js) or a fake one (logic.test.js).

import * as mcp from './mcp.js';

/** What `info()` tells the gateway (and `GET /admin/agents`) this agent does. */
export const DESCRIPTION = 'Shouts back, asks the model (ask:), fetches a URL (fetch:) or calls an MCP tool (tool:)';

export function info() {
  return { name: '{{name}}', version: '0.1.0', description: DESCRIPTION };
}

/** A message's text parts, joined (contract 0.2: content is a list of parts). */
export const textOf = (m) => m.content.filter((p) => p.tag === 'text').map((p) => p.val).join('\n');

const message = (role, text) => ({ role, content: [{ tag: 'text', val: text }], toolCalls: [] });

export function run(req, host) {
  const last = [...req.messages].reverse().find((m) => m.role === 'user');
  const text = last ? textOf(last) : '';
  if (text.startsWith('ask:')) return ask(text.slice(4).trim(), req.params, host);
  if (text.startsWith('fetch:')) return get(text.slice(6).trim(), host);
  if (text.startsWith('tool:')) return callTool(text.slice(5).trim(), host);
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

/** `NAME {"arg": …}`: call tool NAME of the MCP server at `config.mcpServer`, quote its answer. */
async function callTool(command, host) {
  const say = (val) => host.emit({ tag: 'text', val });
  const space = command.indexOf(' ');
  const [name, raw] = space < 0 ? [command, ''] : [command.slice(0, space), command.slice(space + 1)];
  const server = host.config('mcpServer');
  if (!server) return say('no MCP server: set config.mcpServer to its URL (and put that URL in http.allow)');
  let args;
  try {
    args = JSON.parse(raw || '{}');
  } catch (e) {
    return say(`the arguments of ${name} are not JSON: ${e.message}`);
  }
  try {
    const result = await (await mcp.connect(host.fetch, server)).callTool(name, args);
    say(result.isError ? `${name} failed: ${result.text}` : result.text);
  } catch (e) {
    if (!(e instanceof mcp.McpError)) throw e;
    say(`cannot call ${name}: ${e.message}`);
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
