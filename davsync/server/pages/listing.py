"""The folder page: server-rendered rows (name, size, ISO time) that the page's script sorts,
filters and shows in local time; write controls only for a session that may write."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote

from wsgidav.dav_error import DAVError

from ...units import human_size
from ..names import TEMP_PREFIX

ASSET_DIR = f"{TEMP_PREFIX}pages"  # a reserved name: no file in the share can be called this
ARCHIVES = frozenset({"application/zip", "application/x-tar", "application/gzip", "application/x-7z-compressed",
                      "application/x-bzip2", "application/x-xz", "application/vnd.rar"})  # fmt: skip


PREVIEWED = frozenset({"image", "audio", "video", "pdf", "text"})  # kinds the viewer page shows (viewer.py)


DELETED_BOX = (
    '<details class="deleted" id="deleted"><summary>Recently deleted in this folder</summary>'
    '<p class="muted">The server keeps deleted and overwritten files for a while; put one back here.</p>'
    '<ul id="deleted-list"></ul></details>\n'
)


@dataclass
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: float


@dataclass
class FolderView:
    """What the page needs to know besides the entries."""

    base: str  # the URL path of the share's (or link's) root, without a trailing slash
    path: str  # the folder's path below it, '/' or '/a/b/'
    root_label: str
    can_write: bool
    dav_url: str  # the folder's full WebDAV address
    windows_path: str
    login_hint: str
    thumbs: bool = False  # image rows show a thumbnail (thumbs.py; only with Pillow installed)
    show_deleted: bool = False  # the "Recently deleted" box (deleted.py)
    can_share: bool = False  # the "Share this folder" box, and a Share button by each file (sharing.py)
    single_file: bool = False  # a share link to one file: its page has no folder around it (link_file.py)
    log_in: bool = True  # the steps say "log in" (not for a share link without a password)


def kind(name: str, is_dir: bool) -> str:
    """The icon class of a name: by its MIME type, as a file manager would show it."""
    if is_dir:
        return "folder"
    ctype = mimetypes.guess_type(name)[0] or ""
    major = ctype.split("/")[0]
    if major in ("image", "audio", "video"):
        return major
    if ctype == "application/pdf":
        return "pdf"
    if major == "text" or ctype in ("application/json", "application/xml"):
        return "text"
    return "archive" if ctype in ARCHIVES else "file"


def thumbnail_kind(name: str) -> bool:
    """Images a thumbnail is made of: raster formats (an SVG is a document, not decoded here)."""
    ctype = mimetypes.guess_type(name)[0] or ""
    return ctype.startswith("image/") and ctype != "image/svg+xml"


def live_members(folder: Any) -> Iterator[tuple[str, Any]]:
    """(name, resource) for the folder's members as the provider lists them (hidden names and
    symlinks left out); one that goes away between listing and reading is left out too."""
    for name in folder.get_member_names():
        try:
            res = folder.get_member(name)
        except DAVError:
            continue
        if res is not None:
            yield name, res


def entries(folder: Any) -> list[Entry]:
    out = [
        Entry(name, bool(res.is_collection), 0 if res.is_collection else res.get_content_length() or 0,
              res.get_last_modified() or 0.0)
        for name, res in live_members(folder)
    ]  # fmt: skip
    out.sort(key=lambda e: (not e.is_dir, e.name.casefold()))
    return out


@cache
def template(name: str) -> Template:
    """A page template from static/ (string.Template: $names are filled in, already escaped)."""
    return Template(resources.files(__package__).joinpath("static").joinpath(name).read_text("utf-8"))


def head(title: str, base: str) -> str:
    """The pages' common <head> (viewport, no referrer, no indexing, the stylesheet)."""
    return template("head.html").substitute(title=escape(title), assets=escape(base + "/" + ASSET_DIR, quote=True))


def href(base: str, path: str) -> str:
    return escape(quote(base + path, safe="/!$&'()*+,;=:@-._~"), quote=True)


def _iso(mtime: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))


