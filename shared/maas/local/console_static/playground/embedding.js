// Embedding models: two texts in one request (a batch of two), their vectors and the cosine similarity
// of the pair, computed here from the vectors shown.

import { sendJson } from "../api.js";
import { h, fill, number, section } from "../dom.js";
import { busy, curlBox, errorLine } from "../widgets.js";
import { cosine, outputRows, tracked, v2Path } from "./common.js";

export async function render(body, { name, version, served }) {
  const input = served.inputs[0];
  const first = h("textarea", { id: "text-a", "data-testid": "text-a", rows: "3" }, "the cat sat on the mat");
  const second = h("textarea", { id: "text-b", "data-testid": "text-b", rows: "3" }, "a dog sat on the mat");
  const compare = h("button", { type: "button", "data-testid": "compare" }, "Compare");
  const errors = errorLine();
  const curl = curlBox();
  const result = h("div", { "data-testid": "embedding-result" });

  compare.addEventListener("click", () => busy(compare, errors, async () => {
    const request = { inputs: [{ name: input.name, datatype: "BYTES", shape: [2], data: [first.value, second.value] }] };
    const answer = await tracked(curl, () => sendJson("POST", v2Path(name, version, "infer"), request));
    const output = answer.outputs[0];
    const [a, b] = outputRows(answer, output.name);
    const similarity = cosine(a, b);
    fill(
      result,
      h("p", { class: "cosine" }, "cosine ", h("span", { "data-testid": "cosine", dataset: { value: String(similarity) } }, Number.isNaN(similarity) ? "undefined (a zero vector)" : similarity.toFixed(4))),
      h("p", { class: "source-note" }, `a·b / (|a| |b|) of the two ${output.name} rows (${a.length} dimensions each), computed in the page.`),
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          { "data-testid": "vectors" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Text"), ...a.map((_, index) => h("th", { scope: "col", class: "num" }, String(index))))),
          h("tbody", {}, [["A", a], ["B", b]].map(([which, vector]) => h("tr", {}, h("th", { scope: "row" }, which), vector.map((value) => h("td", { class: "num", dataset: { value: String(value) } }, number(value)))))),
        ),
      ),
    );
  }));

  fill(
    body,
    section(
      "Two texts",
      h("div", { class: "pair" }, h("label", { for: "text-a", class: "block" }, "Text A", first), h("label", { for: "text-b", class: "block" }, "Text B", second)),
      h("div", { class: "row" }, compare),
      errors,
      curl,
    ),
    section("Similarity", result),
  );
}
