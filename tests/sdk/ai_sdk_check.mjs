// The Vercel AI SDK's default OpenAI provider (Responses API, `store: true`)
// against the gateway: a two-turn chat and a tool loop whose first step
// wrote text before the call. With `store: true` the SDK sends earlier
// assistant text as `item_reference` items, which the gateway must resolve.
//
// Usage: node ai_sdk_check.mjs BASE_URL TOKEN (run beside node_modules).
// Prints the response ids as one JSON line, then "all checks passed".
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, tool } from "ai";

const [baseURL, apiKey] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey });
const model = openai("openclaw");
const check = (ok, what) => {
  if (!ok) throw new Error(`check failed: ${what}`);
};

// Two turns: the second resends the first answer, as a reference.
const question = { role: "user", content: "I am Ada" };
const first = await generateText({ model, messages: [question] });
check(first.text === "Hello Ada.", `first turn: ${JSON.stringify(first.text)}`);
const second = await generateText({
  model,
  messages: [question, ...first.response.messages, { role: "user", content: "who am I?" }],
});
check(second.text === "You are Ada.", `second turn: ${JSON.stringify(second.text)}`);

// A tool loop: step one says something, then calls the tool; step two answers.
const weather = tool({
  description: "The weather in a city",
  inputSchema: jsonSchema({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }),
  execute: async ({ city }) => `sunny in ${city}`,
});
const loop = await generateText({
  model,
  prompt: "What is the weather in Paris?",
  tools: { get_weather: weather },
  stopWhen: stepCountIs(3),
});
check(loop.steps.length === 2, `two steps: ${loop.steps.length}`);
check(loop.steps[0].text === "Let me check.", `text before the call: ${JSON.stringify(loop.steps[0].text)}`);
check(loop.steps[0].toolCalls[0]?.toolName === "get_weather", "the call");
check(loop.text === "It is sunny in Paris.", `answer: ${JSON.stringify(loop.text)}`);

console.log(
  JSON.stringify({
    first: first.response.id,
    second: second.response.id,
    tool_call: loop.steps[0].response.id,
    tool_result: loop.steps[1].response.id,
  }),
);
console.log("all checks passed");
