// Model: its versions (sortable by any metric), its aliases with their canary split drawn, each alias's
// history, and the actions that move aliases: promote (the gate's verdict first) and rollback.

import { ApiError, getJson, sendJson } from "../api.js";
import { h, fill, link, number, section, when, encode } from "../dom.js";
import { busy, curlBox, errorLine, loading } from "../widgets.js";
import {
  aliasBadge,
  diffHash,
  goalPhrase,
  modelPath,
  percent,
  playHash,
  scroller,
  statusBadge,
  tracked,
  valueText,
  versionHash,
} from "./registry_view.js";

const DEFAULT_ALIAS = "production";

export async function render(view, { name }) {
  loading(view, name);
  const requests = curlBox("Page request as curl");
  const detail = await tracked(requests, () => getJson(modelPath(name)));
  const versionsPanel = h("div");
  const aliasesPanel = h("div");
  const actionsPanel = h("div");
  const page = { name, detail, versionsPanel, aliasesPanel, listeners: [], sort: { key: "version", direction: "descending" } };
  page.refresh = async () => {
    page.detail = await getJson(modelPath(name));
    draw(page);
  };
  fill(
    view,
    h("h1", {}, name),
    h("p", { class: "row" }, link(playHash(name), "Open the playground"), h("span", { class: "muted" }, `${detail.versions.length} version${detail.versions.length === 1 ? "" : "s"}`)),
    versionsPanel,
    aliasesPanel,
    actionsPanel,
    requests,
  );
  fill(actionsPanel, h("div", { class: "grid spaced" }, promotePanel(page), rollbackPanel(page)));
  draw(page);
}

function draw(page) {
  fill(page.versionsPanel, versionsSection(page));
  fill(page.aliasesPanel, aliasesSection(page));
  for (const listener of page.listeners) listener();
}

// ---- versions

function metricKeys(versions) {
  const keys = new Set();
  for (const version of versions) for (const key of Object.keys(version.metrics || {})) keys.add(key);
  const primary = versions.find((version) => version.primary_metric)?.primary_metric;
  // The primary metric first: it is the one promotions compare.
  return [...keys].sort((a, b) => (a === primary ? -1 : b === primary ? 1 : a.localeCompare(b)));
}

function sortValue(version, key) {
  if (key === "version") return version.version;
  const value = version.metrics?.[key];
  return typeof value === "number" ? value : null;
}

function sorted(versions, { key, direction }) {
  const sign = direction === "ascending" ? 1 : -1;
  return [...versions].sort((a, b) => {
    const left = sortValue(a, key);
    const right = sortValue(b, key);
    // Versions without the metric go last whichever way the column is sorted.
    if (left === null || right === null) return left === null ? (right === null ? 0 : 1) : -1;
    return (left - right) * sign || b.version - a.version;
  });
}

function sortHeader(page, key, title, hint) {
  const current = page.sort.key === key ? page.sort.direction : null;
  const button = h(
    "button",
    {
      type: "button",
      "data-testid": `sort-${key}`,
      title: hint || null,
      onclick: () => {
        const direction = current === "ascending" ? "descending" : "ascending";
        page.sort = { key, direction };
        fill(page.versionsPanel, versionsSection(page));
        page.versionsPanel.querySelector(`[data-testid="sort-${CSS.escape(key)}"]`)?.focus();
      },
    },
    title,
  );
  return h("th", { scope: "col", class: key === "version" ? null : "num", "aria-sort": current || "none" }, button);
}

function versionsSection(page) {
  const { name, detail } = page;
  const keys = metricKeys(detail.versions);
  const primary = detail.versions.find((version) => version.primary_metric);
  const aliasesAt = aliasesByVersion(detail.aliases);
  const header = h(
    "tr",
    {},
    sortHeader(page, "version", "Version"),
    h("th", { scope: "col" }, "Status"),
    keys.map((key) =>
      sortHeader(page, key, key === primary?.primary_metric ? `${key} ★` : key, key === primary?.primary_metric ? `primary metric, ${goalPhrase(primary.primary_metric_goal)}` : null),
    ),
    h("th", { scope: "col" }, "Tags"),
    h("th", { scope: "col" }, "Created"),
    h("th", { scope: "col" }, "Open"),
  );
  const rows = sorted(detail.versions, page.sort).map((version) =>
    h(
      "tr",
      { "data-testid": `version-row-${version.version}` },
      h("th", { scope: "row", class: "nowrap" }, link(versionHash(name, version.version), `v${version.version}`), (aliasesAt.get(version.version) || []).map((alias) => [" ", h("span", { class: "badge alias" }, alias)])),
      h("td", {}, statusBadge(version.status)),
      keys.map((key) => h("td", { class: "num mono" }, number(version.metrics?.[key]))),
      h("td", {}, tagList(version.tags)),
      h("td", { class: "nowrap" }, when(version.created_at)),
      h(
        "td",
        { class: "nowrap" },
        link(versionHash(name, version.version), "Page"),
        " · ",
        link(playHash(name, version.version), "Playground"),
        " · ",
        h("button", { type: "button", class: "linkish", "data-testid": `diff-with-${version.version}`, onclick: () => page.chooseDiff?.(version.version) }, "Diff with…"),
      ),
    ),
  );
  const choose = diffChooser(page);
  return section(
    "Versions",
    primary ? h("p", { class: "muted" }, `Primary metric: ${primary.primary_metric} (★, ${goalPhrase(primary.primary_metric_goal)}). Sort by a column with its header button.`) : null,
    scroller(h("table", { "data-testid": "versions-table" }, h("thead", {}, header), h("tbody", {}, rows))),
    choose,
  );
}

