// The playground: one page per model, its form picked from what the model is (its manifest's task and
// labels, and the inputs it is served with), so a new model needs no console change to be tried.

import { getJson } from "../api.js";
import { h, fill, facts, link } from "../dom.js";
import { loading } from "../widgets.js";
import { modelHash, modelPath, playHash, versionHash, versionPath } from "../pages/registry_view.js";
import { imageShape, v2Path } from "./common.js";

/**
 * Which playground a model gets, from its manifest and the V2 inputs it is served with (a tokenized
 * model is served with one BYTES input although its graph takes token ids):
 * "chat" | "embedding" | "text" | "image" | "rows".
 */
export function kindOf(manifest, served) {
  if (manifest.task === "text-generation") return "chat";
  const inputs = served?.inputs ?? manifest.signature.inputs;
  if (inputs.length === 1 && inputs[0].datatype === "BYTES") {
    return manifest.task === "embedding" ? "embedding" : "text";
  }
  // An image-shaped input alone does not make a picture worth drawing: only a classifier has a class
  // to predict and explain; anything else gets the rows form (the JSON editor for its 4-D input).
  const classifier = manifest.task === "classification" || Boolean(manifest.labels?.length);
  if (classifier && inputs.length === 1 && imageShape(inputs[0])) return "image";
  return "rows";
}

const MODULES = {
  chat: ["./chat.js", "Chat"],
  embedding: ["./embedding.js", "Embeddings"],
  text: ["./text.js", "Text classifier"],
  image: ["./image.js", "Image"],
  rows: ["./rows.js", "Rows"],
};

/** The version the URL names (a number, or an alias such as production), else the newest version that is
 * not archived: what "latest" means here; when every version is archived, the newest (an archived version
 * is still served when asked for by number), with a note saying so. */
async function resolveVersion(name, chosen) {
  if (chosen && /^[1-9][0-9]*$/.test(chosen)) return { version: Number(chosen), all: null, archived: false };
  const model = await getJson(modelPath(name));
  if (chosen) {
    const alias = model.aliases?.[chosen];
    if (!alias) {
      const known = Object.keys(model.aliases ?? {});
      throw new Error(`version: expected a number or one of ${name}'s aliases (${known.join(", ") || "it has none"}), got ${JSON.stringify(chosen)}`);
    }
    return { version: alias.version, all: null, archived: false };
  }
  const all = model.versions.map((version) => version.version);
  const usable = model.versions.filter((version) => version.status !== "archived").map((version) => version.version);
  if (!all.length) throw new Error(`${name} has no versions`);
  return { version: Math.max(...(usable.length ? usable : all)), all, archived: !usable.length };
}

/** The version shown, and links to the others' playgrounds when "latest" chose it. */
function versionFacts(name, version, chosen, all, archived) {
  if (chosen) return String(chosen) === String(version) ? `v${version}` : `v${version} (${chosen})`;
  const others = (all ?? []).filter((other) => other !== version);
  return [
    archived ? `v${version} (every version is archived: the newest, still served when named)` : `v${version} (the newest that is not archived)`,
    others.length ? ["; try ", others.map((other, index) => [index ? ", " : "", link(playHash(name, other), `v${other}`)])] : null,
  ];
}

export async function render(view, params) {
  const { name } = params;
  loading(view, `the ${name} playground`);
  const chosen = params.version ?? params.query.get("version");
  const { version, all, archived } = await resolveVersion(name, chosen);
  const { manifest } = await getJson(versionPath(name, version));
  // A text generator's V2 metadata is its raw graph (token ids and KV caches): only the chat route fits it.
  const served = manifest.task === "text-generation" ? null : await getJson(v2Path(name, version));
  const kind = kindOf(manifest, served);
  const [module, title] = MODULES[kind];
  const playground = await import(module);
  const body = h("div", { class: "playground", "data-testid": `playground-${kind}`, dataset: { kind } });
  fill(
    view,
    h("p", { class: "crumbs" }, link("#/", "Models"), " / ", link(modelHash(name), name), " / ", link(versionHash(name, version), `v${version}`)),
    h("h1", {}, `${name} v${version}: ${title.toLowerCase()} playground`),
    archived ? h("p", { class: "playground-note", role: "note", "data-testid": "archived-note" }, `Every version of ${name} is archived, so this is the newest, v${version}: archived versions are still served when named by number, but no alias should point at one.`) : null,
    h(
      "section",
      { class: "panel" },
      h("h2", { class: "visually-hidden" }, "About this model"),
      facts([
        ["Task", manifest.task ?? "—"],
        ["Version", versionFacts(name, version, chosen, all, archived)],
        ["Served inputs", (served?.inputs ?? []).map((input) => `${input.name} ${input.datatype} [${input.shape.join(", ")}]`).join("; ") || "chat messages (OpenAI-compatible)"],
        ["Description", manifest.description || "—"],
      ]),
    ),
    body,
  );
  await playground.render(body, { name, version, manifest, served });
}
