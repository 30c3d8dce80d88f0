// Unit tests on a fake gateway: `node --test` (no build, no gateway).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from './logic.js';

function fakeHost({ answers = [] } = {}) {
  const state = new Map();
  const seen = { events: [], logs: [], llm: [] };
  const host = {
    emit: (event) => seen.events.push(event),
    config: () => undefined,
    history: () => [],
    state: { get: (key) => state.get(key), set: (key, value) => state.set(key, value) },
    llm: (request) => {
      seen.llm.push(request);
      const events = [...(answers.shift() ?? [])];
      return { next: () => events.shift() };
    },
    log: (level, message) => seen.logs.push([level, message]),
  };
  return { host, seen };
}

const request = (text) => ({ messages: [{ role: 'user', content: text, toolCalls: [] }], tools: [], params: '{}' });
const text = (seen) => seen.events.filter((e) => e.tag === 'text').map((e) => e.val).join('');

test('counts words and keeps a running total', () => {
  const { host, seen } = fakeHost();
  run(request('one two  three'), host);
  run(request('four'), host);
  assert.equal(text(seen), '3 words (3 in this session)1 words (4 in this session)');
});

test('asks the model after "ask:"', () => {
  const { host, seen } = fakeHost({ answers: [[{ tag: 'text', val: 'Paris' }]] });
  run(request('ask: capital of France?'), host);
  assert.equal(text(seen), 'Paris');
  assert.equal(seen.llm[0].messages.at(-1).content, 'capital of France?');
});
