// Unit tests on a fake gateway: `node --test` (no build, no gateway).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as agent from './logic.js';
import { FakeHost, FakeMcpServer } from './wasmclaw-testing.js';

test('shouts with the configured suffix and counts turns', async () => {
  const host = new FakeHost({ config: { suffix: '!!!' } });
  assert.equal((await host.run(agent, 'hello')).text(), 'HELLO!!!');
  const run = await host.run(agent, 'again');
  assert.equal(run.text(), 'AGAIN!!!');
  assert.equal(new TextDecoder().decode(host.state.get('turns')), '2');
  assert.deepEqual(run.logs.at(-1), ['info', 'turn 2 of this session']);
});

test('asks the model with the system prompt and the history', async () => {
  const host = new FakeHost({ config: { systemPrompt: 'Be brief.' } }).llmReply('Paris.').llmReply('Rome.');
  assert.equal((await host.run(agent, 'ask: Capital of France?')).text(), 'Paris.');
  const run = await host.run(agent, 'ask: And of Italy?');
  assert.equal(run.text(), 'Rome.');
  const sent = run.llmRequests[0].messages;
  assert.deepEqual(sent.map((m) => m.role), ['system', 'user', 'assistant', 'user']);
  assert.deepEqual(sent.at(-1).content, [{ tag: 'text', val: 'And of Italy?' }]);
});

test('fetches through the gateway, which adds the credential and denies what it does not allow', async () => {
  const url = 'https://api.example.com/today';
  const host = new FakeHost()
    .httpCredential('https://api.example.com', 'Authorization', 'Bearer k-1')
    .httpResponse('GET', url, 200, 'sunny, your key was Bearer k-1');
  const run = await host.run(agent, `fetch: ${url}`);
  assert.equal(run.text(), '200 sunny, your key was [REDACTED]');
  assert.deepEqual(run.httpRequests[0].headers, [['authorization', 'Bearer k-1']]);
  assert.deepEqual(run.httpRequests[0].injected, ['authorization']);
  const denied = await new FakeHost().run(agent, 'fetch: https://elsewhere.example/');
  assert.match(denied.text(), /^cannot fetch https:\/\/elsewhere\.example\/: the gateway does not allow this URL/);
});

const SERVER = 'http://127.0.0.1:9100/mcp';
const tools = () => new FakeMcpServer('calc')
  .tool('add', 'Add two integers', { type: 'object' }, ({ a, b }) => `${a + b}`)
  .tool('divide', 'Divide a by b', { type: 'object' }, ({ a, b }) => {
    if (b === 0) throw new Error('cannot divide by zero');
    return `${a / b}`;
  });

test('calls a tool of the configured MCP server, with the gateway credential', async () => {
  const host = new FakeHost({ config: { mcpServer: SERVER } })
    .mcpServer(SERVER, tools())
    .httpCredential(SERVER, 'Authorization', 'Bearer mcp-1');
  const run = await host.run(agent, 'tool: add {"a": 2, "b": 3}');
  assert.equal(run.text(), '5');
  assert.deepEqual(run.mcpCalls(), [[SERVER, 'add', { a: 2, b: 3 }]]);
  assert.ok(run.httpRequests.every((r) => r.injected.join() === 'authorization'));
});

test('a failing tool, an unknown one, a server the gateway does not allow and none at all are said', async () => {
  const host = () => new FakeHost({ config: { mcpServer: SERVER } }).mcpServer(SERVER, tools());
  assert.equal((await host().run(agent, 'tool: divide {"a": 1, "b": 0}')).text(), 'divide failed: cannot divide by zero');
  assert.equal((await host().run(agent, 'tool: nope')).text(), 'cannot call nope: tools/call: Unknown tool: nope');
  const denied = await new FakeHost({ config: { mcpServer: SERVER } }).run(agent, 'tool: add {}');
  assert.equal(denied.text(), `cannot call add: cannot reach ${SERVER}: the gateway does not allow this URL (add it to the agent's http.allow)`);
  assert.deepEqual(denied.mcpCalls(), []);
  assert.match((await new FakeHost().run(agent, 'tool: add {}')).text(), /^no MCP server: set config.mcpServer/);
});
