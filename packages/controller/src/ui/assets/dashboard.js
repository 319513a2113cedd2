// The netfleet dashboard: reads /api/* (GET only) and follows /api/events (Server-Sent Events).
// Every value from the server is put in the page as text (textContent), never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);

/** An element with text and optional class and attributes. */
function el(tag, text, cls, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: "application/json" } });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || `${path}: ${res.status}`);
  return body;
}

function renderStatus(s) {
  if (s.error) {
    $("fleet-summary").textContent = `status not readable: ${s.error}`;
    return;
  }
  $("site").textContent = s.site;
  const counts = {};
  for (const h of s.hosts) counts[h.health] = (counts[h.health] || 0) + 1;
  $("fleet-summary").textContent = `${s.hosts.length} hosts: ${Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ")} (read ${new Date(s.at).toLocaleTimeString()})`;
  const body = $("hosts").tBodies[0];
  body.replaceChildren(
    ...s.hosts.map((h) => {
      const tr = el("tr", null, null, { "data-host": h.host, "data-health": h.health });
      tr.append(
        el("td", h.host),
        el("td").appendChild(el("span", h.health, `health h-${h.health}`)).parentNode,
        el("td", h.state),
        el("td", h.desired ? `r${h.desired.revision}` : "—"),
        el("td", h.applied ? `r${h.applied.revision}${h.applied.rolledBack ? " (rolled back)" : ""}` : "—"),
        el("td", ago(h.lastSeen), null, { title: h.lastSeen || "" }),
        el("td", [...h.failures.map((f) => `failed ${f.id}`), ...h.warnings.map((w) => `${w.id}: ${w.message}`), ...(h.corrective && h.corrective.count ? [`${h.corrective.count} repaired`] : [])].join("; ")),
      );
      return tr;
    }),
  );
}

function renderRollout(r) {
  if (r.error) {
    $("rollout-summary").textContent = `rollout not readable: ${r.error}`;
    return;
  }
  const st = r.state;
  const waves = $("rollout-waves");
  if (!st) {
    $("rollout-summary").textContent = r.lock ? `locked by ${r.lock.owner}, no state yet` : "no rollout yet";
    $("rollout-progress").value = 0;
    waves.replaceChildren();
    return;
  }
  const hosts = st.hosts || {};
  const total = Object.keys(hosts).length || st.waves.flat().length;
  const done = Object.values(hosts).filter((h) => h.status !== "pending" && h.status !== "applying" && h.status !== "reverting").length;
  const count = (...statuses) => Object.values(hosts).filter((h) => statuses.includes(h.status)).length;
  $("rollout-summary").textContent = `${st.rolloutId}: ${st.phase}, ${done} of ${total} hosts done (${count("ok")} ok, ${count("failed", "revert-failed")} failed, ${count("reverted", "not-reverted")} reverted)${r.lock ? `, lock held by ${r.lock.owner}` : ""}; updated ${ago(st.updatedAt)}`;
  $("rollout-summary").setAttribute("data-phase", st.phase);
  $("rollout-progress").max = Math.max(total, 1);
  $("rollout-progress").value = done;
  waves.replaceChildren(
    ...st.waves.map((wave, i) => {
      const li = el("li", `wave ${i + 1}: `);
      for (const host of wave) {
        const p = hosts[host];
        const status = p ? p.status : "pending";
        li.append(el("span", `${host} ${status}${p && p.revision ? ` r${p.revision}` : ""}`, `status s-${status}`, { "data-host": host, "data-status": status, title: (p && p.error) || "" }));
      }
      return li;
    }),
  );
}

/** Parses the SVG text and keeps only drawing: no script, no foreign content, no event handler, no outside link. */
function sanitizedSvg(text) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const svg = doc.documentElement;
  if (svg.nodeName !== "svg") throw new Error("the topology is not an SVG document");
  for (const bad of svg.querySelectorAll("script, foreignObject, iframe, object, embed")) bad.remove();
  for (const node of [svg, ...svg.querySelectorAll("*")]) {
    for (const a of [...node.attributes]) {
      const name = a.name.toLowerCase();
      if (name.startsWith("on")) node.removeAttribute(a.name);
      else if ((name === "href" || name === "xlink:href") && !a.value.startsWith("#")) node.removeAttribute(a.name);
    }
  }
  return document.importNode(svg, true);
}

async function loadTopology() {
  const box = $("topology-picture");
  try {
    const res = await fetch("/api/topology.svg");
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      box.textContent = `no picture: ${body.error || res.status}`;
      return;
    }
    box.replaceChildren(sanitizedSvg(await res.text()));
  } catch (err) {
    box.textContent = `no picture: ${err.message}`;
  }
}

