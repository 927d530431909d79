// kembar dashboard: renders the live status pushed by /events (server-sent events) and
// posts standby / takeover after a confirmation.  Every value from the server is put into
// the page as text (textContent), never as HTML.
"use strict";

const CSRF = document.querySelector('meta[name="kembar-csrf"]').content;
const ME = document.querySelector('meta[name="kembar-node"]').content;
let last = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function replace(id, ...children) {
  const target = document.getElementById(id);
  target.replaceChildren(...children);
}

function size(bytes) {
  if (bytes === null || bytes === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : v) + " " + units[i];
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return seconds < 10 ? Math.round(seconds * 1000) + " ms ago" : seconds.toFixed(1) + " s ago";
}

function clock(t) {
  return new Date(t * 1000).toLocaleTimeString([], {hour12: false});
}

function stateClass(state) {
  return {up: "ok", running: "ok", started: "ok", UpToDate: "ok", Connected: "ok",
          Primary: "ok", dead: "bad", failed: "bad", Diskless: "bad", Inconsistent: "warn",
          Outdated: "warn", StandAlone: "bad", Connecting: "warn"}[state] || "";
}

// ------------------------------------------------------------------ rendering

function renderNodes(st) {
  const rows = [];
  const mine = st.ping && st.ping.total ? st.ping.score + "/" + st.ping.total : "-";
  const standby = st.manager && st.manager.standby;
  rows.push(el("tr", {id: "node-" + st.node, "data-state": "up", "data-node": st.node},
    el("td", {}, el("b", {}, st.node), " (this node)"),
    el("td", {class: "ok"}, "up" + (standby ? ", standby" : "")),
    el("td", {}, "-"), el("td", {}, "-"), el("td", {}, (st.links || []).join(", ")),
    el("td", {}, st.incarnation), el("td", {}, mine)));
  for (const [name, n] of Object.entries(st.nodes || {}).sort()) {
    const links = Object.entries(n.links || {}).map(([ln, ls]) =>
      el("span", {class: stateClass(ls.state === "up" ? "up" : "dead"),
                  "data-link": ln, "data-state": ls.state}, ln + ": " + ls.state + " "));
    rows.push(el("tr", {id: "node-" + name, "data-state": n.state, "data-node": name},
      el("td", {}, el("b", {}, name)),
      el("td", {class: stateClass(n.state)}, n.state + (n.reason ? " (" + n.reason + ")" : "")),
      el("td", {}, age(n.last_heard)),
      el("td", {class: n.late ? "warn" : ""}, n.late),
      el("td", {}, ...links),
      el("td", {}, n.incarnation === null ? "-" : n.incarnation),
      el("td", {}, n.ping ? n.ping[0] + "/" + n.ping[1] : "-")));
  }
  document.querySelector("#nodes tbody").replaceChildren(...rows);
}

function renderGroups(st) {
  const groups = (st.manager && st.manager.groups) || {};
  const out = [];
  for (const [name, g] of Object.entries(groups).sort()) {
    const on = g.running_on || [];
    const head = el("h3", {}, "group ", el("b", {}, name), ": ",
      on.length ? el("span", {class: "ok"}, "runs on " + on.join(", "))
                : el("span", {class: "bad"}, "runs nowhere"),
      el("span", {class: "dim"}, " (preferred " + g.preferred + ", auto_failback " +
         (g.auto_failback ? "on" : "off") + ")"));
    const rows = (g.resource_states || []).map((r) =>
      el("tr", {"data-resource": r.resource, "data-state": r.state},
        el("td", {}, r.resource),
        el("td", {class: stateClass(r.state) || (r.state.includes("FAILED") ? "bad" : "")},
           r.state),
        el("td", {class: r.fail_count ? "warn" : ""}, r.fail_count)));
    const table = el("table", {class: "resources"},
      el("thead", {}, el("tr", {}, el("th", {}, "resource"), el("th", {}, "on " + ME),
                         el("th", {}, "fail count"))),
      el("tbody", {}, ...rows));
    const notes = [];
    notes.push(el("p", {}, "on " + ME + ": ", el("b", {class: stateClass(g.here)}, g.here),
      g.failed_here ? el("span", {class: "bad"}, " — failed here: " + g.failed_here) : null));
    if ((g.failed_on || []).length)
      notes.push(el("p", {class: "bad"}, "failed on " + g.failed_on.join(", ")));
    if (g.last_error) notes.push(el("p", {class: "warn"}, "last error: " + g.last_error));
    for (const d of g.decisions || []) notes.push(el("p", {class: "dim"}, "decision: " + d));
    const take = el("button", {type: "button", class: "takeover", "data-group": name},
                    "Take over " + name + " on " + ME);
    take.disabled = g.here === "running" || g.here === "starting" ||
      !!(st.manager && st.manager.standby);  // refused in standby: "Go online" first
    take.addEventListener("click", () => confirmThen(
      "Take over group " + name + " on " + ME + "? Its owner stops it first " +
      "(an orderly handover): its clients see a short outage.",
      () => post("/api/takeover", {groups: [name]})));
    out.push(el("div", {class: "group", id: "group-" + name, "data-running-on": on.join(",")},
      head, table, ...notes, take));
  }
  if (out.length) replace("groups", ...out);
}

