"""Webhook signatures and what a subscription may say: the signature is the Standard Webhooks
one (checked against a computation written here from the spec, not with stockade's code), and
the URL and secret patterns mean the same to the server, to Python's ``re``, to ECMA-262 (the
OpenAPI document) and to httpx (which makes the deliveries)."""

from __future__ import annotations

import base64
import re

import httpx
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockade.errors import InvalidRequest
from stockade.outbound.signing import (
    SECRET_PATTERN,
    URL_PATTERN,
    check_url,
    secret_key,
    sign,
)
from tests.standard_webhooks import signature_is_valid


def test_the_signature_is_the_standard_webhooks_one():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the spec's example secret
    body = b'{"seq":5,"type":"order.placed"}'
    signature = sign(secret_key(secret), "5", "1674087231", body)
    headers = {"webhook-id": "5", "webhook-timestamp": "1674087231"}
    assert signature.startswith("v1,")
    assert signature_is_valid({**headers, "webhook-signature": signature}, body, secret)
    for wrong in ({**headers, "webhook-timestamp": "1674087232"}, {**headers, "webhook-id": "6"}):
        assert not signature_is_valid({**wrong, "webhook-signature": signature}, body, secret)
    other = "whsec_" + "A" * 32
    assert not signature_is_valid({**headers, "webhook-signature": signature}, body, other)


def secret_of(size: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(size))).decode()


@pytest.mark.parametrize("size", [24, 25, 26, 32, 48, 62, 63, 64])
def test_secrets_of_24_to_64_bytes_are_accepted(size):
    assert secret_key(secret_of(size)) == bytes(range(size))
    assert re.search(SECRET_PATTERN, secret_of(size))
    assert jsonschema_rs.validator_for({"pattern": SECRET_PATTERN}).is_valid(secret_of(size))


BAD_SECRETS = [
    secret_of(23), secret_of(65), secret_of(32)[:-1], secret_of(32) + "\n",
    secret_of(32).replace("whsec_", ""), secret_of(32).replace("whsec_", "WHSEC_"),
    "whsec_" + "-" * 44, "whsec_" + base64.urlsafe_b64encode(b"\xff" * 33).decode(), "",
]  # fmt: skip


@pytest.mark.parametrize("secret", BAD_SECRETS)
def test_other_secrets_are_refused_by_the_server_and_the_pattern(secret):
    with pytest.raises(InvalidRequest):
        secret_key(secret)
    assert not re.search(SECRET_PATTERN, secret)
    assert not jsonschema_rs.validator_for({"pattern": SECRET_PATTERN}).is_valid(secret)


GOOD_URLS = [
    "http://127.0.0.1:8080/hooks", "https://shop.example.com/stockade?k=v&x=%2F",
    "http://localhost", "http://a/", "https://xn--bcher-kva.example:443/a/b;c@d?x?y",
    "http://255.255.255.255:65535/",
]  # fmt: skip
BAD_URLS = [
    "ftp://example.com/", "http://", "http://exa mple.com/", "http://example.com/#frag",
    "http://user:pw@example.com/", "http://999.1.1.1/", "http://1.2.3/", "http://x:0/",
    "http://x:65536/", "http://[::1]/", "HTTP://example.com/", "http://example.com/\n",
    "http://-a.com/", "http://a.com/%zz", "http://a.com/" + "x" * 2000, "javascript:alert(1)",
]  # fmt: skip


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_urls_are_accepted_everywhere(url):
    assert check_url(url) == url
    assert jsonschema_rs.validator_for({"pattern": URL_PATTERN}).is_valid(url)
    httpx.URL(url)


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls_are_refused_by_the_server_and_the_pattern(url):
    with pytest.raises(InvalidRequest):
        check_url(url)
    schema = {"pattern": URL_PATTERN, "maxLength": 2000}
    assert not jsonschema_rs.validator_for(schema).is_valid(url)


@settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)
@given(st.from_regex(URL_PATTERN).filter(lambda url: len(url) <= 2000))
def test_every_url_the_pattern_admits_is_one_httpx_can_post_to(url):
    check_url(url)
    assert jsonschema_rs.validator_for({"pattern": URL_PATTERN}).is_valid(url)
    parsed = httpx.URL(url)
    assert parsed.scheme in ("http", "https") and parsed.host
