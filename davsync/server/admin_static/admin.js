// davsync admin page: reads /api/status every few seconds; user changes are POSTs with the CSRF token.
"use strict";
let csrf = "";
// Absolute URLs without any user:password@ the page may have been opened with (Chrome refuses those).
const BASE = location.origin + location.pathname.replace(/[^/]*$/, "");
const $ = (id) => document.getElementById(id);
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "click") el.addEventListener("click", v); else if (k === "class") el.className = v; else el.setAttribute(k, v);
  }
  for (const c of kids.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
function size(n) {
  const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return i ? `${n.toFixed(1)} ${u[i]}` : `${n} B`;
}
const when = (t) => t ? new Date(t * 1000).toLocaleString([], {hour12: false}) : "not yet";
function say(text, bad) { const m = $("message"); m.textContent = text; m.className = "banner" + (bad ? " error" : ""); m.hidden = !text; }

async function post(verb, body) {
  const r = await fetch(`${BASE}api/users/${verb}`, {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
    body: JSON.stringify(body)});
  const data = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
  if (!r.ok) say(data.error || `HTTP ${r.status}`, true); else say(data.message, false);
  await refresh();
}

function render(s) {
  csrf = s.csrf;
  $("who").textContent = `Logged in as ${s.me}`;
  $("root").textContent = `Sharing ${s.root} (guests: ${s.anonymous})`;
  $("urls").replaceChildren(...s.urls.map((u) => h("li", {}, u)));
  $("disk").textContent = `Disk: ${size(s.disk.free)} free of ${size(s.disk.total)}`;
  $("qr").src = s.qr;
  const i = s.index;
  $("index").replaceChildren(
    h("li", {class: i.scan_done ? "ok" : "bad"}, i.scan_done ? "Initial scan done" : "Initial scan running…"),
    h("li", {}, `${i.files} files indexed; ${i.files_hashed} hashed (${size(i.bytes_hashed)}) since start`),
    h("li", {}, `Hashing backlog: ${i.backlog === null ? "?" : i.backlog} path(s) waiting`),
    h("li", {}, `Last full rescan: ${when(i.last_rescan)} (every ${i.rescan_interval} s)`),
    h("li", {}, `Change journal at #${i.change_seq}`));
  $("clients").replaceChildren(...(s.clients.length ? s.clients.map((c) => h("tr", {}, h("td", {}, c.user), h("td", {}, c.address),
    h("td", {}, when(c.last_seen)), h("td", {}, c.requests), h("td", {}, size(c.bytes_sent)), h("td", {class: "agent", title: c.agent}, c.agent)))
    : [h("tr", {}, h("td", {colspan: "6", class: "muted"}, "No clients since the server started."))]));
  $("users").replaceChildren(...s.users.map((u) => h("tr", {"data-user": u.name}, h("td", {}, u.name),
    h("td", {}, (u.read_only ? "read-only" : "read-write") + (u.admin ? ", admin" : "")),
    h("td", {},
      h("button", {class: "toggle-ro", click: () => post("read-only", {name: u.name, read_only: !u.read_only})},
        u.read_only ? "Allow writing" : "Make read-only"), " ",
      h("button", {class: "reset", click: () => { const p = prompt(`New password for ${u.name}`); if (p) post("password", {name: u.name, password: p}); }},
        "Reset password"), " ",
      u.name === s.me ? null : h("button", {class: "remove", click: () => { if (confirm(`Remove ${u.name}?`)) post("remove", {name: u.name}); }}, "Remove")))));
  $("explorer").replaceChildren(h("li", {}, `Map network drive > Folder: ${s.explorer.unc}`), h("li", {}, s.explorer.auth),
    ...s.explorer.notes.map((n) => h("li", {class: "muted"}, n)));
  $("versions").textContent = s.versions;
}

async function refresh() {
  const r = await fetch(`${BASE}api/status`);
  if (r.ok) render(await r.json()); else say(`HTTP ${r.status}`, true);
}
$("add-user").addEventListener("submit", (ev) => {
  ev.preventDefault();
  post("add", {name: $("new-name").value, password: $("new-password").value, read_only: $("new-ro").checked,
    admin: $("new-admin").checked}).then(() => ev.target.reset());
});
refresh();
setInterval(refresh, 5000);
