// Models: every model in the registry with its aliases, its latest version, that version's primary metric,
// status and task, from the one GET /registry/models.

import { getJson } from "../api.js";
import { h, fill, link, number } from "../dom.js";
import { curlBox, loading } from "../widgets.js";
import { aliasBadge, goalPhrase, modelHash, playHash, scroller, statusBadge, tracked, versionHash } from "./registry_view.js";

export async function render(view) {
  loading(view, "models");
  const requests = curlBox();
  const { models } = await tracked(requests, () => getJson("/registry/models"));
  const heading = h("h1", {}, "Models");
  if (!models.length) {
    fill(
      view,
      heading,
      h("p", { class: "muted", "data-testid": "no-models" }, "No models yet: publish one with ", h("code", {}, "maas train"), " or ", h("code", {}, "maas publish"), "."),
      requests,
    );
    return;
  }
  const rows = models.map((model) => modelRow(model));
  fill(
    view,
    heading,
    h("p", { class: "muted" }, `${models.length} model${models.length === 1 ? "" : "s"} in the registry.`),
    scroller(
      h(
        "table",
        { class: "models", "data-testid": "models-table" },
        h("caption", { class: "visually-hidden" }, "Models, with their aliases and latest version"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Model", "Aliases", "Latest", "Primary metric", "Status", "Task", "Try it"].map((title) =>
              h("th", { scope: "col", class: title === "Latest" ? "num" : null }, title),
            ),
          ),
        ),
        h("tbody", {}, rows),
      ),
    ),
    requests,
  );
}

function modelRow(model) {
  // `latest` is the newest ready version; a model with every version archived has none.
  const latest = model.latest ?? null;
  const canaries = model.canaries || {};
  const aliases = Object.entries(model.aliases || {}).map(([alias, version]) => [alias, { version, canary: canaries[alias] || null }]);
  return h(
    "tr",
    { "data-testid": `model-${model.name}` },
    h("th", { scope: "row" }, link(modelHash(model.name), model.name)),
    h("td", {}, aliases.length ? aliases.map(([alias, target]) => aliasBadge(alias, target)) : h("span", { class: "muted" }, "none")),
    h("td", { class: "num" }, latest ? link(versionHash(model.name, latest.version), `v${latest.version}`) : "—", h("div", { class: "muted small" }, `${model.versions.length} version${model.versions.length === 1 ? "" : "s"}`)),
    h("td", {}, latest ? primaryMetric(latest) : "—"),
    h("td", {}, latest ? statusBadge(latest.status) : statusBadge("archived")),
    h("td", {}, latest?.task || "—"),
    h("td", {}, latest ? link(playHash(model.name), "Playground") : "—"),
  );
}

function primaryMetric(latest) {
  if (!latest.primary_metric) return h("span", { class: "muted" }, "none");
  return h(
    "span",
    { title: goalPhrase(latest.primary_metric_goal) },
    `${latest.primary_metric} `,
    h("strong", { class: "mono", "data-testid": "primary-value" }, number(latest.primary_value)),
    h("span", { class: "muted small" }, ` (${goalPhrase(latest.primary_metric_goal)})`),
  );
}
