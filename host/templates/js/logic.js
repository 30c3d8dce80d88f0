// {{name}}: an agent for the wasmclaw gateway, in JavaScript (componentize-js).
// `host` is the gateway (agent.js) or a fake one (logic.test.js).

export function info() {
  return { name: '{{name}}', version: '0.1.0', description: 'Repeats the last message, louder' };
}

export function run(req, host) {
  // Settings from the gateway config (`agents.entries.<id>.config`, or `--set suffix=…`).
  const suffix = host.config('suffix') ?? '!';
  // State kept per session, saved only when the run succeeds.
  const stored = host.state.get('turns');
  const turns = (stored ? JSON.parse(new TextDecoder().decode(stored)) : 0) + 1;
  host.state.set('turns', new TextEncoder().encode(JSON.stringify(turns)));
  host.log('info', `turn ${turns} of this session`);
  const last = [...req.messages].reverse().find((m) => m.role === 'user');
  host.emit({ tag: 'text', val: (last ? last.content : '').toUpperCase() });
  host.emit({ tag: 'text', val: suffix });
}
