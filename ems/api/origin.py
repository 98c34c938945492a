"""Which `Host` and `Origin` the web UI answers: a defence against DNS rebinding and cross-site requests.

DNS rebinding: a page on `evil.example` makes its own name resolve to the gateway's LAN address, and the
browser — seeing one origin — lets the page read the EMS's answers and send it requests. The request then
says `Host: evil.example`. So a request is only served when its Host is one of
- `localhost`, a loopback address (127.0.0.0/8, ::1);
- an address of the gateway itself (its interfaces, refreshed when an unknown address is asked for, so a new
  DHCP lease is picked up), or the address the server is bound to;
- the gateway's host name and `<hostname>.local` (mDNS);
- a name listed in `web.allowed_hosts` (e.g. the name a reverse proxy or the installer's DNS uses).
Nothing here asks DNS (an offline gateway must not wait for a resolver): addresses come from the interfaces.
Anything else gets 421 Misdirected Request (JSON) before any route runs — including 404s and static files.

A state-changing request (anything but GET/HEAD/OPTIONS) from a browser must also come from the page's own
origin: an `Origin` header (browsers send it on every such request) must name the same host and port as
`Host`, `Origin: null` is refused, and so is `Sec-Fetch-Site: cross-site` — 403. Clients that send neither
(scripts with an API token) pass: a browser cannot be made to omit them.
"""
from __future__ import annotations

import array
import fcntl
import ipaddress
import logging
import socket
import struct
import threading
import time
from typing import Callable, Iterable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SIOCGIFADDR = 0x8915
_REFRESH_MIN_S = 10.0


def split_host(host: str) -> tuple[str, str]:
    """(name or address, port) of a Host header value: `a.b:8080`, `[::1]:8080`, `::1` (bare IPv6)."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        name, rest = (host[1:end], host[end + 1:]) if end > 0 else (host, "")
        return name.lower(), rest[1:] if rest.startswith(":") else ""
    if host.count(":") == 1:
        name, port = host.split(":", 1)
        return name.lower().rstrip("."), port
    return host.lower().rstrip("."), ""


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def own_names() -> set[str]:
    """The gateway's host name (as set, and its first label) and `<hostname>.local`."""
    names = {"localhost"}
    try:
        hostname = socket.gethostname().lower().rstrip(".")
    except OSError:
        return names
    if hostname:
        short = hostname.split(".", 1)[0]
        names |= {hostname, short, f"{short}.local"}
    return names


def own_addresses() -> set[str]:
    """Addresses of the gateway's interfaces (IPv4 by ioctl, IPv6 from /proc), best effort, never raising, no DNS."""
    found: set[str] = set()
    try:
        for _index, name in socket.if_nameindex():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    req = struct.pack("256s", name.encode()[:15])
                    res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, array.array("B", req).tobytes())
                    found.add(socket.inet_ntoa(res[20:24]))
                except OSError:
                    continue
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fh:
            for line in fh:
                raw = line.split()[0]
                found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    except (OSError, ValueError, IndexError):
        pass
    return {str(_ip(a)) for a in found if _ip(a) is not None}


class HostGuard:
    """Decides on Host and Origin headers. `extra_names()` reads `web.allowed_hosts` (live), `bind_host()` the
    configured listen address; `addresses`/`names` are injectable for tests."""

    def __init__(self, extra_names: Callable[[], Iterable[str]], bind_host: Callable[[], str] = lambda: "",
                 addresses: Callable[[], set[str]] = own_addresses, names: Callable[[], set[str]] = own_names,
                 monotonic: Callable[[], float] = time.monotonic):
        self._extra_names = extra_names
        self._bind_host = bind_host
        self._addresses_source = addresses
        self._names_source = names
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._addresses: set[str] = set()
        self._names: set[str] = set()
        self._refreshed = -1e18
        self._refresh()

    def _refresh(self) -> None:
        addresses, names = self._addresses_source(), self._names_source()
        with self._lock:
            self._addresses, self._names, self._refreshed = addresses, names, self._monotonic()

    def host_allowed(self, host: str | None) -> bool:
        """May a request with this Host header be served? (None: an HTTP/1.0 request without one — no browser.)"""
        if host is None:
            return True
        name, _port = split_host(host)
        if not name:
            return False
        if self._known(name):
            return True
        with self._lock:
            stale = self._monotonic() - self._refreshed >= _REFRESH_MIN_S
        if stale:  # perhaps a new address or name since the last look (at most every 10 s)
            self._refresh()
            return self._known(name)
        return False

    def _known(self, name: str) -> bool:
        ip = _ip(name)
        bind = self._bind_host().strip().lower()
        with self._lock:
            if ip is not None:
                return ip.is_loopback or str(ip) in self._addresses or (bool(bind) and _ip(bind) == ip)
            if name in self._names or (bind and name == bind.rstrip(".")):
                return True
        return name in {n.lower().rstrip(".") for n in self._extra_names()}

    @staticmethod
    def cross_site(method: str, host: str | None, origin: str | None, fetch_site: str | None) -> str | None:
        """Why a request from a browser is cross-site (None: it is not, or it changes nothing)."""
        if method.upper() in SAFE_METHODS:
            return None
        if origin is not None:
            if origin.strip().lower() == "null":
                return "Origin: null (a sandboxed or local page)"
            parts = urlsplit(origin.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return f"Origin {origin[:80]!r} is not a web origin"
            if host is None or parts.netloc.lower() != host.strip().lower():
                return f"Origin {origin[:80]!r} is not this site"
        if fetch_site is not None and fetch_site.strip().lower() == "cross-site":
            return "Sec-Fetch-Site: cross-site"
        return None
