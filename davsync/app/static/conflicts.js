// davsync dashboard: a pair's conflicts. Both versions' sizes and times, preview or open each,
// keep mine / theirs / both, sorted as chosen, and one choice for several selected at once.
// A choice that must reach the server shows "Uploading" until a check confirms it.
// Uses h(), run(), api(), size() and when() from app.js.
"use strict";

const conflictSort = new Map();  // pair id -> "name" | "newest" | "size"
const conflictPicked = new Map();  // pair id -> Set of the selected conflicts' local copies
const conflictShown = new Map();  // "pair id/conflict path" -> [file, label] of the open preview (kept across re-renders)

function sortedConflicts(p) {
  const by = conflictSort.get(p.id) || "name";
  const newest = (c) => Math.max((c.theirs || {}).mtime || 0, (c.mine || {}).mtime || 0);
  const biggest = (c) => Math.max((c.theirs || {}).size || 0, (c.mine || {}).size || 0);
  const key = {name: (a, b) => a.path.localeCompare(b.path), newest: (a, b) => newest(b) - newest(a),
    size: (a, b) => biggest(b) - biggest(a)}[by];
  return [...p.conflicts].sort(key);
}

function conflictItems(p, rerender) {
  const picked = conflictPicked.get(p.id) || new Set();
  conflictPicked.set(p.id, picked);
  for (const copy of [...picked]) if (!p.conflicts.some((c) => c.local_copy === copy)) picked.delete(copy);
  for (const key of [...conflictShown.keys()])
    if (key.startsWith(`${p.id}/`) && !p.conflicts.some((c) => key === `${p.id}/${c.path}`)) conflictShown.delete(key);
  const items = [];
  if (p.conflicts.length > 1) items.push(conflictToolbar(p, picked, rerender));
  for (const c of sortedConflicts(p)) items.push(conflictItem(p, c, picked, rerender));
  for (const u of p.uploading || []) items.push(h("li", {class: "uploading", "data-path": u.path},
    h("span", {class: "item-path"}, u.path), h("span", {class: "muted"}, ": uploading your version; the server has not confirmed it yet.")));
  return items;
}

function conflictToolbar(p, picked, rerender) {
  const all = h("input", {type: "checkbox", class: "pick-all", id: `${p.id}-pick-all`});
  all.checked = picked.size === p.conflicts.length;
  all.indeterminate = picked.size > 0 && !all.checked;
  all.addEventListener("change", () => {
    picked.clear();
    if (all.checked) for (const c of p.conflicts) picked.add(c.local_copy);
    rerender();
  });
  const sort = h("select", {class: "conflict-sort", id: `${p.id}-sort`},
    [["name", "Name"], ["newest", "Newest change first"], ["size", "Biggest first"]].map(([v, t]) =>
      h("option", {value: v, selected: (conflictSort.get(p.id) || "name") === v}, t)));
  sort.addEventListener("change", () => { conflictSort.set(p.id, sort.value); rerender(); });
  const bulk = (choice) => async () => {
    const copies = [...picked];
    if (choice === "theirs" && !confirm(`Keep the server's version of ${copies.length} files? Yours go to the trash.`)) return;
    if (await run(`/api/pairs/${p.id}/resolve-many`, {local_copies: copies, choice})) picked.clear();
  };
  const none = picked.size === 0;
  return h("li", {class: "conflict-tools"},
    h("label", {class: "check", for: `${p.id}-pick-all`}, all, `Select all ${p.conflicts.length} conflicts`),
    h("label", {for: `${p.id}-sort`}, "Sort by ", sort),
    h("div", {class: "buttons", role: "group", "aria-label": "For the selected conflicts"},
      h("span", {class: "muted"}, `${picked.size} selected:`),
      h("button", {type: "button", class: "small bulk-mine", disabled: none, on: {click: bulk("mine")}}, "Keep mine"),
      h("button", {type: "button", class: "small bulk-theirs", disabled: none, on: {click: bulk("theirs")}}, "Keep theirs"),
      h("button", {type: "button", class: "small bulk-both", disabled: none, on: {click: bulk("both")}}, "Keep both")));
}

function conflictItem(p, c, picked, rerender) {
  const copy = c.local_copy;
  const choose = (choice) => run(`/api/pairs/${p.id}/resolve`, {local_copy: copy, choice});
  const view = h("div", {class: "preview", hidden: true});
  const box = h("input", {type: "checkbox", class: "pick", "aria-label": `Select ${c.path}`});
  box.checked = picked.has(copy);
  box.addEventListener("change", () => { if (box.checked) picked.add(copy); else picked.delete(copy); rerender(); });
  const row = (label, v, rel, copyName) => [h("span", {class: "muted"}, label),
    h("span", {}, v ? `${size(v.size)}, modified ${when(v.mtime)}` + (copyName ? ` (as ${copyName})` : "") : "missing",
      v ? [" ", h("button", {type: "button", class: "link preview-open", on: {click: () => showPreview(p, rel, label, view, c.path)}}, "Preview"),
        " ", h("button", {type: "button", class: "link file-open", on: {click: () => run(`/api/pairs/${p.id}/open-file`, {path: rel})}}, "Open")] : [])];
  const shown = conflictShown.get(`${p.id}/${c.path}`);
  if (shown) showPreview(p, shown[0], shown[1], view, c.path);
  return h("li", {class: "conflict", "data-path": c.path, "data-copy": copy},
    h("div", {}, p.conflicts.length > 1 ? box : null, h("span", {class: "item-path"}, c.path),
      h("span", {class: "muted"}, `: ${c.reason || "changed on both sides"}. Which version do you keep?`)),
    h("div", {class: "versions"}, row("Theirs (server):", c.theirs, c.path), row("Mine (this PC):", c.mine, copy, copy)),
    view,
    h("div", {class: "buttons"},
      h("button", {type: "button", class: "small keep-mine", on: {click: () => choose("mine")}}, "Keep mine"),
      h("button", {type: "button", class: "small keep-theirs", on: {click: () => choose("theirs")}}, "Keep theirs"),
      h("button", {type: "button", class: "small keep-both", on: {click: () => choose("both")}}, "Keep both"),
      h("button", {type: "button", class: "small", on: {click: () => run(`/api/pairs/${p.id}/open`, {path: c.path})}}, "Open folder")));
}

async function showPreview(p, rel, label, view, conflictPath) {
  conflictShown.set(`${p.id}/${conflictPath}`, [rel, label]);
  view.hidden = false;
  view.replaceChildren(h("p", {class: "muted"}, "Loading…"));
  try {
    const d = await api(`/api/pairs/${p.id}/preview?path=${encodeURIComponent(rel)}`);
    const head = h("p", {class: "muted"}, `${label} ${rel}`);
    const close = h("button", {type: "button", class: "small", on: {click: () => {
      conflictShown.delete(`${p.id}/${conflictPath}`);
      view.hidden = true;
      view.replaceChildren();
    }}}, "Close preview");
    if (d.kind === "image") view.replaceChildren(head, h("img", {src: d.data, alt: `${label} ${rel}`}), close);
    else if (d.kind === "text") view.replaceChildren(head, h("pre", {tabindex: "0"}, d.text + (d.cut ? "\n…" : "")), close);
    else view.replaceChildren(head, h("p", {}, d.message), close);
  } catch (e) {
    view.replaceChildren(h("p", {class: "muted"}, e.message));
  }
}
