// davsync dashboard: renders the state the app pushes (server-sent events) and sends commands.
// Plain DOM, no framework, no build step. Text always goes in via textContent (file names are untrusted).
"use strict";

let csrf = "";
let state = null;
const cards = new Map();  // pair id -> {root, parts}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

const $ = (id) => document.getElementById(id);
// Re-build a part of the page only when its data changed: a button must not be replaced under the
// pointer between mousedown and click, and a re-render every second would do exactly that.
function update(el, data, build) {
  const key = JSON.stringify(data);
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  build();
}
const TIME = {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false};
const clock = (t) => t ? new Date(t * 1000).toLocaleTimeString([], TIME) : "never";
const when = (t) => {
  if (!t) return "unknown time";
  const d = new Date(t * 1000);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString([], TIME) : d.toLocaleString([], {hour12: false});
};
function size(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${Math.round(n)} B`;
}
function duration(s) {
  if (s < 90) return `${Math.max(1, Math.round(s))} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
const STATE_WORDS = {error: "Stopped", ok: "Up to date", syncing: "Syncing", paused: "Paused", offline: "Offline",
  attention: "Needs attention", checking: "Checking", stale: "Check overdue"};

async function api(path, body) {
  const opts = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
    body: JSON.stringify(body)};
  const resp = await fetch(path, {credentials: "same-origin", ...opts});
  let data = {};
  try { data = await resp.json(); } catch (e) { data = {error: `HTTP ${resp.status}`}; }
  if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
  return data;
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = "banner " + (isError ? "error" : "ok");
  m.hidden = !text;
}

async function run(path, body) {
  try {
    const data = await api(path, body || {});
    if (data.message) say(data.message, false);
    return data;
  } catch (e) {
    say(e.message, true);
    return null;
  }
}

// --- the overall state -----------------------------------------------------------

function renderOverall(s) {
  const o = s.overall;
  $("overall").className = `overall state-${o.state}`;
  $("overall").dataset.state = o.state;
  $("overall-label").textContent = o.label;
  $("overall-detail").textContent = o.detail || "";
  document.title = `davsync: ${o.label}`;
  $("pause-all").textContent = s.all_paused ? "Resume" : "Pause";
  $("pause-all").dataset.paused = s.all_paused ? "1" : "0";
  $("empty").hidden = s.pairs.length > 0;
  $("config-file").textContent = s.config_file || "";
  $("notice").textContent = s.notice || "";
  $("notice").hidden = !s.notice;
}

// --- one folder pair ---------------------------------------------------------------

function makeCard(p) {
  const parts = {
    title: h("div", {class: "pair-title"}),
    url: h("div", {class: "pair-url"}),
    badge: h("span", {class: "badge"}),
    mode: h("span", {class: "badge"}),
    result: h("p", {class: "result"}),
    checked: h("p", {class: "muted checked"}),
    counts: h("div", {class: "counts"}),
    progress: h("div", {class: "progress"}),
    attention: h("div", {class: "attention", hidden: true}),
    recentList: h("ul", {class: "plain recent"}),
    trashList: h("ul", {class: "plain trash"}),
    pause: h("button", {type: "button", class: "small pause"}),
  };
  parts.pause.addEventListener("click", () => run(`/api/pairs/${p.id}/${parts.pause.dataset.paused === "1" ? "resume" : "pause"}`));
  const trash = h("details", {class: "trash-panel"}, h("summary", {text: "Trash: what davsync moved aside"}), parts.trashList);
  trash.addEventListener("toggle", () => { if (trash.open) loadTrash(p.id, parts.trashList); });
  const root = h("section", {class: "card pair", "data-pair": p.id},
    h("div", {class: "pair-head"},
      h("div", {}, h("div", {}, parts.title, parts.mode, parts.badge), parts.url),
      h("div", {class: "buttons"},
        h("button", {type: "button", class: "small sync-now", on: {click: () => run(`/api/pairs/${p.id}/sync-now`)}}, "Sync now"),
        parts.pause,
        h("button", {type: "button", class: "small", on: {click: () => run(`/api/pairs/${p.id}/open`, {})}}, "Open folder"))),
    parts.result, parts.checked, parts.counts, parts.progress, parts.attention,
    h("details", {class: "recent-panel"}, h("summary", {text: "Recent changes"}), parts.recentList),
    trash,
    makeSharePanel(p),
    makeEditor(p));
  return {root, parts};
}

