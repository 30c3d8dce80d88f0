// Unit tests on a fake gateway: `node --test` (no build, no gateway).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from './logic.js';

/** A fake gateway: config, session state, and what the agent emitted and logged. */
function fakeHost(config = {}) {
  const state = new Map();
  const seen = { events: [], logs: [] };
  const host = {
    emit: (event) => seen.events.push(event),
    config: (key) => config[key],
    history: () => [],
    state: { get: (key) => state.get(key), set: (key, value) => state.set(key, value) },
    llm: () => { throw { tag: 'unavailable', val: 'no model in unit tests' }; },
    log: (level, message) => seen.logs.push([level, message]),
  };
  return { host, seen, state };
}

const request = (text) => ({ messages: [{ role: 'user', content: text, toolCalls: [] }], tools: [], params: '{}' });

test('shouts with the configured suffix and counts turns', () => {
  const { host, seen, state } = fakeHost({ suffix: '!!!' });
  run(request('hello'), host);
  run(request('again'), host);
  const text = seen.events.filter((e) => e.tag === 'text').map((e) => e.val).join('');
  assert.equal(text, 'HELLO!!!AGAIN!!!');
  assert.equal(new TextDecoder().decode(state.get('turns')), '2');
  assert.deepEqual(seen.logs.at(-1), ['info', 'turn 2 of this session']);
});
