// AWS Signature Version 4 for API Gateway (service execute-api), with the browser's WebCrypto: how the
// console calls AWS_IAM routes (the registry) with the caller's own key, as the SDKs and curl --aws-sigv4 do.

const encoder = new TextEncoder();
const SERVICE = "execute-api";

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(data) {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

async function hmac(key, text) {
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    typeof key === "string" ? encoder.encode(key) : key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return crypto.subtle.sign("HMAC", cryptoKey, encoder.encode(text));
}

// RFC 3986 unreserved characters stay; everything else is percent-encoded, as SigV4 wants.
export function uriEncode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

// From the query as sent: each part decoded once and encoded strictly, which leaves a query built by
// `queryString` (api.js) as it is; URLSearchParams would read "+" as a space where the server signs "%2B".
function canonicalQuery(search) {
  const pairs = [];
  for (const pair of search.replace(/^\?/, "").split("&")) {
    if (!pair) continue;
    const [key, value = ""] = pair.split(/=(.*)/s);
    pairs.push([uriEncode(decodeURIComponent(key)), uriEncode(decodeURIComponent(value))]);
  }
  pairs.sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  return pairs.map(([key, value]) => `${key}=${value}`).join("&");
}

// Non-S3 services sign each path segment encoded twice: the URL's path is already encoded once.
function canonicalPath(pathname) {
  return pathname
    .split("/")
    .map((segment) => uriEncode(segment))
    .join("/");
}

function amzDate(now) {
  return now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/**
 * The headers that sign `method url` with `body` (a string or bytes) under `credentials`
 * ({accessKeyId, secretAccessKey, sessionToken?}) for `region`.
 */
export async function signatureHeaders({ method, url, body = "", credentials, region, now = new Date() }) {
  const target = new URL(url, location.href);
  const timestamp = amzDate(now);
  const day = timestamp.slice(0, 8);
  const payloadHash = await sha256Hex(body);
  const headers = { host: target.host, "x-amz-content-sha256": payloadHash, "x-amz-date": timestamp };
  if (credentials.sessionToken) headers["x-amz-security-token"] = credentials.sessionToken;
  const names = Object.keys(headers).sort();
  const canonicalRequest = [
    method.toUpperCase(),
    canonicalPath(target.pathname),
    canonicalQuery(target.search),
    names.map((name) => `${name}:${String(headers[name]).trim()}\n`).join(""),
    names.join(";"),
    payloadHash,
  ].join("\n");
  const scope = `${day}/${region}/${SERVICE}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", timestamp, scope, await sha256Hex(canonicalRequest)].join("\n");
  let key = await hmac(`AWS4${credentials.secretAccessKey}`, day);
  for (const part of [region, SERVICE, "aws4_request"]) key = await hmac(key, part);
  const signature = hex(await hmac(key, stringToSign));
  const signed = { ...headers };
  delete signed.host; // the browser sends Host itself, from the URL
  signed.authorization =
    `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, ` +
    `SignedHeaders=${names.join(";")}, Signature=${signature}`;
  return signed;
}
