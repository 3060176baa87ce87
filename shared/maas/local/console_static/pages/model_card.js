// The model card: card.md rendered by the vendored marked, sanitized by the vendored DOMPurify, with each
// plot it links fetched signed from the registry and shown from a blob: URL. It is the only HTML the console
// renders from the API.

import { call } from "../api.js";
import { h, encode } from "../dom.js";
import { marked } from "../vendor/marked/marked.esm.js";
import DOMPurify from "../vendor/dompurify/purify.es.js";
import { versionPath } from "./registry_view.js";

export const CARD_FILE = "card.md";
// The card's own headings sit under the page's "Model card" heading (an h2), so they start at h3.
const HEADING_SHIFT = 2;

// An <img src="loss.png"> would make the browser fetch /console/loss.png (unsigned, and not there) the moment
// the sanitized fragment joins the page, so the source is moved aside while DOMPurify still holds it in its
// inert document, and set later to the fetched bytes. Inline styles and <style> would break the CSP.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "IMG") {
    const source = node.getAttribute("src");
    node.removeAttribute("src");
    node.removeAttribute("srcset");
    if (source) node.setAttribute("data-file", source);
  }
});
const PURIFY_OPTIONS = { RETURN_DOM_FRAGMENT: true, FORBID_TAGS: ["style", "form", "input", "button"], FORBID_ATTR: ["style"] };

/** The version's card, its plots loaded; `files` are the manifest's report files (card.md and its PNGs). */
export async function modelCard(name, version, files, { onPlot } = {}) {
  const base = `${versionPath(name, version)}/files`;
  const text = await (await call("GET", `${base}/${encode(CARD_FILE)}`)).text();
  const fragment = DOMPurify.sanitize(marked.parse(text, { async: false, gfm: true }), PURIFY_OPTIONS);
  shiftHeadings(fragment);
  const card = h("article", { class: "card", "data-testid": "model-card" });
  card.append(fragment);
  const plots = [...card.querySelectorAll("img[data-file]")].map(async (image) => {
    const file = image.getAttribute("data-file");
    if (!files.includes(file)) {
      // A link to anything but this version's own plots is not followed: only the alt text shows.
      image.replaceWith(h("span", { class: "muted" }, `[image ${image.alt || file}: not one of this version's files]`));
      return;
    }
    const bytes = await (await call("GET", `${base}/${encode(file)}`)).blob();
    const url = URL.createObjectURL(bytes);
    image.addEventListener(
      "load",
      () => {
        // Decoded and shown: the bytes need not stay held by the URL.
        URL.revokeObjectURL(url);
        onPlot?.(file);
      },
      { once: true },
    );
    image.setAttribute("data-testid", `plot-${file}`);
    image.src = url;
  });
  await Promise.all(plots);
  return card;
}

function shiftHeadings(fragment) {
  for (const heading of fragment.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
    const level = Math.min(6, Number(heading.tagName[1]) + HEADING_SHIFT);
    const shifted = document.createElement(`h${level}`);
    shifted.append(...heading.childNodes);
    heading.replaceWith(shifted);
  }
}
