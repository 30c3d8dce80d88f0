// wordcount: a wasmclaw agent in JavaScript (componentize-js).
// Counts the words of each message and keeps a running total per session;
// `ask: …` goes to the agent's model instead. `host` is the gateway
// (agent.js) or a fake one (logic.test.js).

export function info() {
  return { name: 'wordcount', version: '0.1.0', description: 'Counts words; asks the model after "ask:"' };
}

export function run(req, host) {
  const last = [...req.messages].reverse().find((m) => m.role === 'user');
  const text = last ? last.content : '';
  if (text.startsWith('ask:')) {
    const messages = [...host.history(), { role: 'user', content: text.slice(4).trim(), toolCalls: [] }];
    const completion = host.llm({ messages, tools: [], params: req.params, model: undefined });
    for (let event = completion.next(); event !== undefined; event = completion.next()) {
      host.emit(event);
    }
    return;
  }
  const words = text.split(/\s+/).filter((w) => w.length > 0).length;
  const stored = host.state.get('words');
  const total = (stored ? JSON.parse(new TextDecoder().decode(stored)) : 0) + words;
  host.state.set('words', new TextEncoder().encode(JSON.stringify(total)));
  host.log('debug', `${words} words, ${total} in this session`);
  host.emit({ tag: 'text', val: `${words} words (${total} in this session)` });
}
