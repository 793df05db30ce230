// AWS Signature Version 4 in the browser (WebCrypto), for flow-router's /v1 API
// (service "flow-router"). The server rebuilds the canonical request the way
// router/auth/sigv4.py does: the raw path percent-encoded once more, the query
// pairs sorted, the host and x-amz-date headers signed, and the hex SHA-256 of
// the body. Paths and queries are built with strictEncode, so the browser sends
// them exactly as signed.
"use strict";

const SigV4 = (() => {
  const encoder = new TextEncoder();
  const SERVICE = "flow-router";
  const REGION = "us-east-1"; // any region is accepted; the scope only has to name one

  // RFC 3986: everything but A-Z a-z 0-9 - _ . ~ as %XX of UTF-8.
  function strictEncode(text) {
    return encodeURIComponent(text).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  }

  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function sha256(text) {
    return hex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
  }

  async function hmac(key, text) {
    const raw = typeof key === "string" ? encoder.encode(key) : key;
    const imported = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return new Uint8Array(await crypto.subtle.sign("HMAC", imported, encoder.encode(text)));
  }

  // The path as the server canonicalises it: each byte outside A-Z a-z 0-9 - _ . ~ /
  // of the path as sent (already strictly encoded) encoded once more.
  function canonicalPath(path) {
    return path.replace(/[^A-Za-z0-9\-_.~/]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0"));
  }

  function amzDate(now) {
    return now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  }

  function available() {
    return Boolean(window.isSecureContext && window.crypto && window.crypto.subtle);
  }

  // Headers for `method path?query` with `body`, signed with `key` ({id, secret}).
  // `query` is a list of [name, value] pairs; the caller sends queryString(query).
  async function sign(method, path, query, body, key, now = new Date()) {
    const date = amzDate(now);
    const day = date.slice(0, 8);
    const scope = `${day}/${REGION}/${SERVICE}/aws4_request`;
    const canonicalQuery = query
      .map(([k, v]) => [strictEncode(k), strictEncode(v)])
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join("&");
    const headers = `host:${location.host}\nx-amz-date:${date}\n`;
    const signed = "host;x-amz-date";
    const canonical = [method, canonicalPath(path), canonicalQuery, headers, signed, await sha256(body)].join("\n");
    const toSign = ["AWS4-HMAC-SHA256", date, scope, await sha256(canonical)].join("\n");
    let k = await hmac("AWS4" + key.secret, day);
    for (const part of [REGION, SERVICE, "aws4_request"]) k = await hmac(k, part);
    const signature = hex(await hmac(k, toSign));
    return {
      "X-Amz-Date": date,
      Authorization: `AWS4-HMAC-SHA256 Credential=${key.id}/${scope}, SignedHeaders=${signed}, Signature=${signature}`,
    };
  }

  function queryString(query) {
    return query.map(([k, v]) => `${strictEncode(k)}=${strictEncode(v)}`).join("&");
  }

  return { sign, strictEncode, queryString, available };
})();
