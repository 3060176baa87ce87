// Version: the model card with its plots, the signature, metrics, per-class evaluation and the confusion
// matrix as a heat table, lineage, checksums; and the version's own actions, tags and archive.

import { getJson, sendJson } from "../api.js";
import { h, fill, facts, link, number, section, when } from "../dom.js";
import { busy, curlBox, errorLine, loading } from "../widgets.js";
import { CARD_FILE, modelCard } from "./model_card.js";
import {
  goalPhrase,
  modelHash,
  modelPath,
  playHash,
  scroller,
  statusBadge,
  tracked,
  valueText,
  versionPath,
} from "./registry_view.js";

export async function render(view, { name, version }) {
  loading(view, `${name} v${version}`);
  const requests = curlBox("Page request as curl");
  const [detail, model] = await tracked(requests, () =>
    Promise.all([getJson(versionPath(name, version)), getJson(modelPath(name))]),
  );
  const { manifest, meta } = detail;
  const reportFiles = manifest.artifacts.map((artifact) => artifact.path).filter((path) => /\.(md|png)$/.test(path));
  const cardPanel = h("div");
  const page = { name, version: manifest.version, manifest, meta, model };
  fill(
    view,
    h("p", { class: "crumbs" }, link("#/", "Models"), " / ", link(modelHash(name), name)),
    h("h1", {}, `${name} v${manifest.version} `, h("span", { "data-testid": "version-status" }, statusBadge(meta.status))),
    h("p", { class: "row" }, link(playHash(name, manifest.version), "Open in the playground"), aliasNote(model, manifest.version)),
    manifest.description ? h("p", {}, manifest.description) : null,
    h("div", { class: "grid spaced" }, summarySection(manifest), metricsSection(manifest)),
    h("div", { class: "grid spaced" }, tagsSection(page), archiveSection(page)),
    signatureSection(manifest),
    evaluationSections(manifest),
    cardPanel,
    h("div", { class: "grid spaced" }, lineageSection(manifest), paramsSection(manifest)),
    checksumsSection(manifest),
    requests,
  );
  fill(cardPanel, await cardSection(page, reportFiles));
}

function aliasNote(model, version) {
  const names = aliasesAt(model, version);
  return names.length ? h("span", {}, "Aliases here: ", names.map((alias) => h("span", { class: "badge alias" }, alias))) : null;
}

/** The aliases that route traffic to `version`, as its alias or its canary. */
function aliasesAt(model, version) {
  return Object.entries(model.aliases || {}).flatMap(([alias, document]) => [
    ...(document.version === version ? [alias] : []),
    ...(document.canary?.version === version ? [`${alias} (canary)`] : []),
  ]);
}

function summarySection(manifest) {
  return section(
    "Summary",
    facts([
      ["Task", manifest.task || "—"],
      ["Created", when(manifest.created_at)],
      ["Labels", manifest.labels ? manifest.labels.join(", ") : "—"],
      ["Primary metric", manifest.primary_metric ? `${manifest.primary_metric} (${goalPhrase(manifest.primary_metric_goal)})` : "none"],
      ["Parity", manifest.parity ? `${manifest.parity.passed ? "passed" : "FAILED"}: max |Δ| ${number(manifest.parity.max_abs_diff)} ≤ ${number(manifest.parity.tolerance)} on ${manifest.parity.samples} samples` : "—"],
      ["Quantization", manifest.quantization ? `${manifest.quantization.scheme}: ${manifest.quantization.metric} ${number(manifest.quantization.fp32_value)} → ${number(manifest.quantization.quantized_value)}` : "—"],
      ["Preprocessing", manifest.preprocessing?.description || (manifest.preprocessing?.tokenizer ? "tokenized text" : "—")],
      manifest.generation ? ["Generation", generationText(manifest.generation)] : null,
    ].filter(Boolean)),
  );
}

function generationText({ context_length, num_layers, kv_datatype, defaults }) {
  return `${context_length}-token context, ${num_layers} layers, ${kv_datatype} cache; defaults: temperature ${number(defaults.temperature)}, top-p ${number(defaults.top_p)}, ${defaults.max_tokens} max tokens`;
}

function metricsSection(manifest) {
  const entries = Object.entries(manifest.metrics || {}).sort(([a], [b]) => (a === manifest.primary_metric ? -1 : b === manifest.primary_metric ? 1 : a.localeCompare(b)));
  if (!entries.length) return section("Metrics", h("p", { class: "muted" }, "No metrics recorded."));
  return section(
    "Metrics",
    h(
      "table",
      { "data-testid": "metrics-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Metric"), h("th", { scope: "col", class: "num" }, "Value"))),
      h(
        "tbody",
        {},
        entries.map(([key, value]) =>
          h("tr", {}, h("th", { scope: "row" }, key, key === manifest.primary_metric ? h("span", { class: "muted" }, ` ★ ${goalPhrase(manifest.primary_metric_goal)}`) : null), h("td", { class: "num mono" }, number(value))),
        ),
      ),
    ),
  );
}

