// Small images (digits): draw with a mouse, a finger or the keyboard, or upload any image file; the
// drawing is averaged into the model's H x W grid, scaled to an editable full intensity, classified, and
// the occlusion heatmap from /explain is drawn over what the model saw.

import { sendJson } from "../api.js";
import { h, fill, section } from "../dom.js";
import { busy, curlBox, errorLine } from "../widgets.js";
import { attributionColour, imageShape, outputRows, showPrediction, tracked, v2Path } from "./common.js";

const DRAWING_PIXELS = 280;

/** The grid of an image: each cell the mean luminance of its block of pixels, in [0, 1]. */
export function gridOf(pixels, pixelWidth, pixelHeight, width, height) {
  const grid = new Float32Array(width * height);
  for (let row = 0; row < height; row++) {
    const top = Math.floor((row * pixelHeight) / height);
    const bottom = Math.max(top + 1, Math.floor(((row + 1) * pixelHeight) / height));
    for (let column = 0; column < width; column++) {
      const left = Math.floor((column * pixelWidth) / width);
      const right = Math.max(left + 1, Math.floor(((column + 1) * pixelWidth) / width));
      let sum = 0;
      for (let y = top; y < bottom; y++) {
        for (let x = left; x < right; x++) {
          const at = (y * pixelWidth + x) * 4;
          // Luminance weighted by alpha over black: a transparent PNG's empty pixels count as no ink.
          sum += ((0.299 * pixels[at] + 0.587 * pixels[at + 1] + 0.114 * pixels[at + 2]) / 255) * (pixels[at + 3] / 255);
        }
      }
      grid[row * width + column] = sum / ((bottom - top) * (right - left));
    }
  }
  return grid;
}

/** Ink is light on dark here (as the model was trained); a picture of dark ink on light paper, told by
 * its brighter border, is inverted. Returns whether it was. */
function invertIfLightBackground(grid, width, height) {
  const border = [];
  for (let row = 0; row < height; row++) {
    for (let column = 0; column < width; column++) {
      if (row === 0 || column === 0 || row === height - 1 || column === width - 1) border.push(grid[row * width + column]);
    }
  }
  const mean = border.reduce((a, b) => a + b, 0) / border.length;
  if (mean <= 0.5) return false;
  grid.forEach((value, index) => {
    grid[index] = 1 - value;
  });
  return true;
}

