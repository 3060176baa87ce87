// What every playground shares: the request a button sent, shown as curl; V2 tensors in and out; and the
// arithmetic the pages show (probabilities, cosine), kept pure so a reader can check it by eye.

import { h, fill } from "../dom.js";

export { tracked } from "../widgets.js";

/** The path segment V2 routes take for one version: /v2/models/{name}/versions/{version}. */
export function v2Path(name, version, verb = "") {
  const base = `/v2/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;
  return verb ? `${base}/${verb}` : base;
}

/** A V2 output by name as rows: [[...row 0], [...row 1]] (a row is everything after the batch dimension). */
export function outputRows(answer, name) {
  const output = answer.outputs.find((candidate) => candidate.name === name) ?? answer.outputs[0];
  const rows = output.shape[0] ?? 1;
  const width = rows ? output.data.length / rows : 0;
  return Array.from({ length: rows }, (_, index) => output.data.slice(index * width, (index + 1) * width));
}

/** Class probabilities for one row of scores, and where they came from: a row that is already a
 * distribution (every value in [0, 1], summing to 1) is taken as it is, anything else is softmaxed. */
export function probabilities(scores) {
  const sum = scores.reduce((total, value) => total + value, 0);
  if (scores.every((value) => value >= 0 && value <= 1) && Math.abs(sum - 1) < 1e-3) {
    return { values: scores.slice(), source: "the model's own output (already probabilities)" };
  }
  const top = Math.max(...scores);
  const exps = scores.map((value) => Math.exp(value - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return { values: exps.map((value) => value / total), source: "softmax of the model's logits" };
}

export function argmax(values) {
  return values.reduce((best, value, index) => (value > values[best] ? index : best), 0);
}

export function cosine(a, b) {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  a.forEach((value, index) => {
    dot += value * b[index];
    aa += value * value;
    bb += b[index] * b[index];
  });
  return aa && bb ? dot / Math.sqrt(aa * bb) : NaN;
}

/** The predicted class of one row of `scores`, its probability and every class's bar, into `container`;
 * returns the labels and the index of the predicted class (what an explanation then targets). */
export function showPrediction(container, manifest, scores) {
  const labels = labelsFor(manifest, scores.length);
  const { values, source } = probabilities(scores);
  const best = argmax(values);
  fill(
    container,
    h("p", { class: "prediction" }, h("span", { "data-testid": "predicted-label" }, labels[best]), h("span", { class: "muted" }, ` predicted, ${(values[best] * 100).toFixed(1)}%`)),
    h("p", { class: "source-note" }, `Probabilities: ${source}.`),
    probabilityBars(labels, values),
  );
  return { labels, best };
}

/** Bars of class probabilities, highest first; the predicted class is marked. */
export function probabilityBars(labels, values) {
  const order = values.map((_, index) => index).sort((a, b) => values[b] - values[a]);
  const best = order[0];
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "probabilities", "data-testid": "probabilities" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Label"), h("th", { scope: "col", class: "num" }, "Probability"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Bar")))),
      h(
        "tbody",
        {},
        order.map((index) => {
          const bar = h("span", { class: "bar-fill" });
          bar.style.width = `${(values[index] * 100).toFixed(1)}%`;
          return h(
            "tr",
            { class: index === best ? "predicted" : null, dataset: { label: labels[index], value: String(values[index]) } },
            h("td", {}, labels[index]),
            h("td", { class: "num" }, `${(values[index] * 100).toFixed(1)}%`),
            h("td", { class: "bar-cell" }, h("span", { class: "bar" }, bar)),
          );
        }),
      ),
    ),
  );
}

/** A colour for an attribution: red where the feature supports the explained class, blue where it works
 * against it, as strong as |value| / scale. */
export function attributionColour(value, scale) {
  const strength = scale ? Math.min(1, Math.abs(value) / scale) : 0;
  const [r, g, b] = value >= 0 ? [220, 38, 38] : [37, 99, 235];
  return `rgba(${r}, ${g}, ${b}, ${(strength * 0.85).toFixed(3)})`;
}

export function labelsFor(manifest, width) {
  const labels = manifest.labels;
  return labels && labels.length === width ? labels : Array.from({ length: width }, (_, index) => String(index));
}

const SMALL_IMAGE = 64;

/** {channels, height, width} of an FP32 input shaped [-1, C, H, W] (C 1 or 3) or [-1, H, W] with small,
 * fixed H and W; null for anything else. */
export function imageShape(input) {
  if (input.datatype !== "FP32") return null;
  const [, ...rest] = input.shape;
  const small = (size) => Number.isInteger(size) && size >= 2 && size <= SMALL_IMAGE;
  if (rest.length === 3 && (rest[0] === 1 || rest[0] === 3) && small(rest[1]) && small(rest[2])) {
    return { channels: rest[0], height: rest[1], width: rest[2] };
  }
  if (rest.length === 2 && small(rest[0]) && small(rest[1])) return { channels: 0, height: rest[0], width: rest[1] };
  return null;
}
