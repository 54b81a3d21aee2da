"""Writing 207 Multi-Status answers (PROPFIND, REPORT) and RFC 4918 precondition error bodies.

Shared by the request server and the sync-collection REPORT, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from lxml import etree
from wsgidav import util, xml_tools
from wsgidav.dav_error import DAVError

from .wsgitypes import StartResponse

STREAM_AFTER = 200  # responses; a larger listing is sent chunked instead of built in memory


class PreconditionError(DAVError):
    """A DAVError whose body is `<D:error><precondition/></D:error>` (as RFC 4918 16 and RFC 6578 ask)."""

    def __init__(self, status: int, condition: str, message: str) -> None:
        super().__init__(status, message)
        self._condition = condition

    def get_response_page(self) -> tuple[str, bytes]:
        err = etree.Element("{DAV:}error", nsmap={"D": "DAV:"})
        etree.SubElement(err, self._condition)
        return "application/xml; charset=utf-8", etree.tostring(err, xml_declaration=True, encoding="utf-8")


def property_response(href: str, props: list[tuple[str, Any]]) -> etree._Element:
    """One `<D:response>` with its propstats; the 200 propstat first (rclone reads only the first)."""
    props = sorted(props, key=lambda item: isinstance(item[1], DAVError))
    holder = xml_tools.make_multistatus_el()
    util.add_property_response(holder, href, props)
    return holder[0]


def status_response(href: str, status: str, condition: str | None = None) -> etree._Element:
    """One `<D:response>` with a status only (a removed member, a truncated result)."""
    response = etree.Element("{DAV:}response", nsmap={"D": "DAV:"})
    etree.SubElement(response, "{DAV:}href").text = href
    etree.SubElement(response, "{DAV:}status").text = f"HTTP/1.1 {status}"
    if condition is not None:
        etree.SubElement(etree.SubElement(response, "{DAV:}error"), condition)
    return response


def send_multistatus(
    start_response: StartResponse, responses: Iterable[Any], *, stream: bool, tail: Iterable[Any] = ()
) -> Iterable[bytes]:
    """A 207 Multi-Status, serialised response by response.

    Small answers are sent with a Content-Length; past STREAM_AFTER responses the rest is
    streamed (chunked), so a 100,000-entry listing never sits in memory as one document.
    """
    head = b'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">'
    foot = b"</D:multistatus>"
    it = iter(responses)
    first: list[bytes] = []
    for el in it:
        first.append(etree.tostring(el))
        if stream and len(first) >= STREAM_AFTER:
            break
    else:
        body = head + b"".join(first) + b"".join(etree.tostring(t) for t in tail) + foot
        start_response("207 Multi-Status", _headers(str(len(body))))
        return [body]

    def chunks() -> Iterator[bytes]:
        yield head + b"".join(first)
        batch: list[bytes] = []
        for el in it:
            batch.append(etree.tostring(el))
            if len(batch) >= STREAM_AFTER:
                yield b"".join(batch)
                batch = []
        yield b"".join(batch) + b"".join(etree.tostring(t) for t in tail) + foot

    start_response("207 Multi-Status", _headers(None))
    return chunks()


def _headers(length: str | None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/xml; charset=utf-8"), ("Date", util.get_rfc1123_time())]
    if length is not None:
        headers.append(("Content-Length", length))
    return headers
