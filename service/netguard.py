"""SSRF protection for every outgoing request the service makes to a client-supplied URL
(webhook deliveries, image URLs to ingest).

A URL is accepted only when its scheme is http(s), it carries no credentials, and *every*
address its host resolves to is public: loopback, private (RFC 1918, ULA), link-local,
shared (CGNAT 100.64/10), multicast, reserved, unspecified and the cloud metadata
addresses are refused, also in their IPv6 forms (IPv4-mapped ``::ffff:a.b.c.d``, NAT64
``64:ff9b::/96``, 6to4, Teredo). Numeric tricks (``2130706433``, ``0x7f.1``) are resolved
by the system resolver first and refused by address. The connection is then made to the
address that was checked (the URL's host is replaced by that address; ``Host`` and the TLS
server name keep the original name), so a second DNS answer cannot redirect it (DNS
rebinding). Redirects are never followed and proxies from the environment are ignored.

``FORENSICS_WEBHOOK_ALLOWLIST`` (hosts or CIDRs) lets chosen hosts or networks through,
for development and tests.
"""

import ipaddress
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Public by the registries' tables, but the cloud's own services: refused explicitly.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.169.253", "100.100.100.200", "168.63.129.16", "fd00:ec2::254")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """The URL is not an http(s) URL whose every address is public (and not allowed by the allow-list)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: the addresses it may be fetched from, in resolver order."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]

    def url_for(self, address: IPAddress) -> str:
        parts = urlsplit(self.url)
        literal = f"[{address}]" if address.version == 6 else str(address)
        return urlunsplit((self.scheme, f"{literal}:{self.port}", parts.path or "/", parts.query, ""))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = {"http": 80, "https": 443}[self.scheme]
        return host if self.port == default else f"{host}:{self.port}"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address that is not a cloud metadata service."""
    inner = _embedded_ipv4(address)
    if inner is not None:  # an IPv6 form of an IPv4 address is judged by that address
        return is_public(inner)
    if address in METADATA_ADDRESSES:
        return False
    return address.is_global and not address.is_multicast and not address.is_reserved


def _allowed(host: str, address: IPAddress, allowlist: Iterable[str]) -> bool:
    for entry in allowlist:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            if host == entry:
                return True
    return False


def check_url(url: str, allowlist: Iterable[str] = ()) -> Target:
    """Resolve ``url``'s host and accept it only when every address is public or allowed; raises :class:`UnsafeURL`."""
    allowlist = list(allowlist)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs are accepted, got {scheme or 'no scheme'!r}")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("URLs with credentials are refused")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise UnsafeURL("the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    try:
        addresses: tuple[IPAddress, ...] = (ipaddress.ip_address(host),)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UnsafeURL(f"the host {host!r} cannot be resolved: {exc}") from None
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise UnsafeURL(f"the host {host!r} has no address")
    for address in addresses:
        if not is_public(address) and not _allowed(host, address, allowlist):
            raise UnsafeURL(f"the host {host!r} resolves to {address}, which is not a public address")
    return Target(url.strip(), scheme, host, port, addresses)


def _client(timeout: float) -> httpx.Client:
    return httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout)


def _extensions(target: Target) -> dict[str, str]:
    try:
        ipaddress.ip_address(target.host)
        return {}
    except ValueError:
        return {"sni_hostname": target.host} if target.scheme == "https" else {}


def post(target: Target, *, content: bytes, headers: dict[str, str], timeout: float) -> httpx.Response:
    """POST to the checked addresses of ``target`` (the next one when a connection fails); no redirects."""
    last: Exception | None = None
    with _client(timeout) as client:
        for address in target.addresses:
            try:
                return client.post(
                    target.url_for(address),
                    content=content,
                    headers={**headers, "Host": target.host_header},
                    extensions=_extensions(target),
                )
            except httpx.ConnectError as exc:
                last = exc
    assert last is not None
    raise last


class FetchError(Exception):
    """An image URL could not be fetched (status, size, time)."""


@contextmanager
def fetch(target: Target, *, max_bytes: int, timeout: float) -> Iterator[Iterator[bytes]]:
    """GET ``target`` and yield its body in chunks, stopping with :class:`FetchError` past
    ``max_bytes`` bytes or ``timeout`` seconds in all; a non-2xx answer (redirects included) is an error."""
    deadline = time.monotonic() + timeout
    with _client(timeout) as client:
        last: Exception | None = None
        for address in target.addresses:
            try:
                request = client.build_request(
                    "GET", target.url_for(address), headers={"Host": target.host_header}, extensions=_extensions(target)
                )
                response = client.send(request, stream=True)
                break
            except httpx.ConnectError as exc:
                last = exc
        else:
            raise FetchError(f"cannot connect to {target.host}: {last}")
        try:
            if not 200 <= response.status_code < 300:
                raise FetchError(f"the server answered {response.status_code} (redirects are not followed)")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"the image has {int(declared):,} bytes, more than the limit of {max_bytes:,}")

            def chunks() -> Iterator[bytes]:
                received = 0
                for chunk in response.iter_bytes(65536):
                    received += len(chunk)
                    if received > max_bytes:
                        raise FetchError(f"the image is larger than the limit of {max_bytes:,} bytes")
                    if time.monotonic() > deadline:
                        raise FetchError(f"the download took more than {timeout:g} s")
                    yield chunk

            yield chunks()
        finally:
            response.close()
