// The console's one way to call the stack: same-origin fetch, SigV4-signed where the route is AWS_IAM,
// errors shown as the API wrote them, and every request kept so the page can show it as a curl command.

import { signatureHeaders, uriEncode } from "./sigv4.js";

const CREDENTIALS_KEY = "maas.console.credentials";
let configPromise = null;
const listeners = new Set();

/** An API answer that was not 2xx: `message` is the API's own error text, as it sent it. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

/** {region, credentials, signedRoutes} from /console/config.json, fetched once. */
export function config() {
  configPromise ??= fetch("config.json", { cache: "no-store" }).then((response) => {
    if (!response.ok) throw new ApiError(response.status, `console config: HTTP ${response.status}`);
    return response.json();
  });
  return configPromise;
}

/** The key registry calls are signed with: one typed into this tab (kept in sessionStorage), else the
 * local stack's well-known dummy pair when config.json offers it, else null. */
export async function credentials() {
  const typed = sessionStorage.getItem(CREDENTIALS_KEY);
  if (typed) return { ...JSON.parse(typed), source: "this tab" };
  const offered = (await config()).credentials;
  return offered ? { ...offered, source: "local stack" } : null;
}

export function rememberCredentials(value) {
  if (value) sessionStorage.setItem(CREDENTIALS_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(CREDENTIALS_KEY);
}

function routePattern(routeKey) {
  const [method, path] = routeKey.split(" ");
  const source = path
    .split("/")
    .map((segment) => {
      if (/^\{\w+\+\}$/.test(segment)) return ".+";
      if (/^\{\w+\}$/.test(segment)) return "[^/]+";
      return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  return { method, regex: new RegExp(`^${source}$`) };
}

async function needsSignature(method, path) {
  const { signedRoutes = [] } = await config();
  return signedRoutes.some((key) => {
    const route = routePattern(key);
    return (route.method === method || route.method === "ANY") && route.regex.test(path);
  });
}

/** Subscribe to every request the console sends: listener({method, url, headers, body, signed}). */
export function onRequest(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * Send a request; returns the Response when it is 2xx, throws ApiError (with the API's message) when not.
 * `json` is sent as the JSON body; `query` is an object of query parameters.
 */
export async function call(method, path, { json, query, headers = {}, signal } = {}) {
  const url = new URL(path, location.origin);
  url.search = queryString(query);
  const body = json === undefined ? undefined : JSON.stringify(json);
  const sent = { ...headers };
  if (body !== undefined) sent["content-type"] = "application/json";
  const signed = await needsSignature(method, url.pathname);
  if (signed) {
    const key = await credentials();
    if (!key) {
      throw new ApiError(403, `${method} ${url.pathname} is signed (AWS_IAM): set a key under Settings first`);
    }
    const { region } = await config();
    Object.assign(sent, await signatureHeaders({ method, url: url.href, body: body ?? "", credentials: key, region }));
  }
  const record = { method, url: url.href, headers: { ...headers }, body, signed };
  if (body !== undefined) record.headers["content-type"] = "application/json";
  for (const listener of listeners) listener(record);
  const response = await fetch(url, { method, headers: sent, body, signal, cache: "no-store" });
  if (!response.ok) throw await errorOf(response);
  return response;
}

/** The query in SigV4's canonical form: sorted, strictly percent-encoded (a space is %20, never "+"), so the
 * URL sent is the one signed, and a pasted curl (which signs the query as it is) agrees. */
function queryString(query) {
  return Object.entries(query || {})
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([key, value]) => `${uriEncode(key)}=${uriEncode(String(value))}`)
    .sort()
    .join("&");
}

async function errorOf(response) {
  const text = await response.text();
  let message = text || `HTTP ${response.status}`;
  let body = null;
  try {
    body = JSON.parse(text);
    // maas answers {"error": ...}; API Gateway's own refusals {"message": ...}; OpenAI {"error": {"message"}}.
    const error = body.error;
    message = typeof error === "string" ? error : error?.message ?? body.message ?? message;
  } catch {
    // not JSON: the text as it came
  }
  return new ApiError(response.status, message, body);
}

export async function getJson(path, options = {}) {
  return (await call("GET", path, options)).json();
}

export async function sendJson(method, path, json, options = {}) {
  return (await call(method, path, { ...options, json })).json();
}

/** The events of a Server-Sent Events response, each `data:` parsed as JSON, until `data: [DONE]`. Once
 * `signal` aborts, no further event is yielded, even one that had already arrived, and the stream is
 * cancelled. */
export async function* sseEvents(response, signal) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      if (signal?.aborted) return;
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        const data = block
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]" || signal?.aborted) return;
        yield JSON.parse(data);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function shellQuote(text) {
  return `'${String(text).replace(/'/g, "'\\''")}'`;
}

/** The request as a curl command a reader can paste: the signing is curl's own (--aws-sigv4), with the
 * key from the environment unless it is the local stack's dummy pair. */
export async function curlCommand(record) {
  const parts = ["curl", "-sS"];
  if (record.method !== "GET") parts.push("-X", record.method);
  if (record.signed) {
    const { region } = await config();
    const key = await credentials();
    const user = key?.source === "local stack" ? `${key.accessKeyId}:${key.secretAccessKey}` : '"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"';
    parts.push("--aws-sigv4", shellQuote(`aws:amz:${region}:execute-api`), "--user", user);
    if (key?.sessionToken) {
      // Temporary credentials sign with their token; curl sends it as this header.
      const token = key.source === "local stack" ? key.sessionToken : "$AWS_SESSION_TOKEN";
      parts.push("-H", key.source === "local stack" ? shellQuote(`x-amz-security-token: ${token}`) : `"x-amz-security-token: ${token}"`);
    }
  }
  for (const [name, value] of Object.entries(record.headers || {})) parts.push("-H", shellQuote(`${name}: ${value}`));
  if (record.body !== undefined) parts.push("-d", shellQuote(record.body));
  if (/text\/event-stream/.test(record.headers?.accept || "") || /"stream":\s*true/.test(record.body || "")) parts.push("-N");
  parts.push(shellQuote(record.url));
  return parts.join(" ");
}
