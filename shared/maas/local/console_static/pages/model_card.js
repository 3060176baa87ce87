// The model card: card.md rendered by the vendored marked, sanitized by the vendored DOMPurify, with each
// plot it links fetched signed from the registry and shown from a blob: URL. It is the only HTML the console
// renders from the API.

import { ApiError, call } from "../api.js";
import { h, encode } from "../dom.js";
import { Marked } from "../vendor/marked/marked.esm.js";
import DOMPurify from "../vendor/dompurify/purify.es.js";
import { versionPath } from "./registry_view.js";

export const CARD_FILE = "card.md";
// The card's own headings sit under the page's "Model card" heading (an h2), so they start at h3.
const HEADING_SHIFT = 2;

// A card is markdown: raw HTML in it is dropped by marked itself, so none of it ever reaches DOMPurify, which
// then only has marked's own output to clean (a `javascript:` link, an image's source). A separate instance,
// so no other page's markdown is affected.
const markdown = new Marked({ gfm: true, async: false, renderer: { html: () => "" } });

// An <img src="loss.png"> would make the browser fetch /console/loss.png (unsigned, and not there) the moment
// the sanitized fragment joins the page, so the source is moved aside while DOMPurify still holds it in its
// inert document, and set later to the fetched bytes.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "IMG") {
    const source = node.getAttribute("src");
    node.removeAttribute("src");
    node.removeAttribute("srcset");
    if (source) node.setAttribute("data-file", source);
  }
});
// Second line of defence should marked ever let HTML through: nothing that loads a resource on its own
// (srcset, poster, <source>, SVG's <image>), nothing the CSP would refuse with a console error (style), and
// ids prefixed so a card cannot take the page's own (id="view").
const PURIFY_OPTIONS = {
  RETURN_DOM_FRAGMENT: true,
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["picture", "source", "video", "audio", "style", "form", "input", "button", "iframe", "object", "embed", "svg", "math"],
  FORBID_ATTR: ["style", "srcset", "poster"],
  SANITIZE_NAMED_PROPS: true,
};

/** The version's card, its plots loaded; `files` are the manifest's report files (card.md and its PNGs).
 * A plot that cannot be fetched or shown is replaced by a note naming it and why; the card still renders. */
export async function modelCard(name, version, files, { onPlot, onPlotError } = {}) {
  const base = `${versionPath(name, version)}/files`;
  const text = await (await call("GET", `${base}/${encode(CARD_FILE)}`)).text();
  const fragment = DOMPurify.sanitize(markdown.parse(text), PURIFY_OPTIONS);
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
    const failed = (why) => {
      image.replaceWith(h("span", { class: "plot-error", role: "note", "data-testid": `plot-error-${file}` }, `Plot ${file} could not be shown: ${why}`));
      onPlotError?.(file);
    };
    let url;
    try {
      url = URL.createObjectURL(await (await call("GET", `${base}/${encode(file)}`)).blob());
    } catch (error) {
      failed(error instanceof ApiError ? `${error.status}: ${error.message}` : String(error.message || error));
      return;
    }
    image.addEventListener(
      "load",
      () => {
        // Decoded and shown: the bytes need not stay held by the URL.
        URL.revokeObjectURL(url);
        onPlot?.(file);
      },
      { once: true },
    );
    image.addEventListener(
      "error",
      () => {
        URL.revokeObjectURL(url);
        failed("its bytes are not an image the browser can decode");
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
