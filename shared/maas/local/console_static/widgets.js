// Pieces several pages share: the request shown as curl, an error line, a busy button.

import { ApiError, curlCommand, onRequest } from "./api.js";
import { h, fill } from "./dom.js";

/** A box showing the request a piece of the page sent as a curl command, with a Copy button. Call its
 * `show(record)` with a record from api.onRequest. */
export function curlBox(label = "Request as curl") {
  const code = h("code", { class: "curl", "data-testid": "curl" });
  const status = h("span", { class: "copied", role: "status" });
  const copy = h("button", { type: "button", class: "secondary", disabled: true }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code.textContent);
      status.textContent = "copied";
    } catch {
      // No clipboard permission (an insecure origin, a headless browser): select it for Ctrl-C instead.
      getSelection().selectAllChildren(code);
      status.textContent = "selected: press Ctrl-C";
    }
  });
  const box = h("details", { class: "curl-box" }, h("summary", {}, label), h("pre", {}, code), h("div", { class: "row" }, copy, status));
  box.show = async (record) => {
    code.textContent = await curlCommand(record);
    copy.disabled = false;
    status.textContent = "";
  };
  return box;
}

/** A live region that shows an error as the API wrote it, or nothing. */
export function errorLine() {
  const line = h("p", { class: "error", role: "alert", "data-testid": "error", hidden: true });
  line.show = (error) => {
    if (!error) {
      line.hidden = true;
      line.textContent = "";
      return;
    }
    line.hidden = false;
    line.textContent = error instanceof ApiError ? `${error.status}: ${error.message}` : String(error.message || error);
  };
  return line;
}

/** Run `action` with `button` disabled and marked busy meanwhile; errors go to `errors` (an errorLine). */
export async function busy(button, errors, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  errors?.show(null);
  try {
    return await action();
  } catch (error) {
    if (errors) errors.show(error);
    else throw error;
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

export function loading(view, what) {
  fill(view, h("p", { class: "muted", role: "status" }, `Loading ${what}…`));
}

/** Run `action` and show in `box` (a curlBox) the last request it sent, even when it was refused: a refused
 * request is the one a reader most wants to paste. */
export async function tracked(box, action) {
  let last = null;
  const stop = onRequest((record) => {
    last = record;
  });
  try {
    return await action();
  } finally {
    stop();
    if (last) await box.show(last);
  }
}
