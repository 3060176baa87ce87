// Numeric inputs: an editable table of rows (one column per feature), started from the training split's
// means where the manifest records them, with the V2 request it makes shown as JSON, and the answer as a table.

import { sendJson } from "../api.js";
import { h, fill, number, section } from "../dom.js";
import { busy, curlBox, errorLine } from "../widgets.js";
import { argmax, labelsFor, outputRows, probabilities, tracked, v2Path } from "./common.js";

const INTEGER = /^U?INT/;
// A table wider than this is no longer something to edit cell by cell (nor cheap to draw): such an input is
// edited as JSON.
const MAX_TABLE_CELLS = 256;

/** Elements in one row of an input, or null when a dimension after the batch is dynamic (no table then). */
function rowWidth(input) {
  const rest = input.shape.slice(1);
  return rest.every((size) => Number.isInteger(size) && size > 0) ? rest.reduce((a, b) => a * b, 1) : null;
}

/** Why an input cannot be a table of rows × features, or null when it can. */
function whyNotTabular(input) {
  const shape = `[${input.shape.join(", ")}]`;
  if (input.datatype === "BYTES" || input.datatype === "BOOL") return `${input.name} is ${input.datatype}, not numbers`;
  if (input.shape.length > 2) return `${input.name} is shaped ${shape}: more than rows × features`;
  const width = rowWidth(input);
  if (width === null) return `${input.name} ${shape} has a dynamic dimension after the batch`;
  if (width > MAX_TABLE_CELLS) return `${input.name} has ${width} features per row, more than the ${MAX_TABLE_CELLS} a table shows`;
  return null;
}

