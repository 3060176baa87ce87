// Small DOM helpers. Text always goes in as text nodes, never as HTML, so nothing a model, a tag or an
// error message says can become markup; the only HTML the console renders is the sanitized model card.

/** An element: h("a", {href: "#/", class: "x"}, "text", child, [more children]). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's content. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A table from a header row and rows of cells (strings, numbers or nodes). */
export function table(header, rows, attributes = {}) {
  return h(
    "table",
    attributes,
    h("thead", {}, h("tr", {}, header.map((cell) => h("th", { scope: "col" }, cell)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell))))),
  );
}

/** A definition list from [term, value] pairs. */
export function facts(pairs, attributes = {}) {
  return h("dl", { class: "facts", ...attributes }, pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

export function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}

/** A number shown to 4 significant digits (integers as they are). */
export function number(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  return Number(value.toPrecision(4)).toString();
}

export function when(isoTime) {
  if (!isoTime) return "—";
  const date = new Date(isoTime);
  return Number.isNaN(date.getTime()) ? isoTime : date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** A link inside the console. */
export function link(hash, ...children) {
  return h("a", { href: hash }, ...children);
}

export function encode(segment) {
  return encodeURIComponent(String(segment));
}
