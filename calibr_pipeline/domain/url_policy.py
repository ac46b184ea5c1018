"""Which competitor URLs Calibrate is willing to fetch.

Merchants type competitor URLs into Calibrate and our workers fetch them from inside
our network, so a URL is also a way to make us request something on *our* side:
the cloud metadata service (credentials), a database admin page on a private
address, a service on localhost. This module is the single place that says no.

Rules, in the order they are checked:

* only ``http`` and ``https``; a host is required; no ``user:password@`` part (it is
  never needed to read a public product page and is a classic way to disguise the
  real host); no backslashes, whitespace or control characters (parsers disagree
  about them); at most :data:`MAX_URL_LENGTH` characters;
* the host must be a valid DNS name (IDNA names are converted to their ASCII form),
  or an IP literal. IPv4 literals are read the way browsers and ``inet_aton`` read
  them, so ``2130706433``, ``0x7f.1`` and ``0177.0.0.1`` are all understood as
  127.0.0.1 and refused like it;
* refused addresses: private (RFC 1918, ``fc00::/7``), loopback, link-local
  (``169.254/16``, ``fe80::/10``), unspecified, multicast, reserved, documentation,
  carrier-grade NAT ``100.64/10``, site-local, and the cloud metadata endpoints.
  IPv6 forms that carry an IPv4 address (``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
  6to4 ``2002::/16``) are judged by the IPv4 address inside;
* refused names: ``localhost`` and ``*.localhost``, ``*.internal`` (reserved for
  private use, and where GCP serves its metadata), and the metadata names of the
  big clouds, whatever they resolve to;
* names are resolved and refused if *any* address is refused (a name with one public
  and one private record would otherwise be a coin toss).

A name that does not resolve is **accepted**: DNS can fail for a day and a merchant
should still be able to save the URL; the scrape then records a ``dns`` failure,
which is visible. Resolution at save time is therefore advisory; what protects us is
the check at fetch time (:func:`check_resolved_address` before a request and
:func:`check_connected_address` on the socket actually connected, which also
defeats DNS rebinding, where a name resolves to a public address when validated and
to a private one when fetched).

The sandbox and the tests serve pages from 127.0.0.1, which is refused by default.
``allowed_hosts`` is the explicit escape hatch: an entry ``"127.0.0.1"`` admits that
host on any port, ``"127.0.0.1:8080"`` (or ``"[::1]:8080"``) only that port. An
admitted host skips the address rules, never the syntax rules.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from urllib.parse import SplitResult, urlsplit, urlunsplit

import idna

from calibr_pipeline.domain.errors import CalibrError, ErrorClass

# Matches competitor_listings.url (String(2000)), so a URL the policy accepts can be stored.
MAX_URL_LENGTH = 2000

Resolver = Callable[[str], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlPolicyError(CalibrError):
    """A competitor URL that Calibrate will not fetch. The message is for the merchant."""

    def __init__(self, error_class: ErrorClass, message: str, url: str | None = None):
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.url = url

    def __repr__(self) -> str:
        return f"UrlPolicyError({self.error_class.value!r}, {self.message!r})"


def system_resolve(host: str) -> list[str]:
    """Every address the system resolver gives for ``host``; ``[]`` if it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# Names refused whatever they resolve to: they exist to reach the instance's own
# metadata service, which hands out cloud credentials.
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
        "metadata.packet.net",
    }
)

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.169.253",  # AWS DNS
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IPv6
        "fd00:ec2::23",  # AWS IPv6 Time Sync/DNS
    )
)

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


# --------------------------------------------------------------------------- parsing


def _invalid(message: str, url: str | None = None) -> UrlPolicyError:
    return UrlPolicyError(ErrorClass.INVALID_URL, message, url)


def _blocked(message: str, url: str | None = None) -> UrlPolicyError:
    return UrlPolicyError(ErrorClass.BLOCKED_URL, message, url)


def _parse_ipv4_part(part: str) -> int | None:
    if part.lower().startswith("0x"):
        digits = part[2:]
        if digits == "":
            return 0
        return int(digits, 16) if re.fullmatch(r"[0-9a-fA-F]+", digits) else None
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if re.fullmatch(r"[0-7]+", part) else None
    return int(part) if re.fullmatch(r"[0-9]+", part) else None


