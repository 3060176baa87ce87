// The console's router: the hash names the page (#/models/NAME/versions/3), each page is a module whose
// render(view, params) fills the view. Pages load on first visit, so the models list never waits for the
// playground's code.

import { h, fill } from "./dom.js";
import { errorLine } from "./widgets.js";

// [pattern, module, page title]; patterns match the hash path, {x} capturing one decoded segment.
const ROUTES = [
  ["/", "./pages/models.js", "Models"],
  ["/models", "./pages/models.js", "Models"],
  ["/models/{name}", "./pages/model.js", "Model"],
  ["/models/{name}/versions/{version}", "./pages/version.js", "Version"],
  ["/models/{name}/diff/{a}/{b}", "./pages/diff.js", "Diff"],
  ["/models/{name}/play", "./playground/playground.js", "Playground"],
  ["/models/{name}/versions/{version}/play", "./playground/playground.js", "Playground"],
  ["/settings", "./pages/settings.js", "Settings"],
];

function match(path) {
  const segments = path.split("/").filter(Boolean);
  for (const [pattern, module, title] of ROUTES) {
    const parts = pattern.split("/").filter(Boolean);
    if (parts.length !== segments.length) continue;
    const params = {};
    let ok = true;
    parts.forEach((part, index) => {
      const capture = /^\{(\w+)\}$/.exec(part);
      if (!capture) ok &&= part === segments[index];
      else {
        try {
          params[capture[1]] = decodeURIComponent(segments[index]);
        } catch {
          ok = false; // a malformed escape (#/models/%zz) names no page
        }
      }
    });
    if (ok) return { module, title, params };
  }
  return null;
}

let generation = 0;

async function show() {
  const view = document.getElementById("view");
  const current = ++generation;
  const [path, queryText] = (location.hash.replace(/^#/, "") || "/").split("?");
  const route = match(path);
  if (!route) {
    document.title = "Not found · maas console";
    fill(view, h("h1", {}, "Not found"), h("p", {}, `No console page at ${path}. `, h("a", { href: "#/" }, "Models")));
    return;
  }
  document.title = `${route.title} · maas console`;
  const errors = errorLine();
  try {
    const page = await import(route.module);
    if (current !== generation) return;
    fill(view);
    await page.render(view, { ...route.params, query: new URLSearchParams(queryText || "") });
  } catch (error) {
    if (current !== generation) return;
    fill(view, h("h1", {}, route.title), errors);
    errors.show(error);
  }
  if (current === generation) {
    for (const anchor of document.querySelectorAll("header nav a")) {
      anchor.toggleAttribute("aria-current", anchor.getAttribute("href") === `#${path}`);
    }
  }
}

window.addEventListener("hashchange", () => {
  show().then(() => document.getElementById("view").focus({ preventScroll: true }));
});
show();
