// The operator console: two views (the flows, one flow's aliases) drawn from
// /v1/console, refreshed every 2 s by polling without reloading the page, and
// the rollout actions (POST /v1/flows/{flow}/aliases/{alias}/rollout/{action}).
// With --credentials every request is signed (sigv4.js) with the key the user
// entered, kept in sessionStorage only; until then nothing is fetched or shown.
"use strict";

(() => {
  const POLL_MS = 2000;
  const PAGE = 50;
  const KEY = "flow-router-console-key";
  const signed = document.querySelector('meta[name="flow-router-auth"]').content === "sigv4";
  const $ = (id) => document.getElementById(id);
  const { el, flowRow, aliasCard, flowHref } = Views;

  const state = { search: "", token: null, tokens: [], timer: null, generation: 0, first: true, lastJson: "" };

  function storedKey() {
    try {
      const raw = sessionStorage.getItem(KEY);
      return raw ? JSON.parse(raw) : null;
    } catch (e) {
      return null;
    }
  }

  function show(id) {
    for (const section of ["login", "flows", "flow"]) $(section).hidden = section !== id;
  }

  function showError(message) {
    $("error").hidden = !message;
    $("error").textContent = message || "";
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, query = [], body = "") {
    const headers = {};
    if (signed) {
      const key = storedKey();
      if (!key) throw new ApiError(403, "NoKey", "no access key entered");
      Object.assign(headers, await SigV4.sign(method, path, query, body, key));
    }
    if (body) headers["Content-Type"] = "application/json";
    const qs = SigV4.queryString(query);
    const response = await fetch(qs ? `${path}?${qs}` : path, { method, headers, body: body || undefined, cache: "no-store" });
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch (e) {
      parsed = null;
    }
    if (!response.ok) {
      const code = parsed && parsed.code ? parsed.code : String(response.status);
      const message = parsed && parsed.message ? parsed.message : response.statusText;
      throw new ApiError(response.status, code, message);
    }
    return parsed;
  }

  function mark(name, value) {
    document.body.dataset[name] = value.toFixed(1);
  }

  // -- views -----------------------------------------------------------------------

  // Each draw checks, after its fetch, that no newer refresh started meanwhile (the
  // user navigated): a late answer for the view just left is dropped.
  async function drawFlows(generation) {
    const query = [["limit", String(PAGE)], ["search", state.search]];
    if (state.token) query.push(["nextToken", state.token]);
    const t0 = performance.now();
    const page = await api("GET", "/v1/console/flows", query);
    const t1 = performance.now();
    if (generation !== state.generation) return;
    const json = JSON.stringify(page);
    if (json !== state.lastJson) {
      state.lastJson = json;
      const rows = page.flows.map(flowRow);
      $("flow-table").tBodies[0].replaceChildren(...rows);
      $("flow-count").textContent = `${page.matched} of ${page.total} flows`;
      const first = state.token ? Number(state.token) : 0;
      $("page-info").textContent = page.flows.length ? `${first + 1}–${first + page.flows.length}` : "no flows match";
      $("next").disabled = !page.nextToken;
      $("prev").disabled = !state.tokens.length;
      state.next = page.nextToken;
    }
    crumbs([]);
    show("flows");
    timings(t0, t1);
  }

  async function drawFlow(name, generation) {
    const t0 = performance.now();
    const detail = await api("GET", "/v1/console/flows/" + SigV4.strictEncode(name));
    const t1 = performance.now();
    if (generation !== state.generation) return;
    const json = JSON.stringify(detail.aliases);
    if (json !== state.lastJson) {
      state.lastJson = json;
      $("flow-name").textContent = detail.name;
      const cards = detail.aliases.map((alias) => aliasCard(detail.name, alias, act));
      if (!cards.length) cards.push(el("p", { className: "muted", text: "This flow has no aliases." }));
      $("aliases").replaceChildren(...cards);
    }
    crumbs([detail.name]);
    show("flow");
    timings(t0, t1);
  }

  function timings(t0, t1) {
    const done = performance.now();
    mark("fetchMs", t1 - t0);
    mark("renderMs", done - t1);
    if (state.first) {
      state.first = false;
      mark("firstRenderMs", done); // since the navigation started
    } else {
      mark("updateMs", done - t0);
    }
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    $("live").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  }

  function crumbs(names) {
    const nav = $("crumbs");
    nav.replaceChildren(el("a", { href: "#/", text: "Flows" }));
    for (const name of names) nav.append(document.createTextNode(" / "), el("a", { href: flowHref(name), text: name }));
  }

  async function act(flow, alias, action) {
    const path = `/v1/flows/${SigV4.strictEncode(flow)}/aliases/${SigV4.strictEncode(alias)}/rollout/${action}`;
    try {
      await api("POST", path, [], action === "promote" ? "{}" : "");
      showError("");
    } catch (e) {
      showError(`${action} refused: ${e.message}`);
    }
    refresh();
  }

  // -- the loop ---------------------------------------------------------------------

  function route() {
    const hash = location.hash || "#/";
    if (hash.startsWith("#/flow/")) return { flow: decodeURIComponent(hash.slice(7)) };
    return { flow: null };
  }

  async function refresh() {
    clearTimeout(state.timer);
    const generation = ++state.generation;
    try {
      const where = route();
      if (where.flow === null) await drawFlows(generation);
      else await drawFlow(where.flow, generation);
      if (generation === state.generation) showError("");
    } catch (e) {
      if (generation !== state.generation) return;
      if (e instanceof ApiError && e.status === 403 && signed) {
        sessionStorage.removeItem(KEY);
        return login(`The gateway refused the key: ${e.message}`);
      }
      if (generation === state.generation) showError(e.message || String(e));
    }
    if (generation === state.generation) state.timer = setTimeout(refresh, POLL_MS);
  }

  function navigate() {
    state.lastJson = "";
    refresh();
  }

  function login(message) {
    clearTimeout(state.timer);
    state.generation++;
    show("login");
    $("forget").hidden = true;
    $("crumbs").replaceChildren();
    $("login-error").textContent = message || "";
    if (!SigV4.available()) {
      $("login-error").textContent =
        "Signing needs WebCrypto, which browsers offer only on https:// or on this machine (127.0.0.1, localhost).";
      $("login-button").disabled = true;
    }
  }

  function start() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = { id: $("key-id").value.trim(), secret: $("key-secret").value };
      if (!key.id || !key.secret) return;
      sessionStorage.setItem(KEY, JSON.stringify(key));
      $("key-secret").value = "";
      $("forget").hidden = false;
      navigate();
    });
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      login("");
    });
    let typing = null;
    $("search").addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        state.search = $("search").value;
        state.token = null;
        state.tokens = [];
        navigate();
      }, 200);
    });
    $("next").addEventListener("click", () => {
      if (!state.next) return;
      state.tokens.push(state.token);
      state.token = state.next;
      navigate();
    });
    $("prev").addEventListener("click", () => {
      if (!state.tokens.length) return;
      state.token = state.tokens.pop();
      navigate();
    });
    window.addEventListener("hashchange", navigate);
    if (signed && !storedKey()) return login("");
    $("forget").hidden = !signed;
    navigate();
  }

  start();
})();
