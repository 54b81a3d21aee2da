"""Untrusted names from the server -> safe relative paths for this machine.

Everything here is pure. A server is untrusted: its hrefs may point elsewhere, climb
with `..`, hide separators in percent-encoding, or name files this filesystem
cannot hold. Such entries are refused or skipped with a reason, never written.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urljoin, urlsplit

NameRules = Literal["posix", "windows", "macos"]

_WINDOWS_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?$", re.IGNORECASE)
_WINDOWS_BAD_CHARS = set('<>:"|?*\\') | {chr(c) for c in range(32)}
MAX_NAME_BYTES = 255  # ext4, APFS, and what Linux and macOS system calls accept
MAX_NAME_UTF16 = 255  # NTFS, exFAT: UTF-16 code units, so 255 CJK characters fit
STATE_DIR_NAME = ".davsync"
IGNORE_FILE_NAME = ".davsyncignore"
_OWN_NAMES = (STATE_DIR_NAME, IGNORE_FILE_NAME)
# 8.3 short names Windows may give .davsync and .davsyncignore (git refuses GIT~1 the same way).
_SHORT_ALIAS = re.compile(r"^davsyn~[0-9]+$", re.IGNORECASE)


class UnsafeHref(ValueError):
    """An href the client refuses to act on; the message says why."""


def default_rules() -> NameRules:
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "posix"


def effective_rules(requested: NameRules | None) -> NameRules:
    """The rules to enforce: on Windows always Windows' own, whatever was asked (`a:b` would
    otherwise write an alternate data stream of `a`, and `C:x` a path on drive C)."""
    if sys.platform == "win32":
        return "windows"
    return requested or default_rules()


def own_name(name: str) -> str | None:
    """Which of davsync's own root names (`.davsync`, `.davsyncignore`) `name` may stand for
    on some filesystem: in any letter case, with trailing dots or spaces (Windows drops
    them), or as an 8.3 short alias; None for any other name."""
    folded = nfc(name).rstrip(". ").casefold()
    for own in _OWN_NAMES:
        if folded == own:
            return own
    if _SHORT_ALIAS.match(folded):
        return STATE_DIR_NAME
    return None


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def href_to_relpath(href: str, folder_url: str, base_url: str) -> str:
    """Resolve an href from a listing of `folder_url` to a path relative to `base_url`.

    Refuses hrefs on another origin or outside the base path, and any segment that is
    empty, `.`, `..`, contains NUL or a backslash, or hides a `/` in percent-encoding.
    The result is NFC, '' for the base itself, without a trailing slash.
    """
    if "\x00" in href or "\\" in href:
        raise UnsafeHref(f"href contains NUL or a backslash: {shown(href)}")
    for raw in urlsplit(href).path.split("/"):
        if unquote(raw) in (".", ".."):
            raise UnsafeHref(f"href has a dot segment: {shown(href)}")
    absolute = urlsplit(urljoin(folder_url, href))
    base = urlsplit(base_url)
    if (absolute.scheme, absolute.netloc.lower()) != (base.scheme, base.netloc.lower()):
        raise UnsafeHref(f"href points to another server: {shown(href)}")
    # Compare decoded segments: the server may percent-encode differently from the URL
    # typed by the user (`%20` or a space, `%28` or `(`, NFD or NFC), and still mean it.
    base_segments = url_segments(base.path)
    href_segments = url_segments(absolute.path)
    n = len(base_segments)
    if [_comparable(s) for s in href_segments[:n]] != [_comparable(s) for s in base_segments]:
        raise UnsafeHref(f"href is outside the share: {shown(href)}")
    raw_segments = href_segments[n:]
    if not raw_segments:
        return ""
    segments = []
    for raw in raw_segments:
        seg = unquote(raw, errors="strict") if _valid_utf8_escapes(raw) else None
        if seg is None:
            raise UnsafeHref(f"href has invalid percent-encoding or UTF-8: {shown(href)}")
        if "\\" in seg:
            raise UnsafeHref(f"the name {shown(seg)} contains a backslash, which davsync never writes into a name")
        if seg in ("", ".", "..") or "/" in seg or "\x00" in seg:
            raise UnsafeHref(f"href has an unsafe segment {shown(seg)}: {shown(href)}")
        segments.append(nfc(seg))
    return "/".join(segments)


class HrefResolver:
    """href_to_relpath for every href of one listing, and the href made absolute, both cheap
    for the usual href (an absolute path, no query, no fragment): the base's segments are
    decoded once, a segment without `%` is not decoded at all. Anything else, and anything
    the short path doubts, goes through href_to_relpath, which refuses it with its reason."""

    def __init__(self, folder_url: str, base_url: str) -> None:
        self.folder_url = folder_url
        self.base_url = base_url
        folder, base = urlsplit(folder_url), urlsplit(base_url)
        self.same_origin = (folder.scheme, folder.netloc.lower()) == (base.scheme, base.netloc.lower())
        self.origin = f"{folder.scheme}://{folder.netloc}"
        self.base_segments = [_comparable(s) for s in url_segments(base.path)]
        self._prefix: dict[str, str] = {}  # raw segment -> comparable, for the base's part

    def relpath(self, href: str) -> str:
        if not self.same_origin or not href.startswith("/") or href.startswith("//") or _UNUSUAL.search(href):
            return href_to_relpath(href, self.folder_url, self.base_url)
        raws = url_segments(href)
        n = len(self.base_segments)
        if len(raws) < n:
            return href_to_relpath(href, self.folder_url, self.base_url)
        for raw, want in zip(raws[:n], self.base_segments, strict=True):
            got = self._prefix.get(raw)
            if got is None:
                got = _comparable(raw)
                if len(self._prefix) < 1024:
                    self._prefix[raw] = got
            if got != want or got in (".", ".."):
                return href_to_relpath(href, self.folder_url, self.base_url)
        segments = []
        for raw in raws[n:]:
            if "%" in raw:
                try:
                    seg = unquote(raw, errors="strict")
                except UnicodeDecodeError:
                    return href_to_relpath(href, self.folder_url, self.base_url)
            else:
                seg = raw
            if seg in ("", ".", "..") or "/" in seg or "\x00" in seg or "\\" in seg:
                return href_to_relpath(href, self.folder_url, self.base_url)
            segments.append(seg if seg.isascii() else nfc(seg))
        return "/".join(segments)

    def absolute(self, href: str) -> str:
        """urljoin(folder_url, href)."""
        if href.startswith("/") and not href.startswith("//") and not _UNUSUAL.search(href):
            return self.origin + href
        return urljoin(self.folder_url, href)


# What urljoin reads or drops (query, fragment, params, tab, CR, LF), NUL, backslash, a raw dot segment.
_UNUSUAL = re.compile(r"[?#;\\\x00\t\r\n]|/\.{1,2}(?:/|$)")


def url_segments(path: str) -> list[str]:
    """A URL path's raw segments, without the leading and trailing slash."""
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