export async function render(body, { name, version, manifest, served }) {
  const inputs = served.inputs;
  const reasons = inputs.map(whyNotTabular).filter(Boolean);
  const tabular = !reasons.length;
  const startRow = () =>
    Object.fromEntries(
      inputs.map((input) => {
        const means = manifest.input_means?.[input.name];
        const width = rowWidth(input) ?? 0;
        // Four significant digits: the means are a starting point to edit, not a value to reproduce.
        const row = means && means.length === width ? means.map((mean) => Number(mean.toPrecision(4))) : new Array(width).fill(0);
        return [input.name, INTEGER.test(input.datatype) ? row.map(Math.round) : row];
      }),
    );
  const rows = [startRow()];

  const request = () => ({
    inputs: inputs.map((input) => ({
      name: input.name,
      datatype: input.datatype,
      shape: [rows.length, ...input.shape.slice(1)],
      data: rows.flatMap((row) => row[input.name]),
    })),
  });

  const tables = h("div", { class: "row-tables" });
  const json = h("pre", { class: "request-json", "data-testid": "request-json" });
  const jsonEditor = h("textarea", { id: "rows-json", spellcheck: "false", class: "json-editor" });
  const errors = errorLine();
  const results = h("div", { "data-testid": "results" });
  const curl = curlBox();
  const showJson = () => {
    json.textContent = JSON.stringify(request());
  };

  const drawTables = () => {
    fill(
      tables,
      inputs.map((input) => {
        const width = rowWidth(input);
        const header = [h("th", { scope: "col" }, "Row"), ...Array.from({ length: width }, (_, index) => h("th", { scope: "col", class: "num" }, `${input.name}[${index}]`)), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Remove"))];
        const bodyRows = rows.map((row, rowIndex) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, String(rowIndex)),
            row[input.name].map((value, index) => {
              const cell = h("input", {
                type: "number",
                step: INTEGER.test(input.datatype) ? "1" : "any",
                value: String(value),
                class: "cell",
                "aria-label": `${input.name} row ${rowIndex} element ${index}`,
                "data-testid": "cell",
              });
              cell.addEventListener("input", () => {
                const parsed = Number(cell.value);
                row[input.name][index] = INTEGER.test(input.datatype) ? Math.round(parsed) : parsed;
                cell.toggleAttribute("aria-invalid", cell.value === "" || !Number.isFinite(parsed));
                showJson();
              });
              return h("td", {}, cell);
            }),
            h(
              "td",
              {},
              h("button", {
                type: "button",
                class: "secondary small",
                disabled: rows.length === 1,
                "aria-label": `Remove row ${rowIndex}`,
                onclick: () => {
                  rows.splice(rowIndex, 1);
                  drawTables();
                },
              }, "Remove"),
            ),
          ),
        );
        return h("div", { class: "scroll" }, h("table", { class: "rows-table", "data-testid": "rows-table", "aria-label": `Rows of ${input.name}` }, h("thead", {}, h("tr", {}, header)), h("tbody", {}, bodyRows)));
      }),
    );
    showJson();
  };

  const addRow = h("button", { type: "button", class: "secondary", "data-testid": "add-row", onclick: () => { rows.push(startRow()); drawTables(); } }, "Add row");
  const send = h("button", { type: "button", "data-testid": "infer" }, "Infer");
  const sendJsonButton = h("button", { type: "button", class: "secondary", "data-testid": "infer-json" }, "Infer this JSON");

  const infer = (payload) =>
    tracked(curl, async () => {
      const answer = await sendJson("POST", v2Path(name, version, "infer"), payload);
      fill(results, resultTables(answer, manifest));
    });
  send.addEventListener("click", () => busy(send, errors, () => {
    if (tables.querySelector("[aria-invalid]")) throw new Error("every cell needs a number");
    return infer(request());
  }));
  sendJsonButton.addEventListener("click", () => busy(sendJsonButton, errors, async () => {
    let payload;
    try {
      payload = JSON.parse(jsonEditor.value);
    } catch (error) {
      throw new Error(`the JSON does not parse: ${error.message}`);
    }
    await infer(payload);
  }));
  // The editor takes a copy of the table as it opens, in the click itself: the toggle event comes a task
  // later, by when text may already be typed into it (and would be overwritten).
  const opener = h("summary", {}, "Edit the request as JSON");
  opener.addEventListener("click", () => {
    if (!editor.open) jsonEditor.value = JSON.stringify(request(), null, 2);
  });
  const editor = h(
    "details",
    { class: "json-edit" },
    opener,
    h("label", { for: "rows-json", class: "block" }, "V2 request body", jsonEditor),
    h("div", { class: "row" }, sendJsonButton),
  );

  if (tabular) drawTables();
  else {
    showJson();
    editor.open = true;
    jsonEditor.value = JSON.stringify(request(), null, 2);
  }
  fill(
    body,
    section(
      "Input rows",
      tabular
        ? h("p", { class: "muted" }, manifest.input_means && Object.keys(manifest.input_means).length ? "Each row starts at the training split's mean of every feature; edit any cell." : "Edit any cell; add rows to send a batch.")
        : h("p", { class: "muted", "data-testid": "json-note" }, `Edited as JSON, prefilled with ${manifest.input_means && Object.keys(manifest.input_means).length ? "the training split's means where recorded, else zeros" : "zeros"}: ${reasons.join("; ")}.`),
      tables,
      tabular ? h("div", { class: "row" }, addRow, send) : null,
      h("h3", {}, "Request body"),
      json,
      editor,
      errors,
      curl,
    ),
    section("Result", results),
  );
}

function resultTables(answer, manifest) {
  return answer.outputs.map((output) => {
    const rows = outputRows(answer, output.name);
    const width = rows[0]?.length ?? 0;
    const classes = manifest.task === "classification" && width > 1;
    const labels = classes ? labelsFor(manifest, width) : null;
    const header = ["Row", ...Array.from({ length: width }, (_, index) => (labels ? labels[index] : `${output.name}[${index}]`)), ...(classes ? ["Predicted"] : [])];
    return h(
      "div",
      { class: "scroll" },
      h("h3", {}, `${output.name} ${output.datatype} [${output.shape.join(", ")}]`, classes ? h("span", { class: "muted" }, ` (class probabilities: ${probabilities(rows[0]).source})`) : null),
      h(
        "table",
        { class: "result-table", "data-testid": "result-table", dataset: { output: output.name } },
        h("thead", {}, h("tr", {}, header.map((cell) => h("th", { scope: "col" }, cell)))),
        h(
          "tbody",
          {},
          rows.map((row, index) => {
            const shown = classes ? probabilities(row).values : row;
            return h(
              "tr",
              {},
              h("th", { scope: "row" }, String(index)),
              row.map((value, column) => h("td", { class: "num", dataset: { value: String(value) } }, classes ? `${(shown[column] * 100).toFixed(1)}%` : number(value))),
              classes ? h("td", {}, labels[argmax(row)]) : null,
            );
          }),
        ),
      ),
    );
  });
}