function tagList(tags) {
  const entries = Object.entries(tags || {});
  if (!entries.length) return h("span", { class: "muted" }, "—");
  return entries.map(([key, value]) => h("span", { class: "badge" }, `${key}=${value}`));
}

function aliasesByVersion(aliases) {
  const map = new Map();
  for (const [alias, document] of Object.entries(aliases || {})) {
    map.set(document.version, [...(map.get(document.version) || []), alias]);
    if (document.canary) map.set(document.canary.version, [...(map.get(document.canary.version) || []), `${alias} canary`]);
  }
  return map;
}

/** Two version pickers and a link to their diff; "Diff with…" on a row picks its version as the first. */
function diffChooser(page) {
  const numbers = page.detail.versions.map((version) => version.version).sort((a, b) => a - b);
  if (numbers.length < 2) return h("p", { class: "muted" }, "One version: nothing to diff yet.");
  const first = versionSelect("diff-a", numbers, numbers[numbers.length - 2]);
  const second = versionSelect("diff-b", numbers, numbers[numbers.length - 1]);
  const go = h("a", { class: "button", "data-testid": "diff-go" }, "Show the diff");
  const update = () => go.setAttribute("href", diffHash(page.name, first.value, second.value));
  first.addEventListener("change", update);
  second.addEventListener("change", update);
  update();
  page.chooseDiff = (version) => {
    first.value = String(version);
    if (second.value === first.value) second.value = String(numbers.find((n) => n !== version));
    update();
    second.focus();
  };
  return h(
    "div",
    { class: "row diff-chooser", role: "group", "aria-label": "Diff two versions" },
    h("label", { for: "diff-a" }, "Version", first),
    h("label", { for: "diff-b" }, "with version", second),
    go,
  );
}

function versionSelect(id, numbers, selected) {
  return h(
    "select",
    { id, "data-testid": id },
    numbers.map((n) => h("option", { value: String(n), selected: n === selected }, `v${n}`)),
  );
}

// ---- aliases

function aliasesSection(page) {
  const entries = Object.entries(page.detail.aliases || {});
  if (!entries.length) {
    return section("Aliases", h("p", { class: "muted", "data-testid": "no-aliases" }, "No aliases: promote a version below to create one."));
  }
  return section("Aliases", entries.map(([alias, document]) => aliasBlock(page, alias, document)));
}

function aliasBlock(page, alias, document) {
  return h(
    "div",
    { class: "alias-block", "data-testid": `alias-block-${alias}` },
    h("h3", {}, aliasBadge(alias, document)),
    splitBar(alias, document),
    h(
      "p",
      { class: "muted small" },
      `Moved ${when(document.updated_at)}`,
      document.updated_by ? ` by ${document.updated_by}` : "",
      document.reason ? ` — ${document.reason}` : "",
    ),
    h("h4", {}, `History of ${alias}`),
    historyTable(alias, document.history || []),
  );
}

/** The alias's traffic as a bar in two parts: the alias's own version and its canary, sized by weight. */
function splitBar(alias, document) {
  const canary = document.canary;
  const mainWeight = canary ? 1 - canary.weight : 1;
  const part = (kind, version, weight) => {
    const element = h("div", { class: `split-part ${kind}`, "data-testid": `split-${kind}` }, h("span", {}, `v${version} ${percent(weight)}`));
    element.style.width = `${weight * 100}%`;
    return element;
  };
  const label = canary
    ? `${alias}: v${document.version} takes ${percent(mainWeight)} of the traffic, canary v${canary.version} ${percent(canary.weight)}`
    : `${alias}: v${document.version} takes all of the traffic`;
  return h(
    "div",
    { class: "split", role: "img", "aria-label": label, "data-testid": `split-${alias}` },
    part("main", document.version, mainWeight),
    canary ? part("canary", canary.version, canary.weight) : null,
  );
}