def _ends_in_number(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]
    last = parts[-1]
    return bool(re.fullmatch(r"[0-9]+", last) or re.fullmatch(r"0[xX][0-9a-fA-F]*", last))


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """Read ``host`` as an IPv4 address the way browsers (WHATWG URL) and ``inet_aton`` do.

    Returns ``None`` when the host is not numeric at all. Raises ``UrlPolicyError``
    (invalid_url) when it looks numeric but is not a valid address, because a
    resolver might still make something of it.
    """
    if not _ends_in_number(host):
        return None
    parts = host.split(".")
    if parts[-1] == "":
        parts = parts[:-1]
    if not 1 <= len(parts) <= 4 or any(p == "" for p in parts):
        raise _invalid(f"'{host}' is not a valid IP address.")
    numbers = [_parse_ipv4_part(p) for p in parts]
    if any(n is None for n in numbers):
        raise _invalid(f"'{host}' is not a valid IP address.")
    *head, last = numbers  # type: ignore[misc]
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(parts)):
        raise _invalid(f"'{host}' is not a valid IP address.")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _normalize_hostname(raw: str, url: str) -> str:
    host = raw.rstrip(".") if raw not in (".", "") else raw
    if not host:
        raise _invalid("The competitor URL has no host name.", url)
    if host.isascii():
        host = host.lower()
    else:
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise _invalid(f"'{raw}' is not a valid domain name ({exc}).", url) from exc
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise _invalid(f"'{raw}' is not a valid domain name.", url)
    return host


class _Host:
    """The host part of a URL: either a name or an IP address, already normalized."""

    def __init__(self, name: str | None, ip: IPAddress | None):
        self.name = name
        self.ip = ip

    @property
    def text(self) -> str:
        if self.ip is None:
            assert self.name is not None
            return self.name
        return str(self.ip)

    @property
    def netloc_text(self) -> str:
        return f"[{self.ip}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.text


def _parse_host(parts: SplitResult, url: str) -> _Host:
    netloc = parts.netloc
    # hostname drops brackets and lowercases; keep the raw form to spot IPv6 literals.
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        literal = hostport[1:].partition("]")[0]
        if "%" in literal:
            raise _invalid("IPv6 zone identifiers are not allowed in a competitor URL.", url)
        try:
            return _Host(None, ipaddress.IPv6Address(literal))
        except ValueError as exc:
            raise _invalid(f"'[{literal}]' is not a valid IPv6 address.", url) from exc
    raw = parts.hostname or ""
    if "%" in raw:
        raise _invalid("The host name of the competitor URL must not be percent-encoded.", url)
    ipv4 = parse_ipv4_loose(raw) if raw else None
    if ipv4 is not None:
        return _Host(None, ipv4)
    return _Host(_normalize_hostname(raw, url), None)


def _port(parts: SplitResult, url: str) -> int | None:
    try:
        port = parts.port
    except ValueError as exc:
        raise _invalid("The port in the competitor URL is not a number between 1 and 65535.", url) from exc
    if port == 0:
        raise _invalid("The port in the competitor URL is not a number between 1 and 65535.", url)
    return port