function makeEditor(p) {
  const f = h("form", {class: "edit-form"},
    h("div", {class: "row"},
      h("label", {}, "User", h("input", {name: "user", value: ""})),
      h("label", {}, "New password (blank: keep)", h("input", {name: "password", type: "password", autocomplete: "new-password"}))),
    h("div", {class: "row"},
      h("label", {}, "Check every (seconds)", h("input", {name: "interval", type: "number", min: "0.2", step: "any"})),
      h("label", {}, "Mode", h("select", {name: "mode"}, h("option", {value: "pull"}, "Pull: mirror the server onto this PC"),
        h("option", {value: "sync"}, "Sync: changes go both ways")))),
    h("label", {class: "check"}, h("input", {type: "checkbox", name: "delete"}), "Also delete here what is deleted on the server (to the trash; two-way sync always does this, both ways)"),
    h("label", {}, "Skip these (one pattern a line)", h("textarea", {name: "excludes", rows: "2"})),
    h("div", {class: "buttons"},
      h("button", {type: "submit", class: "primary small"}, "Save"),
      h("button", {type: "button", class: "small danger remove", on: {click: async () => {
        if (confirm(`Stop syncing ${p.local}? Its files stay where they are.`)) await run(`/api/pairs/${p.id}/remove`);
      }}}, "Remove this folder pair")));
  const d = h("details", {class: "edit-panel"}, h("summary", {text: "Settings"}), f);
  d.addEventListener("toggle", () => {
    if (!d.open) return;
    const cur = (state.pairs.find((x) => x.id === p.id) || {}).settings || {};
    f.user.value = cur.user || "";
    f.interval.value = cur.interval;
    f.mode.value = cur.mode || "pull";
    f.delete.checked = !!cur.delete;
    f.excludes.value = (cur.excludes || []).join("\n");
  });
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {user: f.user.value, interval: f.interval.value, mode: f.mode.value, delete: f.delete.checked,
      excludes: f.excludes.value};
    if (f.password.value) body.password = f.password.value;
    if (await run(`/api/pairs/${p.id}/edit`, body)) { f.password.value = ""; d.open = false; say("Saved.", false); }
  });
  return d;
}

function renderPair(p) {
  let card = cards.get(p.id);
  if (!card) {
    card = makeCard(p);
    cards.set(p.id, card);
  }
  const {root, parts} = card;
  root.dataset.state = p.state;
  const name = p.local.split(/[\\/]/).filter(Boolean).pop() || p.local;
  parts.title.textContent = name;
  parts.title.title = p.local;
  parts.url.textContent = `${p.local}  ←  ${p.url}`;
  parts.mode.textContent = p.mode === "sync" ? "two-way" : "from the server";
  parts.badge.textContent = STATE_WORDS[p.state] || p.state;
  parts.badge.className = `badge state state-${p.state}`;
  parts.result.textContent = p.last_result;
  parts.checked.textContent = p.words;  // the app's one sentence for this state, with what helps
  parts.pause.textContent = p.pair_paused ? "Resume" : "Pause";
  parts.pause.dataset.paused = p.pair_paused ? "1" : "0";
  update(parts.counts, p.count_words, () => parts.counts.replaceChildren(...p.count_words.map((w) => h("span", {}, w))));
  if (p.progress) {
    const g = p.progress;
    const eta = g.eta ? `, about ${duration(g.eta)} left` : "";
    parts.progress.replaceChildren(
      h("progress", {max: String(Math.max(g.bytes_total, 1)), value: String(g.bytes_done)}),
      h("p", {class: "muted"}, (g.phase === "checking" ? "Checking the files already here: " : "") +
        `${g.files_done} of ${g.files_total} files, ${size(g.bytes_done)} of ${size(g.bytes_total)}` +
        (g.speed ? ` at ${size(g.speed)}/s` : "") + eta + (g.current.length ? ` · ${g.current.join(", ")}` : "")));
  } else parts.progress.replaceChildren();
  update(parts.attention, [p.fatal, p.conflicts, p.errors, p.skipped, p.uploading], () => renderAttention(p, parts.attention));
  update(parts.recentList, p.recent, () => parts.recentList.replaceChildren(...(p.recent.length ? p.recent.map((r) =>
    h("li", {}, h("time", {}, clock(r.time)), h("span", {}, r.what), h("span", {class: "item-path"}, r.path),
      r.note ? h("span", {class: "muted"}, `(${r.note})`) : null)) : [h("li", {class: "muted"}, "Nothing yet.")])));
  return root;
}

