from __future__ import annotations

import pytest

from calibr_pipeline.domain.errors import CalibrError, ErrorClass
from calibr_pipeline.domain.url_policy import (
    MAX_URL_LENGTH,
    UrlPolicyError,
    address_refusal_reason,
    check_connected_address,
    check_resolved_address,
    is_allowed_host,
    parse_ipv4_loose,
    system_resolve,
    validate_competitor_url,
)

PUBLIC = "93.184.216.34"


def public(_host: str) -> list[str]:
    return [PUBLIC]


def refused(url: str, **kw) -> UrlPolicyError:
    kw.setdefault("resolve", public)
    with pytest.raises(UrlPolicyError) as info:
        validate_competitor_url(url, **kw)
    assert isinstance(info.value, CalibrError)
    assert info.value.message and str(info.value) == info.value.message
    return info.value


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Shop.Example.COM/products/Tee?x=1#reviews", "https://shop.example.com/products/Tee?x=1"),
        ("  http://shop.example  ", "http://shop.example/"),
        ("https://shop.example:443/p", "https://shop.example/p"),
        ("http://shop.example:80/p", "http://shop.example/p"),
        ("https://shop.example:8443/p", "https://shop.example:8443/p"),
        ("HTTPS://shop.example./p", "https://shop.example/p"),
        ("https://bücher.example/p", "https://xn--bcher-kva.example/p"),
        ("http://8.8.8.8/p", "http://8.8.8.8/p"),
        ("http://134744072/p", "http://8.8.8.8/p"),  # integer form, normalized
        ("http://[2606:4700:4700::1111]/p", "http://[2606:4700:4700::1111]/p"),
        ("https://my_shop.example/p", "https://my_shop.example/p"),
    ],
)
def test_accepts_and_normalizes_public_urls(url: str, expected: str) -> None:
    assert validate_competitor_url(url, resolve=public) == expected


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "empty"),
        ("shop.example/products/x", "http://"),
        ("ftp://shop.example/x", "'ftp:'"),
        ("javascript:alert(1)", "'javascript:'"),
        ("file:///etc/passwd", "'file:'"),
        ("http:///nohost", "no host"),
        ("http://user:pass@shop.example/", "user name or password"),
        ("http://shop.example@127.0.0.1/", "user name or password"),
        ("http://shop.example:99999/", "port"),
        ("http://shop.example:0/", "port"),
        ("http://shop.example:abc/", "port"),
        ("http://sh op.example/", "spaces"),
        ("http://shop.example\\@127.0.0.1/", "backslashes"),
        ("http://shop.example/\x00", "control"),
        ("http://" + "a" * MAX_URL_LENGTH + ".example/", "longer than"),
        ("http://-bad-.example/", "not a valid domain"),
        ("http://a..b.example/", "not a valid domain"),
        ("http://1.2.3.4.5/", "not a valid IP"),
        ("http://256.0.0.1/", "not a valid IP"),
        ("http://0x100000000/", "not a valid IP"),
        ("http://[::1%25eth0]/", "zone"),
        ("http://[not-v6]/", "IPv6"),
        ("http://%31%32%37.0.0.1/", "percent-encoded"),
    ],
)
def test_invalid_urls(url: str, fragment: str) -> None:
    error = refused(url)
    assert error.error_class is ErrorClass.INVALID_URL
    assert fragment.lower() in error.message.lower()


def test_non_string_is_invalid() -> None:
    error = refused(None)  # type: ignore[arg-type]
    assert error.error_class is ErrorClass.INVALID_URL


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.8.9.10:8080/", "loopback"),
        ("http://2130706433/", "loopback"),  # decimal integer
        ("http://0x7f.1/", "loopback"),  # hex, short form
        ("http://0x7f000001/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),  # octal
        ("http://127.1/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://[64:ff9b::7f00:1]/", "loopback"),  # NAT64
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://[fd12:3456::1]/", "private"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://255.255.255.255/", "reserved"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://100.127.255.254/", "carrier-grade NAT"),
        ("http://[fec0::1]/", "site-local"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://100.100.100.200/", "metadata"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://METADATA.google.internal./", "metadata"),
        ("http://metadata.azure.com/", "metadata"),
        ("http://metadata/", "metadata"),
        ("http://localhost/", "this machine"),
        ("http://LOCALHOST:3000/", "this machine"),
        ("http://shop.localhost/", "this machine"),
        ("http://db.corp.internal/", "internal"),
    ],
)
def test_blocked_addresses_and_names(url: str, reason: str) -> None:
    error = refused(url)
    assert error.error_class is ErrorClass.BLOCKED_URL, error.message
    assert reason.lower() in error.message.lower()
    assert "only public websites" in error.message


@pytest.mark.parametrize("address", ["10.0.0.7", "127.0.0.1", "::1", "169.254.169.254", "::ffff:192.168.0.1"])
def test_names_resolving_to_refused_addresses_are_blocked(address: str) -> None:
    error = refused("https://evil.example/p", resolve=lambda _h: [address])
    assert error.error_class is ErrorClass.BLOCKED_URL
    assert "evil.example" in error.message and "resolves to" in error.message


