// davsync dashboard: the Add form's helpers. Servers found on this network; the server's folders
// (browse, pick one, untick subfolders to skip: they become exclude lines, the existing mechanism);
// the local folder from the system's dialog, or typed and checked as you go.
// Uses h(), api(), $ and say() from app.js.
"use strict";

let lanTimer = null;
const picker = {base: "", folder: "", folders: []};
const SKIP_MARK = /^\/.*\/$/;  // the lines the picker writes (anchored folders); others are the person's own

async function lookAround() {
  if ($("add-panel").hidden) { watchLan(false); return; }
  try {
    const d = await api("/api/discover");
    const list = $("lan-list");
    if (d.problem) { list.replaceChildren(h("li", {class: "muted"}, d.problem)); return; }
    list.replaceChildren(...(d.servers.length ? d.servers.map((s) => h("li", {"data-url": s.url},
      h("span", {class: "item-path"}, s.name), h("span", {class: "muted"}, ` ${s.url}${s.host ? " (" + s.host + ")" : ""} `),
      h("button", {type: "button", class: "small use-server", on: {click: () => {
        $("add-url").value = s.url;
        $("add-user").focus();
      }}}, "Use this server"))) : [h("li", {class: "muted"}, "None found yet: type the server's address below.")]));
  } catch (e) {
    $("lan-list").replaceChildren(h("li", {class: "muted"}, e.message));
  }
}

function watchLan(on) {
  clearInterval(lanTimer);
  lanTimer = null;
  if (on) { lookAround(); lanTimer = setInterval(lookAround, 3000); }
}

function loginFields() {
  const f = $("add-form");
  return {url: f.url.value, user: f.user.value, password: f.password.value};
}

async function browseServer(folder) {
  $("remote-picker").hidden = false;
  $("remote-list").replaceChildren(h("li", {class: "muted"}, "Loading…"));
  try {
    const d = await api("/api/remote-folders", {...loginFields(), path: folder});
    Object.assign(picker, {base: d.base, folder: d.folder, folders: d.folders});
  } catch (e) {
    $("remote-list").replaceChildren(h("li", {class: "muted"}, e.message));
    return;
  }
  const segs = picker.folder ? picker.folder.split("/") : [];
  $("remote-crumbs").replaceChildren(
    h("button", {type: "button", class: "link crumb", on: {click: () => browseServer("")}}, "Top"),
    ...segs.map((s, i) => [" / ", h("button", {type: "button", class: "link crumb",
      on: {click: () => browseServer(segs.slice(0, i + 1).join("/"))}}, s)]).flat());
  $("remote-hint").textContent = picker.folders.length
    ? "Untick a folder to skip it: it is not synced, and what is already on this PC stays."
    : "No folders inside this one.";
  $("remote-list").replaceChildren(...picker.folders.map((f) => {
    const box = h("input", {type: "checkbox", class: "sync-sub", checked: true, "data-skip": f.skip, id: `sub-${f.path}`});
    return h("li", {"data-path": f.path},
      h("label", {class: "check", for: `sub-${f.path}`}, box, f.name),
      h("button", {type: "button", class: "small open-sub", on: {click: () => browseServer(f.path)}}, `Open ${f.name}`));
  }));
}

function useRemoteFolder() {
  const enc = picker.folder ? picker.folder.split("/").map(encodeURIComponent).join("/") + "/" : "";
  $("add-url").value = picker.base + enc;
  const skips = [...document.querySelectorAll("#remote-list .sync-sub")].filter((b) => !b.checked).map((b) => b.dataset.skip);
  const own = $("add-excludes").value.split("\n").filter((l) => l.trim() && !SKIP_MARK.test(l.trim()));
  $("add-excludes").value = [...own, ...skips].join("\n");
  $("remote-picker").hidden = true;
  say(skips.length ? `Syncing ${picker.folder || "the whole share"}, skipping ${skips.length} folder(s).`
    : `Syncing ${picker.folder || "the whole share"}.`, false);
}

async function checkLocal() {
  const path = $("add-local").value;
  if (!path.trim()) { $("add-local-check").textContent = ""; return; }
  try {
    const d = await api(`/api/check-local?path=${encodeURIComponent(path)}`);
    $("add-local-check").textContent = d.detail;
    $("add-local-check").className = d.ok ? "muted" : "fail";
    $("add-local").setAttribute("aria-invalid", d.ok ? "false" : "true");
  } catch (e) {
    $("add-local-check").textContent = e.message;
  }
}

async function pickLocal() {
  $("add-local-check").textContent = "Choose the folder in the window that opened…";
  try {
    const d = await api("/api/pick-folder", {start: $("add-local").value});
    if (!d.available) {
      $("add-local-check").textContent = "No folder dialog on this computer: type the folder's full path.";
      $("add-local").focus();
      return;
    }
    if (d.path) { $("add-local").value = d.path; checkLocal(); } else $("add-local-check").textContent = "";
  } catch (e) {
    $("add-local-check").textContent = e.message;
  }
}

$("add-open").addEventListener("click", () => watchLan(true));
$("add-cancel").addEventListener("click", () => watchLan(false));
$("add-browse").addEventListener("click", () => browseServer(""));
$("remote-use").addEventListener("click", useRemoteFolder);
$("remote-close").addEventListener("click", () => { $("remote-picker").hidden = true; });
$("add-pick-local").addEventListener("click", pickLocal);
$("add-local").addEventListener("change", checkLocal);
