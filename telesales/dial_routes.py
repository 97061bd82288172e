"""Where a customer number is dialled: the longest matching prefix route, else dialer.dial_uri.

`dialer.dial_routes` holds "PREFIX=URI" strings, e.g. "+86=sip:{number}@trunk-cn.example" or
"+8613800000001=sip:customer@127.0.0.1:5070" (a route for one number needs no {number}).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

_PREFIX = re.compile(r"^\+[0-9]{1,15}$")


def parse_routes(routes: list[str]) -> list[tuple[str, str]]:
    """(prefix, uri) pairs; ValueError names the first bad entry."""
    parsed = []
    for entry in routes:
        prefix, sep, uri = (part.strip() for part in entry.partition("="))
        if not sep or not _PREFIX.match(prefix) or not uri.startswith(("sip:", "sips:")):
            raise ValueError(f'{entry!r} is not "+PREFIX=sip:URI" (e.g. "+86=sip:{{number}}@trunk.example")')
        parsed.append((prefix, uri))
    return parsed


def dial_uri_for(dialer: SimpleNamespace, phone: str) -> str | None:
    """The SIP URI for an E.164 number, or None when neither a route nor dial_uri reaches it."""
    matches = [(p, u) for p, u in parse_routes(dialer.dial_routes) if phone.startswith(p)]
    template = max(matches, key=lambda m: len(m[0]))[1] if matches else dialer.dial_uri
    return template.replace("{number}", phone) if template else None