def test_one_private_record_among_public_ones_is_enough_to_block() -> None:
    error = refused("https://mixed.example/", resolve=lambda _h: [PUBLIC, "192.168.0.10"])
    assert error.error_class is ErrorClass.BLOCKED_URL


def test_unresolvable_names_are_accepted() -> None:
    # DNS trouble must not stop a merchant saving a URL; the scrape records dns.
    assert validate_competitor_url("https://gone.example/p", resolve=lambda _h: []) == "https://gone.example/p"

    def broken(_h: str) -> list[str]:
        raise OSError("resolver down")

    assert validate_competitor_url("https://gone.example/p", resolve=broken) == "https://gone.example/p"
    assert system_resolve("no-such-host.invalid") == []


def test_resolve_none_skips_dns_but_not_literal_checks() -> None:
    assert validate_competitor_url("https://anything.example/", resolve=None) == "https://anything.example/"
    assert refused("http://10.0.0.1/", resolve=None).error_class is ErrorClass.BLOCKED_URL
    assert refused("http://localhost/", resolve=None).error_class is ErrorClass.BLOCKED_URL


def test_allow_list_by_host_and_by_host_port() -> None:
    loopback_only = lambda _h: ["127.0.0.1"]  # noqa: E731
    assert validate_competitor_url("http://127.0.0.1:8080/p", allowed_hosts=["127.0.0.1"]) == "http://127.0.0.1:8080/p"
    assert validate_competitor_url("http://127.0.0.1:8080/p", allowed_hosts=["127.0.0.1:8080"])
    assert refused("http://127.0.0.1:8081/p", allowed_hosts=["127.0.0.1:8080"]).error_class is ErrorClass.BLOCKED_URL
    assert validate_competitor_url("http://localhost:9000/", allowed_hosts=["LOCALHOST"], resolve=loopback_only)
    assert validate_competitor_url("http://[::1]:9000/", allowed_hosts=["[::1]:9000"])
    assert validate_competitor_url("http://[::1]:9000/", allowed_hosts=["::1"])
    assert validate_competitor_url("http://sandbox.test/", allowed_hosts="sandbox.test", resolve=loopback_only)
    # The allow-list never relaxes the syntax rules.
    assert refused("http://u:p@127.0.0.1/", allowed_hosts=["127.0.0.1"]).error_class is ErrorClass.INVALID_URL
    assert refused("ftp://127.0.0.1/", allowed_hosts=["127.0.0.1"]).error_class is ErrorClass.INVALID_URL


def test_is_allowed_host_default_ports() -> None:
    assert is_allowed_host("127.0.0.1", 80, ["127.0.0.1:80"])
    assert not is_allowed_host("127.0.0.1", 443, ["127.0.0.1:80"])
    assert not is_allowed_host("127.0.0.1", 80, [])


def test_check_resolved_address_at_fetch_time() -> None:
    assert check_resolved_address("shop.example", (), public) == [PUBLIC]
    assert check_resolved_address("127.0.0.1", ["127.0.0.1"], public) == []
    with pytest.raises(UrlPolicyError) as info:
        check_resolved_address("shop.example", (), lambda _h: ["10.0.0.1"])
    assert info.value.error_class is ErrorClass.BLOCKED_URL
    with pytest.raises(UrlPolicyError):
        check_resolved_address("metadata.google.internal", (), public)


def test_check_connected_address() -> None:
    check_connected_address("shop.example", 443, PUBLIC)
    check_connected_address("127.0.0.1", 8080, "127.0.0.1", ["127.0.0.1:8080"])
    with pytest.raises(UrlPolicyError) as info:
        check_connected_address("shop.example", 443, "127.0.0.1")
    assert info.value.error_class is ErrorClass.BLOCKED_URL and "shop.example" in info.value.message


def test_parse_ipv4_loose_matches_inet_aton_forms() -> None:
    assert str(parse_ipv4_loose("3232235777")) == "192.168.1.1"
    assert str(parse_ipv4_loose("0xc0.0xa8.1.1")) == "192.168.1.1"
    assert str(parse_ipv4_loose("0300.0250.01.01")) == "192.168.1.1"
    assert str(parse_ipv4_loose("192.168.257")) == "192.168.1.1"
    assert str(parse_ipv4_loose("1.2.3.4.")) == "1.2.3.4"
    assert parse_ipv4_loose("shop.example") is None
    assert parse_ipv4_loose("1.2.3.example") is None
    with pytest.raises(UrlPolicyError):
        parse_ipv4_loose("08.1.1.1")  # 8 is not an octal digit


def test_address_refusal_reason_public() -> None:
    assert address_refusal_reason(PUBLIC) is None
    assert address_refusal_reason("2606:4700:4700::1111") is None
    assert address_refusal_reason("64:ff9b::808:808") is None  # NAT64 of a public address
