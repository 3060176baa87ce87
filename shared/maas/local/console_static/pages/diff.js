// Diff: two versions side by side, section by section, exactly as `maas models diff NAME A B` computes it
// (GET /registry/models/{name}/diff), with pickers to compare another pair.

import { getJson } from "../api.js";
import { h, fill, link, section } from "../dom.js";
import { curlBox, loading } from "../widgets.js";
import { diffHash, modelHash, modelPath, scroller, tracked, valueText, versionHash } from "./registry_view.js";

// The sections the registry compares, in its order; a section with no differences is said to be the same.
const SECTIONS = ["params", "metrics", "signature", "data", "packages", "lineage"];

export async function render(view, { name, a, b }) {
  loading(view, `the diff of ${name} v${a} and v${b}`);
  const requests = curlBox("Page request as curl");
  // The model is read for the pickers; the diff is the request worth pasting.
  const model = await getJson(modelPath(name));
  const diff = await tracked(requests, () => getJson(`${modelPath(name)}/diff`, { query: { a, b } }));
  const bySection = new Map(SECTIONS.map((key) => [key, []]));
  for (const difference of diff.differences) {
    if (!bySection.has(difference.section)) bySection.set(difference.section, []);
    bySection.get(difference.section).push(difference);
  }
  fill(
    view,
    h("p", { class: "crumbs" }, link("#/", "Models"), " / ", link(modelHash(name), name)),
    h("h1", {}, `${name}: v${diff.a} and v${diff.b}`),
    pickers(name, model, diff.a, diff.b),
    h(
      "p",
      { class: "muted", "data-testid": "diff-summary" },
      diff.differences.length
        ? `${diff.differences.length} difference${diff.differences.length === 1 ? "" : "s"} in ${[...bySection].filter(([, rows]) => rows.length).length} of ${bySection.size} sections.`
        : "No differences: the two versions agree in every section compared.",
    ),
    [...bySection].filter(([, rows]) => rows.length).map(([key, rows]) => sectionTable(name, key, rows, diff)),
    sameSections([...bySection].filter(([, rows]) => !rows.length).map(([key]) => key)),
    requests,
  );
}

function pickers(name, model, a, b) {
  const numbers = model.versions.map((version) => version.version).sort((x, y) => x - y);
  const select = (id, label, selected) => {
    const element = h("select", { id, "data-testid": id }, numbers.map((n) => h("option", { value: String(n), selected: n === selected }, `v${n}`)));
    return [element, h("label", { for: id }, label, element)];
  };
  const [first, firstLabel] = select("diff-pick-a", "Version", a);
  const [second, secondLabel] = select("diff-pick-b", "with version", b);
  const form = h("form", { class: "row", "aria-label": "Versions to compare" }, firstLabel, secondLabel, h("button", { type: "submit", "data-testid": "diff-compare" }, "Compare"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = diffHash(name, first.value, second.value);
  });
  return form;
}

function sameSections(keys) {
  if (!keys.length) return null;
  return section("Same in both", h("ul", { class: "same-sections" }, keys.map((key) => h("li", { "data-testid": `diff-same-${key}` }, title(key)))));
}

function sectionTable(name, key, rows, diff) {
  return section(
    title(key),
    scroller(
      h(
        "table",
        { class: "diff", "data-testid": `diff-${key}` },
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, link(versionHash(name, diff.a), `v${diff.a}`)), h("th", { scope: "col" }, link(versionHash(name, diff.b), `v${diff.b}`))),
        ),
        h(
          "tbody",
          {},
          rows.map((row) =>
            h(
              "tr",
              {},
              h("th", { scope: "row", class: "mono" }, row.key),
              h("td", { class: `mono ${row.a === null || row.a === undefined ? "absent" : "side-a"}` }, valueText(row.a)),
              h("td", { class: `mono ${row.b === null || row.b === undefined ? "absent" : "side-b"}` }, valueText(row.b)),
            ),
          ),
        ),
      ),
    ),
  );
}

function title(key) {
  return key.charAt(0).toUpperCase() + key.slice(1);
}
