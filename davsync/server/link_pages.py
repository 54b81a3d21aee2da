"""The few HTML pages a share link shows a browser: login, gone, not found, upload-only."""

from __future__ import annotations

from html import escape

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
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    ).encode()


def login_page(label: str, action: str, error: str | None = None) -> bytes:
    what = f"“{escape(label)}”" if label else "this shared folder"
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
        "<p>The shared folder is no longer available through this link. "
        "Ask the person who sent it for a new one.</p>",
    )


def not_found_page() -> bytes:
    return page(
        "No such link",
        "<p>This link does not exist or has been withdrawn. Check that it was copied completely, "
        "or ask the person who sent it for a new one.</p>",
    )


def drop_page(label: str) -> bytes:
    what = f"“{escape(label)}”" if label else "this folder"
    return page(
        "Upload only",
        f"<p>You can add files to {what}, but not see what is in it.</p>"
        "<p>Choose files to upload; a file whose name is taken is saved as “name (2)”.</p>"
        '<input id=files type=file multiple> <button id=send type=button>Upload</button>'
        '<p id=status class=muted></p>'
        "<script>"
        "document.getElementById('send').onclick=async()=>{"
        "const s=document.getElementById('status');"
        "for(const f of document.getElementById('files').files){"
        "s.textContent='Uploading '+f.name+'…';"
        "const r=await fetch(encodeURIComponent(f.name),{method:'PUT',body:f,credentials:'same-origin'});"
        "s.textContent=r.ok?'Uploaded '+f.name:'Upload of '+f.name+' failed: HTTP '+r.status;}};"
        "</script>",
    )