def _row(view: FolderView, e: Entry) -> str:
    path = view.path + e.name + ("/" if e.is_dir else "")
    icon = kind(e.name, e.is_dir)
    link = href(view.base, path) + ("?view" if icon in PREVIEWED else "")
    picture = f'<svg class="icon {icon}" aria-hidden="true"><use href="#i-{icon}"/></svg>'
    if view.thumbs and not e.is_dir and thumbnail_kind(e.name):
        picture = (
            f'<img class="thumb" src="{href(view.base, path)}?thumb" alt="" loading="lazy" width="40" height="40">'
        )
    size = "" if e.is_dir else human_size(e.size)
    acts = ""
    if view.can_write:
        label = escape(e.name, quote=True)
        share = ""
        if view.can_share and not e.is_dir:  # (a folder is shared from its own page)
            share = f'<button type="button" class="share" aria-label="Share {label} by link">Share</button>'
        acts = (f'<td class="acts">{share}'
                f'<button type="button" class="rename" aria-label="Rename {label}">Rename</button>'
                f'<button type="button" class="delete" aria-label="Delete {label}">Delete</button></td>')  # fmt: skip
    return (
        f'<tr data-name="{escape(e.name, quote=True)}" data-size="{-1 if e.is_dir else e.size}" '
        f'data-mtime="{int(e.mtime)}" data-dir="{int(e.is_dir)}" data-href="{href(view.base, path)}">'
        f'<td class="name"><a href="{link}">{picture}{escape(e.name)}</a></td>'
        f'<td class="size">{size}</td><td class="date"><time datetime="{_iso(e.mtime)}">'
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(e.mtime))}</time></td>{acts}</tr>\n"
    )


def crumbs(view: FolderView) -> str:
    parts = [p for p in view.path.split("/") if p]
    items = [(view.root_label, "/")]
    for i, part in enumerate(parts):
        items.append((part, "/" + "/".join(parts[: i + 1]) + "/"))
    out = []
    for i, (label, path) in enumerate(items):
        if i == len(items) - 1:
            out.append(f'<li><span aria-current="page">{escape(label)}</span></li>')
        else:
            out.append(f'<li><a href="{href(view.base, path)}">{escape(label)}</a></li>')
    return "".join(out)


def render(view: FolderView, items: list[Entry]) -> bytes:
    heading = [p for p in view.path.split("/") if p][-1:] or [view.root_label]
    tools = upload = act_head = ""
    if view.can_write:
        tools = ('<button type="button" id="mkdir">New folder</button>'
                 '<label class="button" for="files">Upload files</label>'
                 '<input id="files" type="file" multiple class="sr">'
                 '<label class="button folder-upload" for="folder">Upload a folder</label>'
                 '<input id="folder" type="file" webkitdirectory multiple class="sr">')  # fmt: skip
        upload = (
            '<div id="dropzone" class="dropzone">Drop files here to upload them to this folder.</div>\n'
            '<ul id="uploads" aria-live="polite"></ul>\n<p id="status" role="status"></p>\n'
            '<p class="muted" id="undo-note">Deleted and overwritten files are kept in the server\'s versions '
            "for a while, so a mistake can be undone.</p>\n"
        )
        act_head = '<th scope="col" class="acts"><span class="sr">Actions</span></th>'
    return (
        template("folder.html")
        .substitute(
            head=head(f"{heading[0]} – davsync", view.base),
            heading=escape(heading[0]),
            assets=escape(view.base + "/" + ASSET_DIR, quote=True),
            can_write="1" if view.can_write else "0",
            crumbs=crumbs(view),
            write_tools=tools,
            upload_area=upload,
            act_head=act_head,
            rows="".join(_row(view, e) for e in items),
            deleted_box=DELETED_BOX if view.show_deleted else "",
            share_box=template("share.html").template if view.can_share else "",
            empty_hidden="" if not items else " hidden",
            empty_text="This folder is empty." if not items else "Nothing here matches the search.",
            dav_url=escape(view.dav_url),
            windows_path=escape(view.windows_path),
            login_hint=escape(view.login_hint),
            explorer_login=("; tick “Connect using different credentials”, then Finish and log in" if view.log_in
                            else ", then Finish"),  # fmt: skip
            log_in=" and log in" if view.log_in else "",
        )
        .encode()
    )
