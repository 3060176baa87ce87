// Text models served with one BYTES input: a text box; with labels, the class probabilities and each
// token's attribution from /explain (what the explained class loses when that token is masked).

import { sendJson } from "../api.js";
import { h, fill, number, section } from "../dom.js";
import { busy, curlBox, errorLine } from "../widgets.js";
import { attributionColour, outputRows, showPrediction, tracked, v2Path } from "./common.js";

const EXAMPLE = "the cat sat on the mat";

export async function render(body, { name, version, manifest, served }) {
  const input = served.inputs[0];
  const text = h("textarea", { id: "text-input", "data-testid": "text-input", rows: "3" }, EXAMPLE);
  const classify = h("button", { type: "button", "data-testid": "classify" }, manifest.labels ? "Classify" : "Infer");
  const errors = errorLine();
  const inferCurl = curlBox("Inference request as curl");
  const explainCurl = curlBox("Explanation request as curl");
  const prediction = h("div", { "data-testid": "prediction" });
  const attributions = h("div", { "data-testid": "attributions" });

  classify.addEventListener("click", () => busy(classify, errors, async () => {
    // One text, in the rank the model is served with: [1] for [-1], [1, 1] for [-1, 1] and so on.
    const shape = [1, ...input.shape.slice(1).map(() => 1)];
    const request = { inputs: [{ name: input.name, datatype: "BYTES", shape, data: [text.value] }] };
    const answer = await tracked(inferCurl, () => sendJson("POST", v2Path(name, version, "infer"), request));
    fill(attributions);
    const scores = outputRows(answer, answer.outputs[0].name)[0];
    if (!manifest.labels) {
      // No labels: nothing to call a class, so the outputs as they came.
      fill(prediction, answer.outputs.map((output) => h("p", {}, `${output.name}: `, h("code", {}, output.data.map(number).join(", ")))));
      return;
    }
    const { labels, best } = showPrediction(prediction, manifest, scores);
    const explained = await tracked(explainCurl, () =>
      sendJson("POST", v2Path(name, version, "explain"), { ...request, parameters: { target: best } }),
    );
    showTokens(explained, labels[best]);
  }));

  const showTokens = (answer, label) => {
    const tokens = answer.outputs.find((output) => output.name === `${input.name}_tokens`).data;
    const values = answer.outputs.find((output) => output.name === `${input.name}_attribution`).data;
    // Rows are padded with "" and 0 to the longest text; one text here, so trailing padding only.
    const shown = tokens.map((token, index) => [token, values[index]]).filter(([token]) => token !== "");
    const scale = Math.max(...shown.map(([, value]) => Math.abs(value)), 0);
    const how = answer.parameters?.explanation;
    fill(
      attributions,
      h("p", { class: "source-note" }, `Token attributions for ${label} (${how?.method ?? "ablation"}, each token replaced by ${how?.baseline === "pad" ? "[PAD]" : "[MASK]"}): how much ${label}'s score drops without it.`),
      h(
        "div",
        { class: "tokens", role: "list" },
        shown.map(([token, value]) => {
          const chip = h("span", { class: "token", role: "listitem", "data-testid": "token", dataset: { value: String(value) }, title: `${token}: ${value}` }, h("span", {}, token), h("span", { class: "value" }, `${value >= 0 ? "+" : ""}${number(value)}`));
          chip.style.backgroundColor = attributionColour(value, scale);
          // Dark text stops being legible on the strongest colours.
          if (scale && Math.abs(value) / scale > 0.6) chip.classList.add("strong");
          return chip;
        }),
      ),
      h("div", { class: "legend" }, h("span", {}, h("span", { class: "swatch for" }), "supports ", label), h("span", {}, h("span", { class: "swatch against" }), "works against it")),
    );
  };

  fill(
    body,
    section(
      "Text",
      h("label", { for: "text-input", class: "block" }, `Text (sent as the ${input.name} BYTES input)`, text),
      h("div", { class: "row" }, classify),
      errors,
      inferCurl,
      explainCurl,
    ),
    section(manifest.labels ? "Prediction" : "Outputs", prediction, attributions),
  );
}