# --------------------------------------------------------------------------- address rules


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def address_refusal_reason(address: str | IPAddress) -> str | None:
    """Why we refuse to connect to ``address`` (a phrase for a message), or ``None`` if public."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a link-local address"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return address_refusal_reason(inner)
    if ip in _METADATA_ADDRESSES:
        return "the cloud metadata service"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "this machine's loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a carrier-grade NAT (shared) address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private or not ip.is_global:
        # Python's is_private also covers documentation and benchmarking ranges.
        return "a private network address"
    return None


def name_refusal_reason(host: str) -> str | None:
    """Why a host *name* is refused regardless of DNS, or ``None``."""
    host = host.lower().rstrip(".")
    if host in _METADATA_NAMES:
        return "the cloud metadata service"
    if host == "localhost" or host.endswith(".localhost"):
        return "this machine"
    if host.endswith(".internal"):
        return "an internal network name"
    return None


# --------------------------------------------------------------------------- allow-list


def _normalize_allow_entry(entry: str) -> str:
    entry = entry.strip().lower()
    if entry.startswith("["):
        literal, _, rest = entry[1:].partition("]")
        host = str(ipaddress.IPv6Address(literal))
        return f"[{host}]{rest}" if rest else host
    if entry.count(":") > 1:
        return str(ipaddress.IPv6Address(entry))
    return entry.rstrip(".")


def _allow_set(allowed_hosts: Iterable[str]) -> frozenset[str]:
    if isinstance(allowed_hosts, str):
        # A bare string would silently become a set of characters.
        allowed_hosts = [allowed_hosts]
    return frozenset(_normalize_allow_entry(e) for e in allowed_hosts if e and e.strip())


def _host_key(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower().rstrip(".")
    return str(ip)


def is_allowed_host(host: str, port: int | None, allowed_hosts: Iterable[str]) -> bool:
    """Whether ``host`` (optionally on ``port``) is in the sandbox allow-list."""
    allowed = _allow_set(allowed_hosts)
    if not allowed:
        return False
    key = _host_key(host)
    if key in allowed:
        return True
    if port is None:
        return False
    shown = f"[{key}]" if ":" in key else key
    return f"{shown}:{port}" in allowed


# --------------------------------------------------------------------------- public checks


def _refuse_address(host_text: str, ip: IPAddress, reason: str, url: str | None) -> UrlPolicyError:
    if str(ip) == host_text:
        return _blocked(
            f"The competitor URL points to {reason} ({ip}); only public websites can be tracked.", url
        )
    return _blocked(
        f"The competitor URL's host '{host_text}' resolves to {reason} ({ip}); "
        "only public websites can be tracked.",
        url,
    )


def check_resolved_address(
    host: str,
    allowed_hosts: Iterable[str] = (),
    resolve: Resolver | None = system_resolve,
    *,
    port: int | None = None,
    url: str | None = None,
) -> list[str]:
    """Resolve ``host`` now and refuse it if any address is not public.

    Called by the fetcher right before a request, because what a name resolves to can
    change after the URL was saved. Returns the addresses found (``[]`` for an allowed
    host, an unresolvable one, or when ``resolve`` is ``None``).
    """
    if is_allowed_host(host, port, allowed_hosts):
        return []
    reason = name_refusal_reason(host)
    if reason:
        raise _blocked(f"The competitor URL points to {reason} ('{host}'); only public websites can be tracked.", url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    elif resolve is None:
        return []
    else:
        try:
            addresses = list(resolve(host))
        except OSError:
            # Unresolvable is accepted: the fetch will record a dns failure.
            return []
    for address in addresses:
        # A zone suffix (fe80::1%eth0) only ever comes with link-local addresses.
        ip = ipaddress.ip_address(address.split("%")[0])
        why = address_refusal_reason(ip)
        if why:
            raise _refuse_address(host, ip, why, url)
    return addresses


def check_connected_address(
    host: str, port: int | None, peer_address: str, allowed_hosts: Iterable[str] = ()
) -> None:
    """Refuse a socket already connected to ``peer_address`` unless it is public or allowed.

    This is the check that cannot be raced: it looks at the address the operating
    system actually connected to, after every redirect and every DNS answer.
    """
    if is_allowed_host(host, port, allowed_hosts):
        return
    ip = ipaddress.ip_address(peer_address)
    why = address_refusal_reason(ip)
    if why:
        raise _refuse_address(_host_key(host), ip, why, None)


def validate_competitor_url(
    url: str,
    *,
    allowed_hosts: Iterable[str] = (),
    resolve: Resolver | None = system_resolve,
) -> str:
    """Check a competitor URL and return its normalized form.

    Normalization: scheme and host lowercased, IDNA host in ASCII form, numeric IPv4
    hosts in dotted-quad form, default port and fragment dropped, empty path -> ``/``.
    ``resolve=None`` skips DNS (syntax and literal-address rules still apply).

    Raises :class:`UrlPolicyError` with ``error_class`` ``INVALID_URL`` (not a usable
    web address) or ``BLOCKED_URL`` (a usable address we refuse to fetch).
    """
    if not isinstance(url, str):
        raise _invalid(f"The competitor URL must be text, not {type(url).__name__}.")
    url = url.strip()
    if not url:
        raise _invalid("The competitor URL is empty.")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"The competitor URL is longer than {MAX_URL_LENGTH} characters.", url[:200])
    if _FORBIDDEN_CHARS.search(url):
        raise _invalid("The competitor URL contains spaces, backslashes or control characters.", url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _invalid(f"The competitor URL could not be read: {exc}.", url) from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        if not scheme:
            raise _invalid("The competitor URL must start with http:// or https://.", url)
        raise _invalid(f"The competitor URL must start with http:// or https:// (it uses '{scheme}:').", url)
    if not parts.netloc:
        raise _invalid("The competitor URL has no host name.", url)
    if "@" in parts.netloc:
        raise _invalid("The competitor URL must not contain a user name or password (the part before '@').", url)
    host = _parse_host(parts, url)
    port = _port(parts, url)
    default_port = 443 if scheme == "https" else 80
    effective_port = port or default_port

    netloc = host.netloc_text if port in (None, default_port) else f"{host.netloc_text}:{port}"
    normalized = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))

    if is_allowed_host(host.text, effective_port, allowed_hosts):
        return normalized
    if host.ip is not None:
        why = address_refusal_reason(host.ip)
        if why:
            raise _refuse_address(host.text, host.ip, why, url)
        return normalized
    check_resolved_address(host.text, (), resolve, port=effective_port, url=url)
    return normalized
