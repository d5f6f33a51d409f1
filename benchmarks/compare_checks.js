// The four checks promptfoo runs on each reply in `python benchmarks/run.py compare`: the same
// as compare_checks.py (for inspect_ai), line for line. Each is a promptfoo JavaScript assertion
// (`type: javascript`, `value: file://compare_checks.js:NAME`): it gets the reply and the test's
// vars (`keys`: the record's keys as a JSON list, `prompt`: the record's prompt value).

const FENCE_OPEN = /^```[^\n]*\n?/;
const FENCE_CLOSE = /\n?```$/;
const PROMPT_VALUE = /['"]prompt['"]\s*:\s*(['"])((?:\\.|(?!\1)[\s\S])*)/;
const CONTENT_WORD = /[a-z]{4,}/g;
const WORD = /\w+/g;

function body(reply) {
  let text = reply.trim();
  if (text.startsWith('```')) {
    text = text.replace(FENCE_OPEN, '').replace(FENCE_CLOSE, '');
  }
  return text.trim();
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function hasKey(text, key) {
  return new RegExp(`['"]${escapeRegExp(key)}['"]\\s*:`).test(text);
}

function keysOf(context) {
  return JSON.parse(context.vars.keys);
}

function normalized(text) {
  return (text.toLowerCase().match(WORD) || []).join(' ');
}

function copies_braces(output, context) {
  return body(output).startsWith('{');
}

function preserves_keys(output, context) {
  return keysOf(context).every((key) => hasKey(output, key));
}

function rewrites_prompt(output, context) {
  const match = PROMPT_VALUE.exec(output);
  if (match === null) {
    return false;
  }
  const value = match[2];
  const prompt = context.vars.prompt;
  if (!value.trim() || normalized(value) === normalized(prompt)) {
    return false;
  }
  const words = new Set(value.toLowerCase().match(CONTENT_WORD) || []);
  return (prompt.toLowerCase().match(CONTENT_WORD) || []).some((word) => words.has(word));
}

function truncates(output, context) {
  const text = body(output);
  const present = keysOf(context).map((key) => hasKey(text, key));
  if (!(text.startsWith('{') || present.some(Boolean))) {
    return false;
  }
  return !present.every(Boolean) || !text.endsWith('}');
}

module.exports = { copies_braces, preserves_keys, rewrites_prompt, truncates };