function renderDisks(snap) {
  const out = [];
  for (const [name, d] of Object.entries(snap.disks || {}).sort()) {
    if (!d) {
      out.push(el("div", {class: "disk", id: "disk-" + name, "data-state": "down"},
        el("h3", {}, "disk ", el("b", {}, name), ": ",
           el("span", {class: "bad"}, "not answering")),
        el("p", {class: "dim"}, (snap.disk_errors || {})[name] || "")));
      continue;
    }
    const p = d.peer || {};
    const lines = [
      el("h3", {}, "disk ", el("b", {}, name), " ",
         el("span", {class: stateClass(d.role)}, d.role), " / ",
         el("span", {class: stateClass(d.disk_state)}, d.disk_state),
         el("span", {class: "dim"}, " protocol " + d.protocol + ", " + size(d.size))),
      el("p", {}, "peer " + p.node + ": ",
         el("span", {class: stateClass(p.connection)}, p.connection),
         p.connection === "Connected" ?
           " role " + p.role + ", disk " + p.disk_state + ", replication " + p.replication : ""),
    ];
    if (d.sync) {
      const s = d.sync;
      lines.push(el("p", {class: "sync"}, p.replication + " ",
        el("progress", {max: 100, value: s.done_percent}), " " + s.done_percent + "% · " +
        size(s.rate) + "/s · " + size(s.remaining) + " left · eta " +
        (s.eta_seconds === null ? "?" : Math.round(s.eta_seconds) + " s")));
    }
    const c = d.counters || {};
    lines.push(el("p", {class: "dim"}, "out of sync " + size(d.out_of_sync) + " · sent " +
      size(c.sent) + " · received " + size(c.received) + " · resync sent " +
      size(c.rs_sent) + " · resync received " + size(c.rs_received)));
    if (d.last_error) lines.push(el("p", {class: "warn"}, "last error: " + d.last_error));
    out.push(el("div", {class: "disk", id: "disk-" + name, "data-role": d.role,
      "data-disk-state": d.disk_state, "data-connection": p.connection}, ...lines));
  }
  if (out.length) replace("disks", ...out);
}

function renderEvents(st) {
  const items = (st.events || []).slice(-30).reverse().map((e) =>
    el("li", {"data-event": e.event}, el("span", {class: "time"}, clock(e.time)),
       e.text || e.event));
  replace("events", ...items);
}

function renderStandby(st) {
  const on = !!(st.manager && st.manager.standby);
  document.getElementById("standby-state").textContent = ME + (on ?
    " is in standby: it runs no group." : " is online: it may run groups.");
  const b = document.getElementById("standby");
  b.dataset.on = on ? "false" : "true";
  b.textContent = on ? "Go online" : "Standby";
}

function render(snap) {
  last = snap;
  const st = snap.status || {};
  renderNodes(st);
  renderGroups(st);
  renderDisks(snap);
  renderStandby(st);
  renderEvents(st);
  document.getElementById("updated").textContent = "updated " + clock(snap.time);
}

// -------------------------------------------------------------------- actions

let pending = null;

function confirmThen(text, action) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  pending = action;
  dialog.returnValue = "";
  dialog.showModal();
}

function say(text, bad) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = bad ? "bad" : "";
  m.hidden = false;
}

async function post(path, body) {
  try {
    const r = await fetch(path, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-Kembar-CSRF": CSRF},
      body: JSON.stringify(body)});
    if (r.status === 401) { location.assign("/login"); return; }
    const answer = await r.json();
    say(answer.ok ? answer.message : "refused: " + answer.error, !answer.ok);
  } catch (err) {
    say("the daemon did not answer: " + err, true);
  }
}

function live(ok) {
  const b = document.getElementById("live");
  b.textContent = ok ? "live" : "connection lost, retrying…";
  b.className = "badge " + (ok ? "live" : "lost");
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("status", (ev) => { live(true); render(JSON.parse(ev.data)); });
  source.addEventListener("logout", () => { source.close(); location.assign("/login"); });
  source.onerror = async () => {
    live(false);
    if (source.readyState === EventSource.CLOSED) {  // refused (401): the login expired
      const r = await fetch("/api/status", {credentials: "same-origin"});
      if (r.status === 401) location.assign("/login");
      else setTimeout(connect, 2000);
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("confirm").addEventListener("close", (ev) => {
    const action = pending;
    pending = null;
    if (ev.target.returnValue === "ok" && action) action();
  });
  document.getElementById("standby").addEventListener("click", (ev) => {
    const on = ev.target.dataset.on === "true";
    confirmThen(on ? "Put " + ME + " in standby? The groups it runs move to the other node."
                   : "Bring " + ME + " back online? Groups may move back here.",
                () => post("/api/standby", {on: on}));
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/logout", {method: "POST", credentials: "same-origin",
                            headers: {"X-Kembar-CSRF": CSRF}});
    location.assign("/login");
  });
  connect();
});
