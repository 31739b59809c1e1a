"""Which host names the workbench answers to: a policy that is never switched off.

Bound to a loopback address (the default), the app answers to the loopback names only. Bound to any
other address, it needs the names it may be reached by (`icai app --allow-host NAME`): a request whose
Host header or Origin names anything else is refused, so a web page on another site cannot reach the
app through DNS rebinding, whichever interface the app listens on.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from icai.errors import DataError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
"""Names every policy accepts: they reach this machine only, whatever a DNS server says."""

WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")

_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?")


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the app on this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str | None:
    """The lower-case host name (IPv6 without brackets) of a Host header value or allowed name; None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1 :]
        if end < 0 or (rest and not re.fullmatch(r":[0-9]{1,5}", rest)):
            return None
        inner = value[1:end]
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            return None
    name, _, port = value.partition(":")
    if port and not re.fullmatch(r"[0-9]{1,5}", port):
        return None
    if _NAME.fullmatch(name):
        return name.rstrip(".")
    return None


def _allowed_name(value: str) -> str:
    """An --allow-host NAME, checked: a DNS name or an IP address, no port, no wildcard."""
    raw = value.strip().lower()
    try:
        return str(ipaddress.ip_address(raw.strip("[]")))
    except ValueError:
        pass
    if ":" in raw or not _NAME.fullmatch(raw):
        raise DataError(f"--allow-host {value!r} is not a host name or an IP address (give a name such as box.lan, no port)")
    return raw.rstrip(".")


@dataclass(frozen=True)
class HostPolicy:
    """Where the app listens and the host names (Host header and Origin) it answers to."""

    bind: str
    allowed: frozenset[str]
    extra: tuple[str, ...] = ()
    """The names given with --allow-host, in order (empty when bound to loopback only)."""

    @property
    def exposed(self) -> bool:
        return not is_loopback(self.bind)

    def allows(self, host_header: str) -> bool:
        name = host_name(host_header)
        return name is not None and name in self.allowed

    def url(self, port: int) -> str:
        """A URL of the app that works: loopback when it listens there, else the first allowed name."""
        if self.bind in WILDCARD_ADDRESSES or is_loopback(self.bind):
            host = "[::1]" if self.bind == "::" or self.bind.strip("[]") == "::1" else (
                "127.0.0.1" if self.bind in WILDCARD_ADDRESSES else self.bind
            )
        else:
            host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{port}/"

    def warning(self, port: int) -> str | None:
        """What to print when the app listens beyond this machine; None when it does not."""
        if not self.exposed:
            return None
        names = ", ".join(f"http://{f'[{n}]' if ':' in n else n}:{port}/" for n in self.extra)
        return (
            f"icai app listens on {self.bind or 'every interface'}, beyond this machine: anyone who can reach it "
            f"may read this run, and its page's token lets them edit it. Requests must name {names} "
            "(or a loopback address); the connection is plain HTTP, so use it on a network you trust "
            "or behind an HTTPS proxy."
        )


def host_policy(bind: str = "127.0.0.1", allow_hosts: tuple[str, ...] | list[str] = ()) -> HostPolicy:
    """The policy for binding `bind`; binding a non-loopback address without `allow_hosts` is a DataError."""
    bind = bind.strip()
    extra = tuple(dict.fromkeys(_allowed_name(h) for h in allow_hosts))
    if not is_loopback(bind) and not extra:
        raise DataError(
            f"--host {bind or repr(bind)} makes the app reachable from other machines; name the host names it may be "
            "reached by with --allow-host NAME (repeatable), e.g. --allow-host box.lan"
        )
    allowed = set(LOOPBACK_NAMES) | set(extra)
    if bind not in WILDCARD_ADDRESSES:
        bound = host_name(bind if ":" not in bind or bind.startswith("[") else f"[{bind}]")
        if bound is not None:
            allowed.add(bound)
    return HostPolicy(bind, frozenset(allowed), extra)