function dl(pairs, cls) {
  const d = el("dl", null, cls);
  for (const [k, v, source] of pairs) {
    const dd = el("dd", v);
    if (source) dd.append(el("span", `(${source})`, "source"));
    d.append(el("dt", k), dd);
  }
  return d;
}

function ports(p) {
  return `${p.proto} ${p.from === p.to || p.to === undefined ? p.from : `${p.from}-${p.to}`}`;
}

function renderVm(v) {
  const box = $("vm-policy");
  box.replaceChildren(
    ...v.nics.map((n) => {
      const div = el("div", null, "nic", { "data-network": n.network });
      div.append(el("h3", `${v.name} on ${n.network} (VLAN ${n.vlan}, ${n.cidr})`));
      div.append(
        dl([
          ["address", `${n.ip || "DHCP"}  ${n.mac}${n.extraAddresses.length ? `  + ${n.extraAddresses.join(", ")}` : ""}`],
          ["host", n.host || "—"],
          ["isolation", n.isolated ? "isolated" : "not isolated"],
          ["groups", n.groups.join(", ") || "none"],
          ["egress", n.egress],
          ["allow", n.allow.map((a) => `${a.to || a.name}${a.ports ? ` ${JSON.stringify(a.ports)}` : ""}`).join(", ") || "none"],
          ["gateway services", n.gatewayServices.map(ports).join(", ") || "none"],
          ["forwards", [...n.forwards.map((f) => `${f.proto} ${f.listen} → ${v.name}:${f.port}`), ...n.rangeForwards.map((r) => `${r.proto} ${r.backendPort ?? `${r.listen}+`} → ${v.name}:${r.port} (range)`)].join(", ") || "none"],
          ["audit", n.audit ? "on" : "off"],
        ]),
      );
      if (n.effective) {
        div.append(el("h4", `effective policy${n.effective.profile ? ` (profile ${n.effective.profile})` : ""}, and where each value comes from`));
        div.append(dl(n.effective.entries.map((e) => [e.key, e.text, e.sourceText]), "effective"));
      }
      return div;
    }),
  );
}

function endpoint(a, p) {
  return p === undefined || p === null ? a : `${a}:${p}`;
}

function renderAudit(a) {
  $("vm-audit-summary").textContent = `${a.records.length} lines since ${new Date(a.since).toLocaleString()}${a.older ? ` (${a.older} older not shown)` : ""}${a.lost ? `; the collectors lost ${a.lost} records` : ""}`;
  $("vm-audit").tBodies[0].replaceChildren(
    ...a.records.map((r) => {
      const tr = el("tr", null, null, { "data-verdict": r.verdict });
      tr.append(
        el("td", r.time),
        el("td", r.verdict === "allow" ? "reached" : "refused", `v-${r.verdict}`),
        el("td", r.direction),
        el("td", r.proto),
        el("td", endpoint(r.src, r.sport)),
        el("td", endpoint(r.dst, r.dport)),
        el("td", `${r.network} at ${r.host}`),
      );
      return tr;
    }),
  );
}

async function showVm(name) {
  if (!name) {
    $("vm-policy").replaceChildren();
    return;
  }
  $("vm-select").value = name;
  $("vm-policy").textContent = "loading…";
  $("vm-audit-summary").textContent = "loading…";
  try {
    renderVm(await getJson(`/api/vm/${encodeURIComponent(name)}`));
  } catch (err) {
    $("vm-policy").textContent = err.message;
  }
  try {
    renderAudit(await getJson(`/api/vm/${encodeURIComponent(name)}/audit?since=24h`));
  } catch (err) {
    $("vm-audit-summary").textContent = `audit not readable: ${err.message}`;
  }
}

async function loadVms() {
  const { vms } = await getJson("/api/vms");
  const select = $("vm-select");
  const names = [...new Set(vms.map((v) => v.name))];
  select.append(...names.map((n) => el("option", n, null, { value: n })));
  select.addEventListener("change", () => (location.hash = select.value ? `vm=${encodeURIComponent(select.value)}` : ""));
}

function vmFromHash() {
  const m = /^#vm=([^&]+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : "";
}

function follow() {
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => {
    $("live").textContent = "live";
    $("live").className = "live-on";
  });
  events.addEventListener("error", () => {
    $("live").textContent = "reconnecting";
    $("live").className = "live-off";
  });
  events.addEventListener("status", (e) => renderStatus(JSON.parse(e.data)));
  events.addEventListener("rollout", (e) => renderRollout(JSON.parse(e.data)));
}

async function start() {
  follow();
  void loadTopology();
  await loadVms().catch((err) => ($("vm-policy").textContent = err.message));
  window.addEventListener("hashchange", () => void showVm(vmFromHash()));
  await showVm(vmFromHash());
  document.body.setAttribute("data-ready", "1");
}

void start();
