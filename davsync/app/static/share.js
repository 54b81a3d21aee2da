// davsync dashboard: a pair's "Share and versions" panel. Browses the server's folder (as the
// server lists it), makes, lists and revokes share links (with a QR code), and lists and restores
// a file's earlier versions. Uses h(), api(), run() and say() from app.js; no framework.
"use strict";

const MODES = [
  ["read-only", "Read-only: see and download"],
  ["read-write", "Read-write: also upload, change and delete"],
  ["drop", "Drop-only: upload, but see nothing"]];
const FILE_MODES = [
  ["read-only", "Read-only: see and download"],
  ["read-write", "Read-write: also replace it with a new version"]];
const EXPIRES = [["1d", "1 day"], ["7d", "7 days"], ["30d", "30 days"], ["never", "Never"]];
const MODE_WORDS = {"read-only": "read-only", "read-write": "read-write", "drop": "drop-only"};

function makeSharePanel(p) {
  const ui = {
    crumbs: h("nav", {class: "crumbs", "aria-label": "Folder on the server"}),
    list: h("ul", {class: "plain browse"}),
    detail: h("div", {class: "share-detail"}),
    links: h("ul", {class: "plain links"}),
    folder: "",
  };
  const panel = h("details", {class: "share-panel"}, h("summary", {text: "Share and versions"}),
    h("p", {class: "muted"}, "Share a folder or a file of this pair by link (for a phone or a friend), or bring back an earlier version of a file. " +
      "This is what the server holds."),
    ui.crumbs, ui.list, ui.detail,
    h("h3", {}, "Your share links"), ui.links);
  panel.addEventListener("toggle", () => { if (panel.open) { browse(p, ui, ui.folder); loadLinks(p, ui); } });
  return panel;
}

async function browse(p, ui, folder) {
  ui.folder = folder;
  const segs = folder ? folder.split("/") : [];
  ui.crumbs.replaceChildren(
    h("button", {type: "button", class: "link crumb", on: {click: () => browse(p, ui, "")}}, "Top"),
    ...segs.map((s, i) => [" / ", h("button", {type: "button", class: "link crumb",
      on: {click: () => browse(p, ui, segs.slice(0, i + 1).join("/"))}}, s)]).flat(),
    " ", h("button", {type: "button", class: "small share-here", on: {click: () => shareForm(p, ui, folder)}},
      folder ? "Share this folder" : "Share the whole folder"));
  ui.list.replaceChildren(h("li", {class: "muted"}, "Loading…"));
  try {
    const data = await api(`/api/pairs/${p.id}/browse?path=${encodeURIComponent(folder)}`);
    ui.list.replaceChildren(...(data.entries.length ? data.entries.map((e) => h("li", {"data-path": e.path},
      e.is_dir
        ? h("button", {type: "button", class: "link open-folder", on: {click: () => browse(p, ui, e.path)}}, `${e.name}/`)
        : h("span", {class: "item-path"}, e.name),
      h("span", {class: "muted"}, e.is_dir ? "folder" : `${size(e.size)}, ${when(e.mtime)}`),
      h("button", {type: "button", class: "small share", "aria-label": `Share ${e.name} by link`,
        on: {click: () => shareForm(p, ui, e.path, !e.is_dir)}}, "Share"),
      e.is_dir ? null
        : h("button", {type: "button", class: "small show-versions", on: {click: () => showVersions(p, ui, e.path)}},
          "Earlier versions"))) : [h("li", {class: "muted"}, "This folder is empty.")]));
  } catch (e) {
    ui.list.replaceChildren(h("li", {class: "muted"}, e.message));
  }
}

// What is shared, in words: "the file /a/b.txt", "/a", "the whole folder".
const sharedWhat = (path, isFile) => isFile ? `the file /${path}` : path ? `/${path}` : "the whole folder";

