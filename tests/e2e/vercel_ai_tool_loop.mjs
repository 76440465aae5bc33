// The Vercel AI SDK's Responses provider with its default settings, through a two-step tool loop.
// Usage: node vercel_ai_tool_loop.mjs BASE_URL API_KEY generate|stream, with the packages in a node_modules beside the script.
// Prints one JSON line: the final text, the steps, the tool results, and the request bodies the SDK sent
// (recorded by a fetch wrapper that passes every request through unchanged).
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";

const [baseURL, apiKey, how] = process.argv.slice(2);
const sent = [];
const recording = async (url, init) => {
  if (init?.body) sent.push(JSON.parse(init.body));
  return fetch(url, init);
};
const openai = createOpenAI({ baseURL, apiKey, fetch: recording });

const settings = {
  model: openai.responses("gpt-5.5"),
  prompt: "What is the weather in Paris?",
  tools: {
    get_weather: tool({
      description: "Weather for a city",
      inputSchema: jsonSchema({
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
      }),
      execute: async ({ city }) => `sunny in ${city}`,
    }),
  },
  stopWhen: stepCountIs(2),
  maxRetries: 0,
};
let result;
if (how === "stream") {
  const errors = [];
  const streamed = streamText({ ...settings, onError: ({ error }) => errors.push(error) });
  let text = "";
  for await (const delta of streamed.textStream) text += delta;
  if (errors.length) throw errors[0]; // streamText reports failures here, not by throwing
  result = { text, steps: await streamed.steps, finishReason: await streamed.finishReason };
} else {
  result = await generateText(settings);
}

console.log(
  JSON.stringify({
    text: result.text,
    steps: result.steps.length,
    toolResults: result.steps.flatMap((s) => s.toolResults.map((r) => r.output)),
    finishReason: result.finishReason,
    sent,
  }),
);
