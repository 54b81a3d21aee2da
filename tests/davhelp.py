"""Small helpers for talking WebDAV in tests (independent of davsync's own client)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lxml import etree

PROPFIND_MD5 = (
    '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
    "<d:prop><d:resourcetype/><d:getcontentlength/><d:getetag/><oc:checksums/></d:prop></d:propfind>"
)

WEIRD_NAMES = ["with space.txt", "hash#tag.txt", "100%.txt", "what?.txt", "naïve café.txt", "日本語.txt", "empty"]


def parse_multistatus(body: bytes) -> dict[str, dict[str, str | None]]:
    """href path (decoded) -> {clark name: text} for 200 propstats."""
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    out: dict[str, dict[str, str | None]] = {}
    for resp in root.iter("{DAV:}response"):
        href = unquote(urlsplit(resp.findtext("{DAV:}href") or "").path)
        props: dict[str, str | None] = {}
        for ps in resp.iter("{DAV:}propstat"):
            if " 200 " not in (ps.findtext("{DAV:}status") or ""):
                continue
            for prop in ps.find("{DAV:}prop"):
                if prop.tag == "{http://owncloud.org/ns}checksums":
                    props[prop.tag] = prop.findtext("{http://owncloud.org/ns}checksum")
                elif prop.tag == "{DAV:}resourcetype":
                    props[prop.tag] = "collection" if prop.find("{DAV:}collection") is not None else ""
                else:
                    props[prop.tag] = prop.text
        out[href] = props
    return out


def checksums(share, path: str = "/", user: str = "alice") -> dict[str, str]:
    """href -> 'MD5:...' for every file in one folder (Depth 1)."""
    r = share.request("PROPFIND", path, user=user, data=PROPFIND_MD5, headers={"Depth": "1"})
    assert r.status_code == 207, r.text
    return {
        href: props["{http://owncloud.org/ns}checksums"]
        for href, props in parse_multistatus(r.content).items()
        if props.get("{DAV:}resourcetype") != "collection"
    }


def md5sum_tool(files: list[Path]) -> dict[str, str]:
    """Ask coreutils' md5sum, so the expected values do not come from our own code."""
    out = subprocess.run(["md5sum", "-z", "--", *map(str, files)], capture_output=True, check=True).stdout
    result = {}
    for rec in out.split(b"\0"):
        if rec:
            digest, name = rec.split(b"  ", 1)
            result[name.decode()] = digest.decode()
    return result


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()