def _comparable(raw: str) -> str:
    return nfc(unquote(raw))


def shown(text: str) -> str:
    """A server name for a message: as it is, quoted, with control characters escaped
    (a backslash is an ordinary character here, never doubled as a Python repr would)."""
    clean = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return f"'{clean}'"


def _valid_utf8_escapes(raw: str) -> bool:
    try:
        unquote(raw, errors="strict")
        return True
    except UnicodeDecodeError:
        return False


def name_problem(name: str, rules: NameRules, *, byte_limit: bool = sys.platform != "win32") -> str | None:
    """Why this filesystem cannot hold `name`, or None.

    `byte_limit`: the system calls limit a name to 255 UTF-8 bytes (everywhere but Windows,
    even on an NTFS volume); Windows rules add NTFS's 255 UTF-16 units.
    """
    if byte_limit and len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return "name is longer than 255 bytes"
    if rules == "windows" and len(name.encode("utf-16-le", "surrogatepass")) // 2 > MAX_NAME_UTF16:
        return "name is longer than 255 UTF-16 characters (NTFS's limit)"
    if rules == "windows" and any(ord(c) < 32 for c in name):
        return "name contains control characters"
    if rules == "windows":
        if _WINDOWS_RESERVED.match(name):
            return "name is reserved on Windows"
        bad = sorted(set(name) & _WINDOWS_BAD_CHARS)
        if bad:
            return f"name contains characters Windows forbids: {shown(''.join(bad))}"
        if name.endswith((".", " ")):
            return "name ends with a dot or space, which Windows strips"
    if rules == "macos" and ":" in name:
        return "name contains ':' which macOS Finder cannot show"
    return None


def case_insensitive(rules: NameRules) -> bool:
    return rules in ("windows", "macos")


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def filter_names(
    paths: Iterable[str], rules: NameRules, *, fold_case: bool | None = None, prefer: Container[str] | None = None
) -> tuple[set[str], list[Skipped]]:
    """Keep the paths this filesystem can hold; report the rest.

    On case-insensitive filesystems (`fold_case`, by default from the rules), names in
    one folder that differ only by case would overwrite each other. With `prefer` (the
    server's names: the paths already synced here), one of them is kept by a stated rule:
    the one already synced, else the first in code-point order (`Report.txt` before
    `report.txt`); without it (the local side), all are skipped. Anything below a skipped
    folder is skipped too. A root name that could stand for `.davsync` on some filesystem
    is always skipped.
    """
    paths = sorted(set(paths))
    skipped: dict[str, str] = {}
    own: dict[str, bool] = {}  # top-level name -> may it stand for .davsync (asked once per name)
    for path in paths:
        top = path.split("/")[0]
        if top not in own:
            own[top] = own_name(top) == STATE_DIR_NAME
        if path and own[top]:
            skipped[path] = (
                f"{top!r} at the root may stand for .davsync or .davsyncignore on Windows (an 8.3 short name)"
                if _SHORT_ALIAS.match(top)
                else "the name .davsync at the root (in any letter case) is reserved for davsync's own state"
            )
            continue
        problem = name_problem(path.rsplit("/", 1)[-1], rules)
        if problem:
            skipped[path] = problem
    if case_insensitive(rules) if fold_case is None else fold_case:
        groups: dict[str, list[str]] = {}
        for path in paths:
            groups.setdefault(nfc(path).casefold(), []).append(path)
        for members in groups.values():
            if len(members) > 1 and prefer is not None:
                keep = next((m for m in members if m in prefer), min(members))
                for m in members:
                    if m != keep:
                        skipped.setdefault(m, f"differs only by case from {shown(keep)}, which is synced here instead "
                                              "(this filesystem cannot hold both); rename one of them on the server "
                                              "to have both here")  # fmt: skip
            elif len(members) > 1:
                for m in members:
                    others = ", ".join(shown(o) for o in members if o != m)
                    skipped.setdefault(m, f"differs only by case from {others}; this filesystem cannot hold both")
    if not skipped:
        return set(paths), []
    kept = set()
    for path in paths:
        if path in skipped:
            continue
        parts = path.split("/")
        blocked = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in skipped), None)
        if blocked is not None:
            skipped[path] = f"inside skipped folder {shown(blocked)}"
            continue
        kept.add(path)
    return kept, [Skipped(p, r) for p, r in sorted(skipped.items())]
