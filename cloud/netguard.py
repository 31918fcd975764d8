"""Outbound HTTP to addresses users typed in (webhooks; later Apprise targets), without SSRF.

A user-supplied URL must not reach the server's own networks: loopback, private and
link-local ranges (a cloud's metadata service at 169.254.169.254), CGNAT (100.64/10),
multicast, unspecified and reserved addresses, in IPv4 and IPv6, including IPv4 inside
IPv6 (mapped ``::ffff:a.b.c.d``, 6to4, NAT64). Numeric spellings such as ``0``,
``2130706433`` or ``0x7f.1`` are whatever the system resolver says they are.

    OutboundError
    ├── TargetRefused       the target may not be called; ``reason`` is fit to show the user
    └── NameNotResolved     the host name has no address (now)

One policy, three checks:

- ``Policy.check_url`` when a URL is saved: a clear error for what is refused already;
- ``Policy.resolve`` when sending: every address the name has must be allowed;
- ``GuardedTransport`` (httpx) connects to an address it has just checked, with no second
  lookup in between (no DNS rebinding); URL, Host header and TLS SNI keep the name.

The allow-list (``MAILCAM_NOTIFY__OUTBOUND_ALLOW``) holds CIDRs and host names the operator
trusts, e.g. a Home Assistant on the LAN: ``["192.168.1.0/24", "homeassistant.local"]``.

``GuardedTransport.deadline(s)`` bounds a whole request: each socket read and write gets at
most the time left, so a server answering one byte at a time cannot hold the caller longer.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

REFUSED_REASON = "its address is in a private, loopback, link-local or reserved range; not allowed on this server"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class OutboundError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TargetRefused(OutboundError):
    pass


class NameNotResolved(OutboundError):
    pass


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet (what a webhook may call by default)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
    )


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (numeric spellings included)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise NameNotResolved("the host name could not be resolved") from exc
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


@dataclass(frozen=True)
class Policy:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_allow(cls, allow: Iterable[str], *, resolver: Resolver = system_resolver) -> Policy:
        """``allow``: CIDRs or addresses ("192.168.1.0/24", "fd00::5") and host names ("ha.local")."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in (e.strip() for e in allow):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts), resolver)

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return is_public(ip) or any(ip in network for network in self.networks)

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, every one of them allowed, or ``TargetRefused``."""
        name = host.lower().rstrip(".")
        addresses = self.resolver(name, port)
        if not addresses:
            raise NameNotResolved("the host name could not be resolved")
        if name not in self.hosts and not all(self.allows(a) for a in addresses):
            raise TargetRefused(REFUSED_REASON)
        return addresses

    def check_url(self, url: str) -> None:
        """At save time: refuse what is refused already. A name that does not resolve yet is left
        to the send-time check (the one that counts: a name's addresses can change)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError as exc:
            raise TargetRefused("the URL's host is not a valid address") from exc
        if parts.scheme not in ("http", "https") or not host:
            raise TargetRefused("the URL must be http:// or https:// with a host")
        # A bracketed host must be an IPv6 address (urlsplit checks this itself only from Python 3.11.4).
        if parts.netloc.rpartition("@")[2].startswith("[") and not _is_ipv6(host):
            raise TargetRefused("the URL's host is not a valid address")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise TargetRefused("the URL's port is not valid") from exc
        try:
            self.resolve(parts.hostname, port)
        except NameNotResolved:
            return


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


# --- httpx transport ------------------------------------------------------------------------


class _Deadline(threading.local):
    """The end of the current request in this thread (a sync client sends in the caller's thread)."""

    at: float | None = None

    def clamp(self, timeout: float | None, error: type[Exception]) -> float | None:
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("the request's overall deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        timeout = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    def __init__(self, policy: Policy, deadline: _Deadline) -> None:
        self._policy = policy
        self._deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        failure: Exception = httpcore.ConnectError("no address to connect to")
        for address in self._policy.resolve(host, port):
            try:
                stream = super().connect_tcp(address, port, self._deadline.clamp(timeout, httpcore.ConnectTimeout),
                                             local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise TargetRefused("unix sockets are not allowed")


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, with every connection made by the guarded network backend."""

    def __init__(self, policy: Policy, *, verify: ssl.SSLContext | bool = True,
                 limits: httpx.Limits = httpx.Limits(max_connections=50, max_keepalive_connections=10)) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self._deadline = _Deadline()
        # httpx has no public hook for httpcore's network backend: this line is the one place we
        # reach in (tests/notify/test_netguard.py fails loudly if requests stop going through it).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy, self._deadline),
        )

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Requests sent by this thread inside the block end within ``seconds`` (a timeout error)."""
        previous, self._deadline.at = self._deadline.at, time.monotonic() + seconds
        try:
            yield
        finally:
            self._deadline.at = previous


def guarded_client(
    policy: Policy, *, timeout_s: float, verify: ssl.SSLContext | bool = True
) -> tuple[httpx.Client, GuardedTransport]:
    """A client for user-supplied URLs: guarded transport, no redirects, no proxies from the environment."""
    transport = GuardedTransport(policy, verify=verify)
    client = httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False)
    return client, transport