async function cardSection(page, files) {
  if (!files.includes(CARD_FILE)) return section("Model card", h("p", { class: "muted" }, "This version was published without a card."));
  const status = h("p", { class: "muted small", role: "status", "data-testid": "plots-status" });
  const plots = files.filter((file) => file.endsWith(".png"));
  let loaded = 0;
  let failed = 0;
  const count = () => {
    status.textContent = `${loaded} of ${plots.length} plot${plots.length === 1 ? "" : "s"} loaded${failed ? `, ${failed} failed` : ""}.`;
  };
  try {
    const card = await modelCard(page.name, page.version, files, {
      onPlot: () => {
        loaded += 1;
        count();
      },
      onPlotError: () => {
        failed += 1;
        count();
      },
    });
    return section("Model card", card, plots.length ? status : null);
  } catch (error) {
    // The card is one panel of the page: the rest of what the version says stays readable without it.
    const line = errorLine();
    line.setAttribute("data-testid", "card-error");
    line.show(error);
    return section("Model card", line);
  }
}

function signatureSection({ signature, preprocessing }) {
  const rows = [
    ...signature.inputs.map((spec) => ["input", spec]),
    ...signature.outputs.map((spec) => ["output", spec]),
  ];
  const tokenizer = preprocessing?.tokenizer;
  return section(
    "Signature",
    tokenizer ? h("p", { class: "muted" }, `Clients send one BYTES input, "${tokenizer.text_input}" (a batch of texts); the runtime tokenizes it (at most ${tokenizer.max_length} tokens) into the graph's inputs below.`) : null,
    scroller(
      h(
        "table",
        { "data-testid": "signature-table" },
        h("thead", {}, h("tr", {}, ["", "Name", "Datatype", "Shape"].map((title) => h("th", { scope: "col" }, title)))),
        h("tbody", {}, rows.map(([kind, spec]) => h("tr", {}, h("td", { class: "muted" }, kind), h("th", { scope: "row", class: "mono" }, spec.name), h("td", { class: "mono" }, spec.datatype), h("td", { class: "mono" }, `[${spec.shape.join(", ")}]`)))),
      ),
    ),
  );
}

function evaluationSections({ evaluation }) {
  const sections = [];
  const perClass = evaluation?.per_class;
  if (perClass && Object.keys(perClass).length) {
    const labels = Object.keys(perClass);
    const columns = [...new Set(labels.flatMap((label) => Object.keys(perClass[label])))];
    sections.push(
      section(
        "Per-class evaluation",
        scroller(
          h(
            "table",
            { "data-testid": "per-class-table" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Class"), columns.map((column) => h("th", { scope: "col", class: "num" }, column)))),
            h("tbody", {}, labels.map((label) => h("tr", {}, h("th", { scope: "row" }, label), columns.map((column) => h("td", { class: "num mono" }, number(perClass[label][column])))))),
          ),
        ),
      ),
    );
  }
  const matrix = evaluation?.confusion_matrix;
  if (Array.isArray(matrix) && matrix.length) sections.push(section("Confusion matrix", confusionTable(evaluation.labels || matrix.map((_, index) => String(index)), matrix)));
  return sections;
}

/** Rows are the true class, columns the predicted one; each cell's shade is its share of its row, so a
 * small class's mistakes show as plainly as a large one's. */
function confusionTable(labels, matrix) {
  const cell = (count, rowTotal, diagonal) => {
    const element = h("td", { class: `num mono heat ${diagonal ? "hit" : "miss"}` }, String(count));
    const share = rowTotal ? count / rowTotal : 0;
    if (share > 0) {
      element.style.backgroundColor = diagonal ? `rgba(17, 122, 55, ${0.12 + 0.7 * share})` : `rgba(180, 35, 24, ${0.12 + 0.7 * share})`;
      if (share > 0.55) element.classList.add("dark");
    }
    element.title = `${(share * 100).toFixed(1)}% of the row`;
    return element;
  };
  return h(
    "div",
    {},
    h("p", { class: "muted small" }, "Rows: the true class; columns: the predicted class. Shade: share of the row (green right, red wrong)."),
    scroller(
      h(
        "table",
        { class: "confusion", "data-testid": "confusion-matrix" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "true \\ predicted"), labels.map((label) => h("th", { scope: "col", class: "num" }, label)))),
        h(
          "tbody",
          {},
          matrix.map((row, i) => {
            const total = row.reduce((sum, count) => sum + count, 0);
            return h("tr", {}, h("th", { scope: "row" }, labels[i] ?? String(i)), row.map((count, j) => cell(count, total, i === j)));
          }),
        ),
      ),
    ),
  );
}

