// Runs book/_static/gpt.js under Node for tests/test_browser.py: a JSON request on stdin,
// a JSON answer on stdout (logits, attention weights, generated tokens, the weights).
// Run: node tests/gpt_node.js < request.json
"use strict";
const fs = require("fs");
const path = require("path");
const GPTJS = require(path.join(__dirname, "..", "book", "_static", "gpt.js"));

const request = JSON.parse(fs.readFileSync(0, "utf8"));
const file = fs.readFileSync(request.model);
const bytes = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength);
const model = GPTJS.parseModel(bytes);
const gpt = new GPTJS.GPT(model);
const answer = { config: model.config, vocab: model.vocab, source: model.source };

if (request.weights) {
  const entries = Object.entries(model.weights).map(([name, w]) => [name, Array.from(w)]);
  answer.weights = Object.fromEntries(entries);
}
// Every position's logits of each prompt, and the attention of its last position.
answer.forward = (request.prompts || []).map((ids) => {
  const cache = gpt.newCache();
  let out;
  const logits = ids.map((id) => Array.from((out = gpt.step(id, cache)).logits));
  const attention = out.attention.map((heads) => heads.map((w) => Array.from(w)));
  return { logits, attention };
});
answer.generate = (request.generate || []).map((args) => {
  const steps = Array.from(GPTJS.generate(gpt, args.prompt, args.options));
  return { ids: steps.map((s) => s.id), contexts: steps.map((s) => s.context) };
});
answer.errors = (request.errors || []).map(({ text, options }) => {
  try {
    Array.from(GPTJS.generate(gpt, gpt.encode(text), options));
    return null;
  } catch (err) {
    return err.message;
  }
});
process.stdout.write(JSON.stringify(answer));