function historyTable(alias, history) {
  if (!history.length) return h("p", { class: "muted" }, "No moves recorded.");
  const rows = [...history].reverse().map((move) =>
    h(
      "tr",
      {},
      h("td", { class: "nowrap" }, when(move.at)),
      h("td", {}, move.by || "—"),
      h("td", { class: "num" }, move.from_version === null || move.from_version === undefined ? "—" : `v${move.from_version}`),
      h("td", { class: "num" }, `v${move.to_version}`),
      h("td", {}, move.canary ? `v${move.canary.version} at ${percent(move.canary.weight)}` : "—"),
      h("td", {}, move.reason || "—"),
    ),
  );
  return scroller(
    h(
      "table",
      { "data-testid": `history-${alias}` },
      h("thead", {}, h("tr", {}, ["When", "Who", "From", "To", "Canary", "Why"].map((title) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, rows),
    ),
  );
}

/** The aliases that have an earlier target to go back to: the API refuses a rollback of any other, so the
 * page offers none. */
function rollbackTargets(aliases) {
  const targets = [];
  for (const [alias, document] of Object.entries(aliases || {})) {
    const last = document.history?.[document.history.length - 1];
    if (last && last.from_version !== null && last.from_version !== undefined) targets.push([alias, last.from_version]);
  }
  return targets;
}

function rollbackPanel(page) {
  const aliasChoice = h("select", { id: "rollback-alias", "data-testid": "rollback-alias" });
  const reason = h("input", { id: "rollback-reason", "data-testid": "rollback-reason", placeholder: "why (optional)", maxlength: 1024 });
  const button = h("button", { type: "submit", class: "secondary", "data-testid": "rollback" }, "Roll back");
  const errors = errorLine();
  const requests = curlBox();
  const done = h("p", { class: "ok", role: "status", "data-testid": "rollback-done" });
  const form = h(
    "form",
    { class: "row", "aria-label": "Roll back an alias" },
    h("label", { for: "rollback-alias" }, "Alias", aliasChoice),
    h("label", { for: "rollback-reason" }, "Reason", reason),
    button,
  );
  const none = h("p", { class: "muted", "data-testid": "no-rollback" }, "No alias has an earlier version to go back to.");
  const panel = section("Roll back", h("p", { class: "muted" }, "Undo an alias's last move (a rollback is itself a move, so rolling back twice undoes it)."), none, form, errors, done, requests);
  const update = () => {
    const targets = rollbackTargets(page.detail.aliases);
    const previous = aliasChoice.value;
    fill(aliasChoice, targets.map(([alias, version]) => h("option", { value: alias }, `${alias} → back to v${version}`)));
    if (targets.some(([alias]) => alias === previous)) aliasChoice.value = previous;
    form.hidden = !targets.length;
    none.hidden = Boolean(targets.length);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const alias = aliasChoice.value;
    const target = rollbackTargets(page.detail.aliases).find(([name]) => name === alias)?.[1];
    done.textContent = "";
    busy(button, errors, async () => {
      const text = reason.value.trim();
      await tracked(requests, () => sendJson("POST", `${modelPath(page.name)}/aliases/${encode(alias)}/rollback`, text ? { reason: text } : {}));
      reason.value = "";
      await page.refresh();
      done.textContent = `Rolled ${alias} back to v${target}.`;
    });
  });
  page.listeners.push(update);
  return panel;
}

// ---- promote, with the gate's verdict first

function promotePanel(page) {
  const versionChoice = h("select", { id: "promote-version", "data-testid": "promote-version" });
  const aliasChoice = h("input", { id: "promote-alias", "data-testid": "promote-alias", value: DEFAULT_ALIAS, list: "alias-names", autocomplete: "off", spellcheck: "false" });
  const aliasNames = h("datalist", { id: "alias-names" });
  const check = h("button", { type: "submit", class: "secondary", "data-testid": "gate-check" }, "Check the gate");
  const verdict = h("div", { class: "verdict", "data-testid": "gate-verdict", "aria-live": "polite" });
  const errors = errorLine();
  const requests = curlBox();
  const done = h("p", { class: "ok", role: "status", "data-testid": "action-done" });
  page.listeners.push(() => {
    const ready = page.detail.versions.filter((version) => version.status !== "archived").map((version) => version.version);
    const previous = Number(versionChoice.value);
    fill(versionChoice, ready.sort((a, b) => b - a).map((n) => h("option", { value: String(n) }, `v${n}`)));
    if (ready.includes(previous)) versionChoice.value = String(previous);
    fill(aliasNames, Object.keys(page.detail.aliases || {}).map((alias) => h("option", { value: alias })));
  });

  const askGate = () =>
    busy(check, errors, async () => {
      fill(verdict);
      done.textContent = "";
      const alias = aliasChoice.value.trim() || DEFAULT_ALIAS;
      const version = Number(versionChoice.value);
      if (!version) return;
      const gate = await tracked(requests, () =>
        getJson(`${modelPath(page.name)}/gate`, { query: { version, alias } }),
      );
      fill(verdict, verdictView(page, gate, { requests, errors, done, check }));
    });

  const form = h(
    "form",
    { class: "row", "aria-label": "Promote a version" },
    h("label", { for: "promote-version" }, "Version", versionChoice),
    h("label", { for: "promote-alias" }, "to alias", aliasChoice),
    aliasNames,
    check,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    askGate();
  });
  versionChoice.addEventListener("change", () => fill(verdict));
  aliasChoice.addEventListener("input", () => fill(verdict));
  return section(
    "Promote",
    h("p", { class: "muted" }, "The promotion gate is asked first; it compares the primary metric with the alias's current version and checks parity."),
    form,
    verdict,
    errors,
    done,
    requests,
  );
}

