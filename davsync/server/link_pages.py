"""The few HTML pages a share link shows a browser: login, gone, not found, upload-only."""

from __future__ import annotations

from html import escape

from .pages.listing import ASSET_DIR, head

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}"
    "h1{font-size:1.4rem}input{font-size:1rem;padding:.4rem;margin:.3rem 0}"
    "button{font-size:1rem;padding:.4rem 1rem}.err{color:#b00}.muted{color:#666;font-size:.9rem}"
)


def page(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        '<meta name=referrer content=no-referrer><meta name=robots content="noindex,nofollow">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    ).encode()


def login_page(label: str, action: str, error: str | None = None, what: str = "folder") -> bytes:
    what = f"“{escape(label)}” (a shared {what})" if label else f"this shared {what}"
    err = f'<p class=err role=alert>{escape(error)}</p>' if error else ""
    return page(
        "Password required",
        f"<p>Enter the password you were given for {what}.</p>{err}"
        f'<form method=post action="{escape(action, quote=True)}">'
        '<label for=password>Password</label><br>'
        '<input id=password name=password type=password autocomplete=current-password autofocus required><br>'
        '<button type=submit id=login>Open</button></form>',
    )


def expired_page() -> bytes:
    return page(
        "This link has expired",
        "<p>What was shared is no longer available through this link. "
        "Ask the person who sent it for a new one.</p>",
    )


def not_found_page() -> bytes:
    return page(
        "No such link",
        "<p>This link does not exist or has been withdrawn. Check that it was copied completely, "
        "or ask the person who sent it for a new one.</p>",
    )


def drop_page(label: str, base: str) -> bytes:
    """The upload-only page: files, folders, drag and drop, a progress bar per file, big files in
    resumable parts (pages/static/upload.js); `base` is the link's URL path, for the assets."""
    what = f"“{escape(label)}”" if label else "this folder"
    assets = escape(base + "/" + ASSET_DIR, quote=True)
    return (
        head("Upload only – davsync", base)
        + '<body data-page="drop"><main>'
        "<h1>Upload only</h1>"
        f"<p>You can add files to {what}, but not see what is in it. A file whose name is taken is saved as "
        "“name (2)”; nothing already there is replaced.</p>"
        '<div class="toolbar"><label class="button" for="files">Choose files</label>'
        '<input id="files" type="file" multiple class="sr">'
        '<label class="button folder-upload" for="folder">Choose a folder</label>'
        '<input id="folder" type="file" webkitdirectory multiple class="sr"></div>'
        '<div id="dropzone" class="dropzone">Or drop files and folders here.</div>'
        '<ul id="uploads" aria-live="polite"></ul><p id="status" role="status"></p>'
        '<p class="muted">A big file that is cut off (a dropped connection, a phone going to sleep) '
        "goes on where it stopped when the connection is back, as long as this page stays open.</p>"
        f'</main><script src="{assets}/upload.js"></script></body></html>'
    ).encode()