// The files a deletion guard held: nothing was deleted; this is what would have gone, and where.
function heldFiles(p, e) {
  const files = e.files;
  if (!files || !files.length) return null;
  const here = files.filter((f) => f.where === "here").length;
  const parts = [];
  if (here) parts.push(`${here} on this PC`);
  if (files.length - here) parts.push(`${files.length - here} on the server`);
  const decide = (choice) => run(`/api/pairs/${p.id}/deletions`, {choice});
  const buttons = [];
  if (e.can_accept) buttons.push(h("button", {type: "button", class: "small danger held-accept", on: {click: () => {
    if (confirm(`Delete these ${files.length} files (${parts.join(", ")})? Deleted files go to the trash here, and to the server's versions there.`))
      decide("accept");
  }}}, "This is right, go ahead"));
  if (e.can_restore) buttons.push(h("button", {type: "button", class: "small held-restore", on: {click: () => decide("restore")}},
    "Restore them"));
  return h("div", {},
    h("details", {class: "held"}, h("summary", {}, `Show the files that would have been deleted (${parts.join(", ")})`),
      h("ul", {class: "plain"}, files.map((f) => h("li", {}, h("span", {class: "item-path"}, f.path),
        h("span", {class: "muted"}, f.where === "here" ? " (on this PC)" : " (on the server)"))))),
    buttons.length ? h("div", {class: "buttons"}, buttons) : null);
}

function renderAttention(p, box) {
  const items = [];
  if (p.fatal) items.push(h("li", {class: "fatal"}, h("span", {class: "item-path"}, "Syncing stopped: "), p.fatal.error,
    h("div", {class: "fix"}, `What to do: ${p.fatal.fix}`)));
  items.push(...conflictItems(p, () => renderAttention(state.pairs.find((x) => x.id === p.id) || p, box)));
  for (const e of p.errors) items.push(h("li", {class: "error"},
    h("span", {class: "item-path"}, e.path === "(deletions)" ? "Deletions held back" : e.path), `: ${e.error}`,
    h("div", {class: "fix"}, `What to do: ${e.fix}`), heldFiles(p, e)));
  for (const s of p.skipped) items.push(h("li", {class: "skipped"}, h("span", {class: "item-path"}, s.path),
    h("span", {class: "muted"}, ` is not synced: ${s.reason}`)));
  const count = (p.fatal ? 1 : 0) + p.conflicts.length + p.errors.length + p.skipped.length;
  box.hidden = items.length === 0;
  box.replaceChildren(...(items.length ? [h("h3", {}, count ? `Needs attention (${count})` : "Waiting for the server"),
    h("ul", {class: "plain"}, items)] : []));
}

async function loadTrash(pairId, list) {
  list.replaceChildren(h("li", {class: "muted"}, "Loading…"));
  try {
    const data = await api(`/api/pairs/${pairId}/trash`);
    list.replaceChildren(...(data.items.length ? data.items.map((it) => h("li", {"data-item": it.id},
      h("time", {}, when(it.trashed_at)), h("span", {class: "item-path"}, it.path), h("span", {class: "muted"}, size(it.size)),
      h("button", {type: "button", class: "small restore", on: {click: async () => {
        if (await run(`/api/pairs/${pairId}/restore`, {item: it.id})) loadTrash(pairId, list);
      }}}, "Restore"))) : [h("li", {class: "muted"}, "The trash is empty.")]));
  } catch (e) {
    list.replaceChildren(h("li", {class: "muted"}, e.message));
  }
}