function lineageSection({ lineage }) {
  const packages = Object.entries(lineage.packages || {});
  return section(
    "Lineage",
    facts([
      ["Recipe", lineage.recipe || "—"],
      ["Dataset sha256", lineage.dataset_hash ? h("code", { class: "hash" }, lineage.dataset_hash) : "—"],
      ["Code version", lineage.code_version ? h("code", {}, lineage.code_version) : "—"],
      ["Seed", valueText(lineage.seed)],
    ]),
    packages.length
      ? [h("h3", {}, "Packages"), scroller(h("table", { "data-testid": "packages-table" }, h("tbody", {}, packages.map(([pkg, ver]) => h("tr", {}, h("th", { scope: "row" }, pkg), h("td", { class: "mono" }, ver))))))]
      : null,
  );
}

function paramsSection({ params }) {
  const entries = Object.entries(params || {});
  return section(
    "Parameters",
    entries.length
      ? scroller(h("table", { "data-testid": "params-table" }, h("tbody", {}, entries.map(([key, value]) => h("tr", {}, h("th", { scope: "row" }, key), h("td", { class: "mono" }, valueText(value)))))))
      : h("p", { class: "muted" }, "None recorded."),
  );
}

function checksumsSection({ artifacts }) {
  return section(
    "Files and checksums",
    scroller(
      h(
        "table",
        { "data-testid": "checksums-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "File"), h("th", { scope: "col", class: "num" }, "Bytes"), h("th", { scope: "col" }, "sha256"))),
        h("tbody", {}, artifacts.map((artifact) => h("tr", {}, h("th", { scope: "row", class: "mono" }, artifact.path), h("td", { class: "num mono" }, artifact.bytes.toLocaleString("en")), h("td", {}, h("code", { class: "hash" }, artifact.sha256))))),
      ),
    ),
  );
}

// ---- actions

function tagsSection(page) {
  const list = h("ul", { class: "tags", "data-testid": "tags" });
  const errors = errorLine();
  const requests = curlBox();
  const key = h("input", { id: "tag-key", "data-testid": "tag-key", required: true, autocomplete: "off", spellcheck: "false" });
  const value = h("input", { id: "tag-value", "data-testid": "tag-value", autocomplete: "off", spellcheck: "false" });
  const add = h("button", { type: "submit", "data-testid": "tag-add" }, "Add tag");
  const send = (body, button) =>
    busy(button, errors, async () => {
      const meta = await tracked(requests, () => sendJson("PUT", `${versionPath(page.name, page.version)}/tags`, body));
      page.meta = meta;
      draw();
      return meta;
    });
  const draw = () => {
    const entries = Object.entries(page.meta.tags || {});
    fill(
      list,
      entries.length
        ? entries.map(([tagKey, tagValue]) => {
            const remove = h("button", { type: "button", class: "linkish", "aria-label": `Remove tag ${tagKey}`, "data-testid": `tag-remove-${tagKey}` }, "✕");
            remove.addEventListener("click", () => send({ remove: [tagKey] }, remove).then(() => key.focus()));
            return h("li", { class: "badge" }, `${tagKey}=${tagValue} `, remove);
          })
        : h("li", { class: "muted" }, "No tags."),
    );
  };
  const form = h("form", { class: "row", "aria-label": "Add a tag" }, h("label", { for: "tag-key" }, "Key", key), h("label", { for: "tag-value" }, "Value", value), add);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const tagKey = key.value.trim();
    if (!tagKey) return;
    if (await send({ tags: { [tagKey]: value.value } }, add)) {
      key.value = "";
      value.value = "";
    }
  });
  draw();
  return section("Tags", list, form, errors, requests);
}

function archiveSection(page) {
  const errors = errorLine();
  const requests = curlBox();
  const status = h("p", { role: "status", "data-testid": "archive-status" });
  const button = h("button", { type: "button", class: "danger", "data-testid": "archive" }, `Archive v${page.version}`);
  const aliases = aliasesAt(page.model, page.version);
  const draw = () => {
    if (page.meta.status === "archived") {
      status.textContent = "Archived: no alias can be moved to it, though a client that pins it is still served.";
      button.hidden = true;
    } else if (aliases.length) {
      // The API refuses to archive a version an alias routes to; say so instead of sending a doomed request.
      status.textContent = `Not archivable while ${aliases.join(", ")} point${aliases.length === 1 ? "s" : ""} at it: move ${aliases.length === 1 ? "that alias" : "those aliases"} first.`;
      button.hidden = true;
    } else {
      status.textContent = "Archived versions stay readable and servable when pinned, but are never promoted.";
    }
  };
  button.addEventListener("click", () =>
    busy(button, errors, async () => {
      page.meta = await tracked(requests, () => sendJson("POST", `${versionPath(page.name, page.version)}/archive`));
      draw();
      const badge = document.querySelector('[data-testid="version-status"]');
      if (badge) fill(badge, statusBadge(page.meta.status));
    }),
  );
  draw();
  return section("Archive", status, button, errors, requests);
}
