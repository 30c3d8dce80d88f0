// The component's entry point: the gateway's interfaces (imported by their
// WIT names, contract 0.2) handed to the agent in logic.js, which unit tests
// run with a fake gateway (wasmclaw-testing.js).
import { emit } from 'wasmclaw:agent/output@0.2.2';
import { get as configGet } from 'wasmclaw:agent/config@0.2.2';
import { history, get as stateGet, set as stateSet } from 'wasmclaw:agent/session@0.2.2';
import { complete } from 'wasmclaw:agent/llm@0.2.2';
import { write, panicked } from 'wasmclaw:agent/log@0.2.2';
import * as agent from './logic.js';

const host = {
  emit,
  config: configGet,
  history,
  state: { get: stateGet, set: stateSet },
  llm: complete,
  log: write,
  // Outbound HTTP over wasi:http: the gateway applies the agent's http.allow and credentials.
  fetch: (url, init) => fetch(url, init),
};

export function info() {
  return agent.info();
}

export function run(req) {
  try {
    const done = agent.run(req, host);
    return done instanceof Promise ? done.catch(fail) : done;
  } catch (e) {
    fail(e);
  }
}

// `{ tag: 'invalid-request' | 'unavailable' | 'failed', val }` is an agent
// error the client gets with its status; anything else is a panic: the
// gateway logs it with the run and request ids and tells the client.
function fail(e) {
  if (!(e && typeof e === 'object' && 'tag' in e)) {
    const at = e && e.stack ? ` (at ${e.stack.split('\n')[0]})` : '';
    panicked(`${e}${at}`);
  }
  throw e;
}