function render(s) {
  state = s;
  lostAt = null;
  document.body.classList.remove("lost");
  for (const card of cards.values()) card.root.removeAttribute("aria-disabled");
  csrf = s.csrf || csrf;
  renderOverall(s);
  const box = $("pairs");
  const wanted = s.pairs.map(renderPair);
  for (const [id, card] of cards) if (!s.pairs.some((p) => p.id === id)) { card.root.remove(); cards.delete(id); }
  wanted.forEach((el, i) => { if (box.children[i] !== el) box.insertBefore(el, box.children[i] || null); });
}

// --- adding a pair ------------------------------------------------------------------

function formBody(form) {
  return {url: form.url.value, user: form.user.value, password: form.password.value, local: form.local.value,
    mode: form.mode.value, interval: form.interval.value, delete: form.delete.checked, excludes: form.excludes.value};
}

async function addPair(save) {
  const form = $("add-form");
  $("add-result").textContent = save ? "Checking, then saving…" : "Checking…";
  $("add-checks").replaceChildren();
  try {
    const data = await api("/api/pairs", {...formBody(form), save});
    $("add-checks").replaceChildren(...data.checks.map((c) => h("li", {"data-ok": c.ok ? "1" : "0"},
      h("span", {class: c.ok ? "pass" : c.required ? "fail" : "warnmark"}, c.ok ? "PASS " : c.required ? "FAIL " : "WARN "),
      `${c.name}: ${c.detail}`)));
    if (data.saved) {
      $("add-result").textContent = "Saved. The first sync starts now.";
      form.reset();
      $("add-panel").hidden = true;
      say(`Added ${data.pair.local} ← ${data.pair.url}.`, false);
    } else {
      const failed = data.checks.filter((c) => c.required && !c.ok).length;
      $("add-result").textContent = failed ? "Not saved: fix the failed checks above and try again." :
        (save ? "" : "The checks passed. Check and save to add it.");
    }
  } catch (e) {
    $("add-result").textContent = `Not saved: ${e.message}`;
  }
}

// --- wiring ---------------------------------------------------------------------------

$("add-open").addEventListener("click", () => { $("add-panel").hidden = false; $("add-url").focus(); });
$("add-cancel").addEventListener("click", () => { $("add-panel").hidden = true; });
$("add-check").addEventListener("click", () => addPair(false));
$("add-form").addEventListener("submit", (ev) => { ev.preventDefault(); addPair(true); });
$("sync-all").addEventListener("click", () => run("/api/sync-now"));
$("pause-all").addEventListener("click", () => run($("pause-all").dataset.paused === "1" ? "/api/resume" : "/api/pause"));
$("quit").addEventListener("click", async () => {
  if (confirm("Quit davsync app? Nothing is synced until it runs again.")) await run("/api/quit");
});

// --- contact with the app -----------------------------------------------------------
// The page must never keep showing the last state of an app that is gone: when the event stream
// dies (the app said goodbye, the connection broke, or nothing came for too long), it says so,
// with the time, and greys out what it shows.

const SILENCE = 40000;  // ms without any event (the app sends one at least every 15 s)
let lostAt = null;
let heard = 0;

function lost() {
  if (lostAt === null) lostAt = Date.now() / 1000;
  const label = `Lost contact with davsync app at ${clock(lostAt)}`;
  $("overall").className = "overall state-lost";
  $("overall").dataset.state = "lost";
  $("overall-label").textContent = label;
  $("overall-detail").textContent = "It is not running (or not answering), so nothing is synced and what you see " +
    "below may be out of date. Start davsync app again; this page reconnects by itself.";
  document.title = `davsync: ${label}`;
  document.body.classList.add("lost");
  for (const card of cards.values()) card.root.setAttribute("aria-disabled", "true");
  $("lost").hidden = true;
}

let source = null;
function connect() {
  if (source) source.close();
  const es = source = new EventSource("/api/events");
  es.onmessage = (ev) => { heard = Date.now(); $("lost").hidden = true; render(JSON.parse(ev.data)); };
  es.addEventListener("ping", () => { heard = Date.now(); });
  es.addEventListener("bye", () => { es.close(); lost(); });
  es.onerror = () => { lost(); };
}
setInterval(() => {
  if (lostAt === null && heard && Date.now() - heard > SILENCE) lost();
  if (lostAt !== null && source && source.readyState === EventSource.CLOSED) connect();  // try again
}, 5000);

api("/api/state").then(render).catch((e) => say(e.message, true));
connect();