export async function render(body, { name, version, manifest, served }) {
  const input = served.inputs[0];
  const { channels, height, width } = imageShape(input);
  const cell = Math.ceil(DRAWING_PIXELS / Math.max(width, height));
  let grid = new Float32Array(width * height);
  const cursor = { row: Math.floor(height / 2), column: Math.floor(width / 2), shown: false };

  const drawing = h("canvas", {
    class: "drawing",
    width: width * cell,
    height: height * cell,
    tabindex: "0",
    role: "img",
    "data-testid": "drawing",
    "aria-label": `Drawing area, ${width} by ${height} cells. Draw with a mouse or a finger. With the keyboard: arrow keys move the cursor, Space inks a cell, Delete clears it.`,
  });
  const gridView = h("canvas", { class: "grid-view", width: width * 8, height: height * 8, "data-testid": "grid-view", role: "img", "aria-label": "The grid the model is sent" });
  const heatmap = h("canvas", { class: "heatmap", width: width * cell, height: height * cell, "data-testid": "heatmap", role: "img", "aria-label": "Occlusion heatmap over the input", hidden: true });
  const cursorStatus = h("p", { class: "muted", role: "status" });
  const note = h("p", { class: "muted", role: "status", "data-testid": "upload-note" });
  const fullDefault = width === 8 && height === 8 ? 16 : 1;
  const full = h("input", { id: "full-intensity", type: "number", min: "0", step: "any", value: String(fullDefault), "data-testid": "full-intensity" });
  const upload = h("input", { id: "image-file", type: "file", accept: "image/*", "data-testid": "upload" });
  const clear = h("button", { type: "button", class: "secondary", "data-testid": "clear" }, "Clear");
  const classify = h("button", { type: "button", "data-testid": "classify" }, "Classify");
  const errors = errorLine();
  const inferCurl = curlBox("Inference request as curl");
  const explainCurl = curlBox("Explanation request as curl");
  const prediction = h("div", { "data-testid": "prediction" });
  const explanation = h("div", { "data-testid": "explanation" });
  const pen = drawing.getContext("2d", { willReadFrequently: true });

  const paintGrid = (context, scale, values) => {
    values.forEach((value, index) => {
      const level = Math.round(Math.min(1, Math.max(0, value)) * 255);
      context.fillStyle = `rgb(${level}, ${level}, ${level})`;
      context.fillRect((index % width) * scale, Math.floor(index / width) * scale, scale, scale);
    });
  };
  const showGrid = () => {
    const context = gridView.getContext("2d");
    paintGrid(context, 8, grid);
    if (cursor.shown) {
      context.strokeStyle = "#0b5fff";
      context.lineWidth = 2;
      context.strokeRect(cursor.column * 8 + 1, cursor.row * 8 + 1, 6, 6);
    }
  };
  const readDrawing = () => {
    grid = gridOf(pen.getImageData(0, 0, drawing.width, drawing.height).data, drawing.width, drawing.height, width, height);
    showGrid();
  };
  const wipe = () => {
    pen.fillStyle = "#000";
    pen.fillRect(0, 0, drawing.width, drawing.height);
    readDrawing();
  };

  let last = null;
  const at = (event) => {
    const box = drawing.getBoundingClientRect();
    return [((event.clientX - box.left) * drawing.width) / box.width, ((event.clientY - box.top) * drawing.height) / box.height];
  };
  drawing.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    drawing.setPointerCapture(event.pointerId);
    last = at(event);
    pen.fillStyle = "#fff";
    pen.beginPath();
    pen.arc(last[0], last[1], cell * 0.6, 0, 2 * Math.PI);
    pen.fill();
    event.preventDefault();
  });
  drawing.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = at(event);
    pen.strokeStyle = "#fff";
    pen.lineWidth = cell * 1.2;
    pen.lineCap = "round";
    pen.beginPath();
    pen.moveTo(...last);
    pen.lineTo(...next);
    pen.stroke();
    last = next;
  });
  const penUp = () => {
    if (!last) return;
    last = null;
    readDrawing();
  };
  drawing.addEventListener("pointerup", penUp);
  drawing.addEventListener("pointercancel", penUp);

  const describeCursor = () => {
    cursorStatus.textContent = `Cursor at row ${cursor.row + 1}, column ${cursor.column + 1}.`;
  };
  drawing.addEventListener("focus", () => {
    cursor.shown = true;
    showGrid();
    describeCursor();
  });
  drawing.addEventListener("blur", () => {
    cursor.shown = false;
    showGrid();
  });
  drawing.addEventListener("keydown", (event) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (moves[event.key]) {
      cursor.row = Math.min(height - 1, Math.max(0, cursor.row + moves[event.key][0]));
      cursor.column = Math.min(width - 1, Math.max(0, cursor.column + moves[event.key][1]));
      describeCursor();
    } else if (event.key === " " || event.key === "Enter" || event.key === "Delete" || event.key === "Backspace") {
      pen.fillStyle = event.key === " " || event.key === "Enter" ? "#fff" : "#000";
      pen.fillRect(cursor.column * cell, cursor.row * cell, cell, cell);
      readDrawing();
    } else {
      return;
    }
    event.preventDefault();
    showGrid();
  });

  upload.addEventListener("change", () => busy(upload, errors, async () => {
    const file = upload.files[0];
    if (!file) return;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      throw new Error(`${file.name}: the browser could not read it as an image`);
    }
    const scratch = h("canvas", { width, height });
    const context = scratch.getContext("2d", { willReadFrequently: true });
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, 0, 0, width, height);
    grid = gridOf(context.getImageData(0, 0, width, height).data, width, height, width, height);
    const inverted = invertIfLightBackground(grid, width, height);
    note.textContent = `${file.name} (${bitmap.width}×${bitmap.height}) drawn into the ${width}×${height} grid${inverted ? ", inverted: its background was light" : ""}.`;
    paintGrid(pen, cell, grid);
    showGrid();
  }));
  clear.addEventListener("click", () => {
    wipe();
    note.textContent = "";
    upload.value = "";
    // A prediction left beside an empty canvas would read as the blank image's.
    fill(prediction);
    fill(explanation);
    heatmap.hidden = true;
  });

  const requestBody = () => {
    const scale = Number(full.value);
    if (!Number.isFinite(scale) || full.value === "") throw new Error(`full intensity: expected a number, got ${JSON.stringify(full.value)}`);
    const plane = Array.from(grid, (value) => value * scale);
    const data = channels === 3 ? [...plane, ...plane, ...plane] : plane;
    const shape = channels ? [1, channels, height, width] : [1, height, width];
    return { inputs: [{ name: input.name, datatype: "FP32", shape, data }] };
  };

  classify.addEventListener("click", () => busy(classify, errors, async () => {
    const request = requestBody();
    const answer = await tracked(inferCurl, () => sendJson("POST", v2Path(name, version, "infer"), request));
    const scores = outputRows(answer, answer.outputs[0].name)[0];
    const { labels, best } = showPrediction(prediction, manifest, scores);
    const patch = Math.max(1, Math.round(Math.min(width, height) / 4));
    const stride = Math.max(1, Math.floor(patch / 2));
    const explained = await tracked(explainCurl, () =>
      sendJson("POST", v2Path(name, version, "explain"), { ...request, parameters: { method: "occlusion", window: patch, stride, target: best } }),
    );
    drawHeatmap(explained, `${input.name}_attribution`, labels[best], patch, stride);
  }));

  const drawHeatmap = (answer, attributionName, label, patch, stride) => {
    const output = answer.outputs.find((candidate) => candidate.name === attributionName);
    const values = new Float32Array(width * height);
    // Attribution is shaped like the input: one plane per channel, summed into one per pixel.
    output.data.forEach((value, index) => {
      values[index % (width * height)] += value;
    });
    const scale = Math.max(...Array.from(values, Math.abs));
    const context = heatmap.getContext("2d");
    paintGrid(context, cell, grid);
    values.forEach((value, index) => {
      context.fillStyle = attributionColour(value, scale);
      context.fillRect((index % width) * cell, Math.floor(index / width) * cell, cell, cell);
    });
    heatmap.hidden = false;
    heatmap.dataset.cells = String(values.length);
    heatmap.dataset.maxAbs = String(scale);
    fill(
      explanation,
      h("p", { class: "source-note" }, `Occlusion (window ${patch}, stride ${stride}, baseline zeros) for class ${label}: how much its score drops when a patch is blanked. Largest |attribution| ${scale.toPrecision(3)}.`),
      h("div", { class: "legend" }, h("span", {}, h("span", { class: "swatch for" }), "supports ", label), h("span", {}, h("span", { class: "swatch against" }), "works against it")),
    );
  };

  fill(
    body,
    section(
      "Input image",
      h("p", { class: "muted" }, `Draw a ${manifest.labels ? "digit or class" : "picture"} light on dark, or upload any image file: it is averaged into the ${width}×${height} grid the model takes and scaled so full ink is the full intensity${fullDefault === 16 ? " (16 for 8×8 digits, scikit-learn's convention)" : ""}.`),
      h(
        "div",
        { class: "draw-area" },
        h("figure", {}, drawing, h("figcaption", {}, "Drawing")),
        h("figure", {}, gridView, h("figcaption", {}, `Sent to the model (${width}×${height})`)),
      ),
      cursorStatus,
      h(
        "div",
        { class: "row" },
        h("label", { for: "image-file" }, "Upload an image", upload),
        h("label", { for: "full-intensity" }, "Full intensity", full),
        clear,
        classify,
      ),
      note,
      errors,
      inferCurl,
      explainCurl,
    ),
    section("Prediction", h("div", { class: "draw-area" }, prediction, h("figure", { class: "heatmap-figure" }, heatmap, explanation))),
  );
  wipe();
}
