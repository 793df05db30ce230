// Building the console's DOM. Every string from the gateway (flow, alias and
// version names, messages) goes in with textContent or an attribute, never as
// HTML, so none of it can run as script.
"use strict";

const Views = (() => {
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }

  const pct = (share) => (share === null || share === undefined ? "–" : `${(share * 100).toFixed(1)}%`);
  const ms = (value) =>
    value === null || value === undefined ? "–" : value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;

  function flowHref(name) {
    return "#/flow/" + encodeURIComponent(name);
  }

  // -- flows list ------------------------------------------------------------------

  function flowRow(flow) {
    const chips = flow.aliases.map((a) =>
      el(
        "span",
        {
          className: a.rollout ? "alias-chip rolling" : "alias-chip",
          "data-alias": a.name,
          "data-rollout": a.rollout || "",
          title: a.rollout ? `rollout: ${a.rollout}` : undefined,
        },
        el("b", { text: a.name }),
        document.createTextNode(" " + a.routes.map((r) => `${r.version}:${r.weight}`).join(" ")),
      ),
    );
    const cell = el("td", { className: "aliases" }, ...chips);
    if (!flow.aliases.length) cell.append(el("span", { className: "muted", text: "no aliases" }));
    return el(
      "tr",
      { "data-flow": flow.name },
      el("td", {}, el("a", { className: "flow-link", href: flowHref(flow.name), text: flow.name })),
      cell,
    );
  }

  // -- one alias -------------------------------------------------------------------

  function bar(label, segments, kind) {
    const row = el("div", { className: "bar", "data-kind": kind });
    for (const s of segments) {
      if (!s.share) continue; // nothing to draw (no weight, or no executions yet)
      const seg = el("div", {
        className: `seg c${s.color}`,
        "data-version": s.version,
        "data-share": s.share === null ? "" : s.share.toFixed(4),
        title: `version ${s.version}: ${pct(s.share)}`,
        text: `v${s.version} ${pct(s.share)}`,
      });
      seg.style.width = `${((s.share || 0) * 100).toFixed(3)}%`; // CSSOM: allowed by the CSP
      row.append(seg);
    }
    if (!row.childElementCount) row.append(el("span", { className: "empty", text: "no executions in the last 5 minutes" }));
    return [el("span", { className: "muted", text: label }), row];
  }

  // Executions per 10 s bucket as bars, failures drawn over them in red.
  function spark(series, width = 150, height = 28) {
    const top = Math.max(1, ...series.started, ...series.failed);
    const n = series.started.length || 1;
    const step = width / n;
    const chart = svg("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    const title = svg("title");
    title.textContent = `executions per 10 s over 5 minutes (highest ${top}); failures in red`;
    chart.append(title, svg("line", { class: "axis", x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }));
    const bars = (values, kind) =>
      values.forEach((v, i) => {
        if (!v) return;
        const h = Math.max(1, (v * (height - 2)) / top);
        chart.append(svg("rect", { class: kind, x: (i * step + 0.5).toFixed(1), y: (height - h).toFixed(1), width: Math.max(1, step - 1).toFixed(1), height: h.toFixed(1) }));
      });
    bars(series.started, "started");
    bars(series.failed, "failed");
    return chart;
  }

  function versionTable(alias, colors) {
    const configured = new Map(alias.routes.map((r) => [r.version, r]));
    const realized = new Map(alias.realized.map((r) => [r.version, r]));
    const body = el("tbody");
    for (const v of alias.versions) {
      const route = configured.get(v.version);
      body.append(
        el(
          "tr",
          { "data-version": v.version },
          el("td", {}, el("span", { className: `swatch c${colors.get(v.version)}` }), document.createTextNode(v.version)),
          el("td", { className: "weight", text: route ? `${route.weight} (${pct(route.share)})` : "0" }),
          el("td", { className: "realized", text: pct(realized.get(v.version).share) }),
          el("td", { className: "executions", text: String(v.executions) }),
          el("td", { className: "success", text: pct(v.successRatio) }),
          el("td", { className: "p50", text: ms(v.p50Ms) }),
          el("td", { className: "p99", text: ms(v.p99Ms) }),
          el("td", {}, spark(v.series)),
        ),
      );
    }
    const head = el("thead", {}, el("tr", {}, ...["Version", "Weight", "Realised", "Executions", "Success", "p50", "p99", "Per 10 s"].map((t) => el("th", { text: t }))));
    return el("table", { className: "versions" }, head, body);
  }

  function rolloutPanel(flow, alias, rollout, act) {
    const steps = el("div", { className: "steps" });
    const finished = ["Succeeded", "RolledBack", "Aborted"].includes(rollout.phase);
    const weights = rollout.stepWeights || [];
    weights.forEach((w, i) => {
      // rollout.step counts from 1, as the rollout API answers it
      const state = i < rollout.step - 1 || rollout.phase === "Succeeded" ? "step done" : i === rollout.step - 1 ? "step current" : "step";
      steps.append(el("div", { className: state, title: `step ${i + 1}: ${w}%` }));
    });
    const counts = Object.entries(rollout.counts || {})
      .map(([v, c]) => `v${v}: ${c.executions} executions, ${c.failed} failed${c.slow ? ` (${c.slow} slow)` : ""}`)
      .join(" · ");
    const buttons = el("div", { className: "actions" });
    for (const action of ["promote", "pause", "resume", "abort"]) {
      const allowed =
        !finished &&
        (action !== "pause" || rollout.phase !== "Paused") &&
        (action !== "resume" || rollout.phase === "Paused");
      buttons.append(
        el("button", {
          type: "button",
          className: `act-${action}`,
          "data-action": action,
          disabled: !allowed,
          text: action[0].toUpperCase() + action.slice(1),
          onclick: () => act(flow, alias.name, action),
        }),
      );
    }
    const history = el("ol", { className: "history" });
    for (const h of rollout.history.slice(-8).reverse()) {
      history.append(el("li", { text: `${h.at} ${h.phase} step ${h.step} at ${h.canaryWeight}%: ${h.message}` }));
    }
    return el(
      "div",
      { className: "rollout", "data-phase": rollout.phase },
      el("div", {}, el("span", { className: "phase", text: rollout.phase }), document.createTextNode(` to version ${rollout.targetVersion}, step ${rollout.step}/${weights.length}, canary weight ${rollout.canaryWeight}%, evidence ${Number(rollout.evidence).toFixed(2)}`)),
      steps,
      el("div", { className: "message", text: rollout.message }),
      counts ? el("div", { className: "muted counts", text: counts }) : null,
      buttons,
      history,
    );
  }

  function aliasCard(flow, alias, act) {
    const versions = alias.versions.map((v) => v.version);
    const colors = new Map(versions.map((v, i) => [v, i % 8]));
    const configured = alias.routes.map((r) => ({ version: r.version, share: r.share, color: colors.get(r.version) }));
    const realized = alias.realized.map((r) => ({ version: r.version, share: r.share, color: colors.get(r.version) }));
    const executions = alias.realized.reduce((sum, r) => sum + r.executions, 0);
    const bars = el("div", { className: "bars" }, ...bar("configured", configured, "configured"), ...bar(`realised (${executions})`, realized, "realized"));
    return el(
      "div",
      { className: "card alias", "data-alias": alias.name },
      el("h3", {}, document.createTextNode(alias.name), el("span", { className: "rev", text: `revision ${alias.revision}` })),
      bars,
      versionTable(alias, colors),
      alias.rollout ? rolloutPanel(flow, alias, alias.rollout, act) : null,
    );
  }

  return { el, flowRow, aliasCard, flowHref };
})();
