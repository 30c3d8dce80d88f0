// The component's entry point: the gateway's interfaces (imported by their
// WIT names) handed to the agent in logic.js, which unit tests run with fakes.
import { emit } from 'wasmclaw:agent/output@0.1.2';
import { get as configGet } from 'wasmclaw:agent/config@0.1.2';
import { history, get as stateGet, set as stateSet } from 'wasmclaw:agent/session@0.1.2';
import { complete } from 'wasmclaw:agent/llm@0.1.2';
import { write, panicked } from 'wasmclaw:agent/log@0.1.2';
import * as agent from './logic.js';

const host = {
  emit,
  config: configGet,
  history,
  state: { get: stateGet, set: stateSet },
  llm: complete,
  log: write,
};

export function info() {
  return agent.info();
}

export function run(req) {
  try {
    agent.run(req, host);
  } catch (e) {
    // `{ tag: 'invalid-request' | 'unavailable' | 'failed', val }` is an agent
    // error the client gets with its status; anything else is a panic: the
    // gateway logs it with the run and request ids and tells the client.
    if (!(e && typeof e === 'object' && 'tag' in e)) {
      const at = e && e.stack ? ` (at ${e.stack.split('\n')[0]})` : '';
      panicked(`${e}${at}`);
    }
    throw e;
  }
}
