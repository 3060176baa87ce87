// What the registry pages share: registry paths, the badges a model's aliases and statuses show as, and
// the way an action's request reaches its curl box.

import { h, encode, number } from "../dom.js";

export function modelPath(name) {
  return `/registry/models/${encode(name)}`;
}

export function versionPath(name, version) {
  return `${modelPath(name)}/versions/${encode(version)}`;
}

export function modelHash(name) {
  return `#/models/${encode(name)}`;
}

export function versionHash(name, version) {
  return `${modelHash(name)}/versions/${encode(version)}`;
}

export function playHash(name, version) {
  return version === undefined ? `${modelHash(name)}/play` : `${versionHash(name, version)}/play`;
}

export function diffHash(name, a, b) {
  return `${modelHash(name)}/diff/${encode(a)}/${encode(b)}`;
}

export { tracked } from "../widgets.js";

/** An alias's badge: "production → v2", with its canary when it has one ("+ v3 at 10%"). The models list
 * carries alias → version; a model's detail carries the whole alias document. */
export function aliasBadge(alias, target) {
  const version = typeof target === "number" ? target : target?.version;
  const canary = typeof target === "object" ? target?.canary : null;
  return h(
    "span",
    { class: "badge alias", "data-testid": `alias-${alias}` },
    `${alias} → v${version}`,
    canary ? ` + v${canary.version} at ${percent(canary.weight)}` : null,
  );
}

export function statusBadge(status) {
  return h("span", { class: `badge ${status === "archived" ? "archived" : "ready"}` }, status || "—");
}

export function percent(weight) {
  return `${number(weight * 100)}%`;
}

/** "lower is better" / "higher is better", as the CLI and the card say it. */
export function goalPhrase(goal) {
  return goal === "maximize" ? "higher is better" : "lower is better";
}

/** Anything the API returned, as text: numbers shortened, objects as compact JSON. */
export function valueText(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return number(value);
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

/** A table inside a horizontal scroller, so a wide one never widens the page on a phone. */
export function scroller(content) {
  return h("div", { class: "scroll" }, content);
}