function verdictView(page, gate, { requests, errors, done, check }) {
  const title = {
    allowed: "Allowed",
    needs_force: "Needs force: the primary metric regresses",
    refused: "Refused",
  }[gate.verdict] || gate.verdict;
  const comparison = gate.metric
    ? h(
        "p",
        { class: "mono small", "data-testid": "gate-comparison" },
        `${gate.metric} (${goalPhrase(gate.goal)}): `,
        gate.current_version ? `v${gate.current_version} ${valueText(gate.current_value)} → ` : "",
        `v${gate.version} ${valueText(gate.candidate_value)}`,
      )
    : null;
  const head = h(
    "div",
    {},
    h("p", { class: `verdict-${gate.verdict}`, "data-testid": "gate-verdict-text", "data-verdict": gate.verdict }, h("strong", {}, title)),
    gate.message ? h("p", { "data-testid": "gate-message" }, gate.message) : null,
    comparison,
  );
  if (gate.verdict === "refused") return head;
  // The promote names the alias's version the verdict was given against, so it cannot land on an alias that
  // moved since (another tab, the CLI): the API answers 409 and nothing moves.
  const body = (force, reason) => ({ version: gate.version, alias: gate.alias, force, expected_version: gate.current_version ?? 0, ...(reason ? { reason } : {}) });
  const promote = (force, reason, button) =>
    busy(button, errors, async () => {
      const holder = button.closest(".verdict");
      try {
        await tracked(requests, () => sendJson("POST", `${modelPath(page.name)}/promote`, body(force, reason)));
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 409)) throw error;
        // A failed reload must not hide the 409, the message the reader needs; the next check reloads anyway.
        await page.refresh().catch(() => null);
        fill(holder, h("p", { class: "verdict-stale", "data-testid": "gate-stale" }, `${gate.alias} moved after the gate was checked, so that verdict no longer holds: check the gate again.`));
        check.focus();
        throw error;
      }
      await page.refresh();
      fill(holder);
      done.textContent = `Promoted v${gate.version} to ${gate.alias}${force ? " (forced)" : ""}.`;
    });
  if (gate.verdict === "allowed") {
    const reason = h("input", { id: "promote-reason", "data-testid": "promote-reason", placeholder: "why (optional)", maxlength: 1024 });
    const button = h("button", { type: "submit", "data-testid": "promote" }, `Promote v${gate.version} to ${gate.alias}`);
    const form = h("form", { class: "row", "aria-label": "Promote" }, h("label", { for: "promote-reason" }, "Reason", reason), button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      promote(false, reason.value.trim(), button);
    });
    return [head, form];
  }
  const reason = h("input", { id: "force-reason", "data-testid": "force-reason", required: true, maxlength: 1024, placeholder: "required: why override the gate" });
  const button = h("button", { type: "submit", class: "danger", "data-testid": "force-promote" }, "Force promote");
  const form = h("form", { class: "row", "aria-label": "Force promote" }, h("label", { for: "force-reason" }, "Reason (required)", reason), button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!reason.value.trim()) {
      reason.focus();
      return;
    }
    promote(true, reason.value.trim(), button);
  });
  return [head, form];
}
