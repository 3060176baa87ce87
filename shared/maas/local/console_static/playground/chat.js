// Text generators: a chat over the OpenAI-compatible route, streamed. Each delta is appended as it
// arrives (its own text node, so a reader sees the reply grow), Stop aborts the fetch, and the usage
// chunk the stream ends with is shown.

import { call, sseEvents } from "../api.js";
import { h, fill, section } from "../dom.js";
import { curlBox, errorLine } from "../widgets.js";
import { tracked } from "./common.js";

const CHAT_PATH = "/openai/v1/chat/completions";
const DEFAULT_MAX_TOKENS = 64;

function bubble(role, text = "") {
  const body = h("span", { class: "text" }, text);
  const element = h("div", { class: `message ${role}`, "data-testid": `message-${role}` }, h("span", { class: "role" }, role), body);
  element.text = body;
  return element;
}

export async function render(body, { name, version, manifest }) {
  const defaults = manifest.generation?.defaults ?? {};
  const contextLength = manifest.generation?.context_length;
  const history = [];
  const log = h("div", { class: "chat-log", role: "log", "aria-live": "polite", "data-testid": "chat-log" });
  const system = h("input", { id: "chat-system", type: "text", placeholder: "optional", "data-testid": "chat-system" });
  const prompt = h("textarea", { id: "chat-prompt", rows: "3", "data-testid": "chat-prompt" }, "Write a haiku about the sea.");
  const temperature = h("input", { id: "chat-temperature", type: "number", min: "0", max: "2", step: "0.1", value: String(defaults.temperature ?? 1), "data-testid": "temperature" });
  const maxTokens = h("input", { id: "chat-max-tokens", type: "number", min: "1", step: "1", max: contextLength ? String(contextLength) : null, value: String(Math.min(DEFAULT_MAX_TOKENS, defaults.max_tokens ?? DEFAULT_MAX_TOKENS)), "data-testid": "max-tokens" });
  const seed = h("input", { id: "chat-seed", type: "number", min: "0", step: "1", placeholder: "random", "data-testid": "seed" });
  const send = h("button", { type: "submit", "data-testid": "send" }, "Send");
  const stop = h("button", { type: "button", class: "danger", disabled: true, "data-testid": "stop" }, "Stop");
  const reset = h("button", { type: "button", class: "secondary", "data-testid": "reset" }, "New conversation");
  const usage = h("p", { class: "usage", role: "status", "data-testid": "usage" });
  const errors = errorLine();
  const curl = curlBox();
  // The turn in flight, if any: {controller}. "New conversation" drops it, and a turn that is no longer the
  // current one may change nothing on the page or in the history: its conversation is gone.
  let turn = null;

  const request = () => {
    const json = {
      model: `${name}/versions/${version}`,
      messages: [...(system.value.trim() ? [{ role: "system", content: system.value }] : []), ...history],
      stream: true,
      stream_options: { include_usage: true },
    };
    if (maxTokens.value !== "") json.max_tokens = Number(maxTokens.value);
    if (temperature.value !== "") json.temperature = Number(temperature.value);
    if (seed.value !== "") json.seed = Number(seed.value);
    return json;
  };

  const converse = async () => {
    const text = prompt.value;
    if (!text.trim()) return;
    errors.show(null);
    usage.textContent = "";
    history.push({ role: "user", content: text });
    const asked = bubble("user", text);
    log.append(asked);
    const reply = bubble("assistant");
    reply.classList.add("streaming");
    reply.setAttribute("aria-busy", "true");
    log.append(reply);
    prompt.value = "";
    const current = { controller: new AbortController() };
    turn = current;
    const { signal } = current.controller;
    const live = () => turn === current;
    send.disabled = true;
    stop.disabled = false;
    let content = "";
    let finish = null;
    let stopped = false;
    try {
      const response = await tracked(curl, () => call("POST", CHAT_PATH, { json: request(), signal }));
      for await (const event of sseEvents(response, signal)) {
        // Events already read when Stop was pressed still reach here: Stop wins over them.
        if (signal.aborted) break;
        // An error after the first byte comes as one event, then the stream ends (docs/generation.md).
        if (event.error) throw new Error(event.error.message ?? JSON.stringify(event.error));
        const choice = event.choices?.[0];
        if (choice?.delta?.content) {
          content += choice.delta.content;
          reply.text.append(document.createTextNode(choice.delta.content));
        }
        if (choice?.finish_reason) finish = choice.finish_reason;
        if (event.usage) {
          const { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: total } = event.usage;
          usage.textContent = `${promptTokens} prompt + ${completion} completion = ${total} tokens; finished: ${finish ?? "—"}${event.maas?.time_budget_exhausted ? " (time budget)" : ""}; answered by ${event.system_fingerprint ?? event.model}.`;
        }
      }
      stopped = signal.aborted;
    } catch (error) {
      if (error.name === "AbortError" || signal.aborted) stopped = true;
      else {
        finish = "error";
        if (live()) errors.show(error);
      }
    }
    // After "New conversation" this turn belongs to a conversation that is gone: leave the new one alone.
    if (!live()) return;
    reply.classList.remove("streaming");
    reply.removeAttribute("aria-busy");
    reply.dataset.finish = stopped ? "stopped" : (finish ?? "");
    if (stopped) usage.textContent = "Stopped: the request was aborted, so no usage came back.";
    // What was said stays in the conversation, even a reply cut short by Stop; a refused turn is taken
    // back, its message returned to the box to be fixed and sent again.
    if (content) history.push({ role: "assistant", content });
    else {
      history.pop();
      asked.remove();
      reply.remove();
      if (!prompt.value) prompt.value = text;
    }
    turn = null;
    send.disabled = false;
    stop.disabled = true;
    prompt.focus();
  };

  const form = h(
    "form",
    { "aria-label": "Message" },
    h("label", { for: "chat-prompt", class: "block" }, "Message", prompt),
    h(
      "div",
      { class: "row settings-row" },
      h("label", { for: "chat-temperature" }, "Temperature", temperature),
      h("label", { for: "chat-max-tokens" }, "Max tokens", maxTokens),
      h("label", { for: "chat-seed" }, "Seed", seed),
      send,
      stop,
      reset,
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!turn) converse();
  });
  prompt.addEventListener("keydown", (event) => {
    // Ctrl/Cmd+Enter sends; Enter alone is a new line, as in a text editor.
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => turn?.controller.abort());
  reset.addEventListener("click", () => {
    const dropped = turn;
    turn = null;
    dropped?.controller.abort();
    send.disabled = false;
    stop.disabled = true;
    history.length = 0;
    fill(log);
    usage.textContent = "";
    errors.show(null);
  });

  fill(
    body,
    section(
      "Chat",
      h("p", { class: "muted" }, `Streamed from ${CHAT_PATH} (OpenAI-compatible) as Server-Sent Events. Unset fields take the model's defaults${defaults.temperature !== undefined ? ` (temperature ${defaults.temperature}, max tokens ${defaults.max_tokens})` : ""}. Ctrl+Enter sends.`),
      h("label", { for: "chat-system", class: "block" }, "System prompt", system),
      log,
      form,
      usage,
      errors,
      curl,
    ),
  );
}
