// davsync admin page: reads /api/status every few seconds; user changes and restores are POSTs with the CSRF token.
// The versions list is read on load, on Filter and after a restore (not on the timer: it would close open folders).
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
  const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return i ? `${n.toFixed(1)} ${u[i]}` : `${n} B`;
}
// A compact local time for table cells: 2026-11-22 14:05.
const stamp = (t) => { const d = new Date(t * 1000), p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`; };
const when = (t) => t ? new Date(t * 1000).toLocaleString([], {hour12: false}) : "not yet";
function say(text, bad) { const m = $("message"); m.textContent = text; m.className = "banner" + (bad ? " error" : ""); m.hidden = !text; }

async function send(path, body) {
  const r = await fetch(`${BASE}${path}`, {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
    body: JSON.stringify(body)});
  const data = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
  if (!r.ok) say(data.error || `HTTP ${r.status}`, true); else say(data.message, false);
  return r.ok;
}
async function post(verb, body) { await send(`api/users/${verb}`, body); await refresh(); }

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
  const v = s.versions, keep = v.keep_seconds % 86400 ? `${Math.round(v.keep_seconds / 3600)} hours` : `${v.keep_seconds / 86400} days`;
  $("versions").textContent = `${v.kept} version${v.kept === 1 ? "" : "s"} kept (${size(v.bytes)}). ` + (v.enabled
    ? `What WebDAV clients overwrite or delete is kept ${keep}${v.max_bytes ? `, at most ${size(v.max_bytes)} in all` : ""}.`
    : "New versions are not being kept (--keep-versions 0); these stay until it is turned back on.");
}

// --- versions ------------------------------------------------------------------------------
let versionsPath = "";
const opened = new Set();  // ids of deleted folders whose files are shown

async function restore(body) {
  if (await send("api/versions/restore", body)) opened.delete(body.id);
  await Promise.all([loadVersions(), refresh()]);
}
function actions(path, id) {
  const td = h("td", {class: "act"});
  const plain = () => td.replaceChildren(
    h("button", {class: "restore", title: `Put it back at ${path}; whatever is there now is kept as a version first`,
      click: () => restore({path, id})}, "Restore"), " ",
    h("button", {class: "restore-to", click: () => {
      const input = h("input", {class: "restore-path", value: path, "aria-label": "Restore to this path"});
      const go = () => restore({path, id, to: input.value});
      input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") go(); if (ev.key === "Escape") plain(); });
      td.replaceChildren(input, " ", h("button", {class: "restore-here", click: go}, "Restore here"), " ",
        h("button", {class: "cancel", click: plain}, "Cancel"));
      input.focus(); input.select();
    }}, "Restore to…"));
  plain();
  return td;
}
const fileRow = (v) => h("tr", {class: v.folder ? "member" : "file", "data-version-path": v.path, "data-version-id": v.id},
  h("td", {class: "path"}, v.path), h("td", {class: "num"}, size(v.size)), h("td", {class: "nowrap"}, stamp(v.mtime)),
  h("td", {class: "nowrap"}, stamp(v.time)), h("td", {}, v.user), h("td", {}, v.method), actions(v.path, v.id));
function folderRow(f) {
  const open = opened.has(f.id);
  return h("tr", {class: "folder", "data-version-path": f.path, "data-version-id": f.id},
    h("td", {class: "path"}, `${f.path}/ `, h("button", {class: "expand", "aria-expanded": String(open),
      click: () => { if (open) opened.delete(f.id); else opened.add(f.id); loadVersions(); }},
      open ? "Hide files" : `Show ${f.files} file${f.files === 1 ? "" : "s"}`)),
    h("td", {class: "num"}, size(f.bytes)), h("td", {class: "muted"}, "folder"), h("td", {class: "nowrap"}, stamp(f.time)),
    h("td", {}, f.user), h("td", {}, f.method), actions(f.path, f.id));
}
async function getVersions(params) {
  const r = await fetch(`${BASE}api/versions?${new URLSearchParams(params)}`);
  const data = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
  if (!r.ok) { say(data.error || `HTTP ${r.status}`, true); return null; }
  return data;
}
let versionsLoads = 0;  // only the newest load renders: an older answer arriving late must not overwrite it
async function loadVersions() {
  const mine = ++versionsLoads;
  const v = await getVersions({path: versionsPath});
  if (!v) return;
  const rows = [];
  const shown = new Set(v.files.map((f) => f.path + "\0" + f.id));
  for (const f of v.folders) {
    rows.push(folderRow(f));
    if (!opened.has(f.id)) continue;
    const inside = await getVersions({id: f.id});
    if (inside) rows.push(...inside.files.filter((m) => !shown.has(m.path + "\0" + m.id)).map(fileRow));
    if (inside && inside.more) rows.push(h("tr", {}, h("td", {colspan: "7", class: "muted"}, `${inside.more} more: filter by a path inside ${f.path}`)));
  }
  rows.push(...v.files.map(fileRow));
  if (!rows.length) rows.push(h("tr", {}, h("td", {colspan: "7", class: "muted"},
    versionsPath ? `No versions kept at or below ${versionsPath}.` : "No versions kept.")));
  if (v.more) rows.push(h("tr", {}, h("td", {colspan: "7", class: "muted"}, `${v.more} more: filter by a path to see them.`)));
  if (mine === versionsLoads) $("versions-list").replaceChildren(...rows);
}
$("versions-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  versionsPath = $("versions-path").value.trim().replace(/^\/+|\/+$/g, "");
  loadVersions();
});

async function refresh() {
  const r = await fetch(`${BASE}api/status`);
  if (r.ok) render(await r.json()); else say(`HTTP ${r.status}`, true);
}
$("add-user").addEventListener("submit", (ev) => {
  ev.preventDefault();
  post("add", {name: $("new-name").value, password: $("new-password").value, read_only: $("new-ro").checked,
    admin: $("new-admin").checked}).then(() => ev.target.reset());
});
refresh().then(loadVersions);
setInterval(refresh, 5000);