function shareForm(p, ui, folder, isFile = false) {
  const uid = `${p.id}-share`;
  const what = sharedWhat(folder, isFile);
  const modes = isFile ? FILE_MODES : MODES; // a drop link collects uploads into a folder
  const f = h("form", {class: "share-form"},
    h("h3", {}, `Share ${what}`),
    h("div", {class: "row"},
      h("label", {}, "Who can do what", h("select", {name: "mode", id: `${uid}-mode`},
        modes.map(([v, t]) => h("option", {value: v}, t)))),
      h("label", {}, "Expires after", h("select", {name: "expires", id: `${uid}-expires`},
        EXPIRES.map(([v, t]) => h("option", {value: v, selected: v === "7d"}, t))))),
    h("div", {class: "row"},
      h("label", {}, "Password (optional)", h("input", {name: "password", type: "password", autocomplete: "new-password"})),
      h("label", {}, "Note for yourself (optional)", h("input", {name: "label", placeholder: "e.g. photos for Grandma"}))),
    h("div", {class: "buttons"},
      h("button", {type: "submit", class: "primary small make-link"}, "Make the link"),
      h("button", {type: "button", class: "small", on: {click: () => ui.detail.replaceChildren()}}, "Cancel")));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = await run(`/api/pairs/${p.id}/share`, {path: folder, kind: isFile ? "file" : "folder",
      mode: f.mode.value, expires: f.expires.value, password: f.password.value, label: f.label.value});
    if (!data) return;
    const url = h("input", {readonly: true, value: data.url, class: "link-url", "aria-label": "The share link"});
    ui.detail.replaceChildren(h("div", {class: "made-link"},
      h("img", {src: data.qr, class: "qr", alt: `QR code of the share link to ${what}`}),
      h("div", {},
        h("p", {}, `A ${MODE_WORDS[data.link.mode]} link to ${what}, ` +
          (data.link.expires ? `until ${when(data.link.expires)}.` : "with no expiry.")),
        url,
        h("div", {class: "buttons"},
          h("button", {type: "button", class: "small copy-link", on: {click: async () => {
            url.select();
            try { await navigator.clipboard.writeText(data.url); say("Copied the link.", false); }
            catch (e) { say("Select the link and copy it (Ctrl+C).", false); }
          }}}, "Copy the link"),
          h("button", {type: "button", class: "small", on: {click: () => ui.detail.replaceChildren()}}, "Done")),
        h("p", {class: "muted"}, "The link is shown only now (the server keeps only a fingerprint of it)."))));
    loadLinks(p, ui);
  });
  ui.detail.replaceChildren(f);
  f.mode.focus();
}

async function loadLinks(p, ui) {
  try {
    const data = await api(`/api/pairs/${p.id}/links`);
    ui.links.replaceChildren(...(data.links.length ? data.links.map((l) => h("li", {"data-link": l.id, "data-state": l.state},
      h("span", {class: "item-path"}, l.kind === "file" ? `/${l.path} (file)` : `/${l.path}`),
      h("span", {}, `${MODE_WORDS[l.mode] || l.mode}, ` + (l.state === "active"
        ? (l.expires ? `until ${when(l.expires)}` : "no expiry") : l.state) + (l.has_password ? ", with password" : "")),
      l.label ? h("span", {class: "muted"}, l.label) : null,
      l.state === "active" ? h("button", {type: "button", class: "small danger revoke", on: {click: async () => {
        if (confirm(`Revoke the link to /${l.path}? Anyone using it loses access at once.`)
            && await run(`/api/pairs/${p.id}/revoke-link`, {id: l.id})) loadLinks(p, ui);
      }}}, "Revoke") : null)) : [h("li", {class: "muted"}, "No share links yet.")]));
  } catch (e) {
    ui.links.replaceChildren(h("li", {class: "muted"}, e.message));
  }
}

async function showVersions(p, ui, path) {
  const list = h("ul", {class: "plain version-list"}, h("li", {class: "muted"}, "Loading…"));
  ui.detail.replaceChildren(h("h3", {}, `Earlier versions of ${path}`), list,
    h("div", {class: "buttons"}, h("button", {type: "button", class: "small", on: {click: () => ui.detail.replaceChildren()}}, "Close")));
  try {
    const data = await api(`/api/pairs/${p.id}/versions?path=${encodeURIComponent(path)}`);
    list.replaceChildren(...(data.versions.length ? data.versions.map((v) => h("li", {"data-version": v.id},
      h("time", {}, when(Date.parse(v.time) / 1000)), h("span", {}, v.size),
      h("span", {class: "muted"}, `replaced by ${v.user}`),
      h("button", {type: "button", class: "small restore-version", on: {click: async () => {
        if (!confirm(`Put back the version of ${path} from ${when(Date.parse(v.time) / 1000)}? What is there now is kept as a version.`)) return;
        if (await run(`/api/pairs/${p.id}/restore-version`, {path, id: v.id})) showVersions(p, ui, path);
      }}}, "Restore this version"))) : [h("li", {class: "muted"}, "The server keeps no earlier versions of this file.")]));
  } catch (e) {
    list.replaceChildren(h("li", {class: "muted"}, e.message));
  }
}
