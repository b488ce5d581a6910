"""Sink URLs: what each scheme's URL names, and a password never shown back."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.errors import InvalidRequest
from stockade.outbound.sinks import Sink
from stockade.outbound.sinkurl import SinkTarget, mask, parse
from stockade.persistence.sinks import SinkRecord


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("nats://127.0.0.1:4222/shop.events",
         SinkTarget("nats", "127.0.0.1", 4222, None, None, "shop.events")),
        ("nats://u:p@nats.internal/a_b-c",
         SinkTarget("nats", "nats.internal", 4222, "u", "p", "a_b-c")),
        ("redis://127.0.0.1:6380/3?stream=shop:events",
         SinkTarget("redis", "127.0.0.1", 6380, None, None, "shop:events", database=3)),
        ("redis://:pw@cache?stream=s",
         SinkTarget("redis", "cache", 6379, "", "pw", "s")),
        ("amqp://guest:guest@127.0.0.1:5672/%2F?exchange=shop",
         SinkTarget("amqp", "127.0.0.1", 5672, "guest", "guest", "shop", vhost="/")),
        ("amqp://u:p%40ss@rabbit/prod?exchange=orders.v1",
         SinkTarget("amqp", "rabbit", 5672, "u", "p@ss", "orders.v1", vhost="prod")),
        ("amqp://u:p@rabbit?exchange=x",
         SinkTarget("amqp", "rabbit", 5672, "u", "p", "x", vhost="/")),
    ],
)  # fmt: skip
def test_each_scheme_names_its_target(url, target):
    assert parse(url) == target


def test_anything_but_a_string_is_refused():
    for value in (None, 5, b"nats://h/a", ["nats://h/a"]):
        with pytest.raises(InvalidRequest, match="non-empty string"):
            parse(value)


_PASSWORDS = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=" "), min_size=1
)


@given(password=_PASSWORDS, scheme=st.sampled_from(["nats", "redis", "amqp"]))
def test_a_password_is_read_whole_and_never_shown(password, scheme):
    encoded = quote(password, safe="")
    tail = {"nats": "/a.b", "redis": "/0?stream=s", "amqp": "/%2F?exchange=x"}[scheme]
    url = f"{scheme}://user:{encoded}@127.0.0.1:1{tail}"
    assert parse(url).password == password
    shown = mask(url)
    assert shown == f"{scheme}://user:***@127.0.0.1:1{tail}"
    assert parse(shown).password == "***"  # what is shown still reads as a URL


def test_a_url_without_a_password_is_shown_as_it_is():
    for url in ("nats://127.0.0.1/a", "redis://h/0?stream=a@b", "amqp://guest@h?exchange=x"):
        assert mask(url) == url


def test_an_error_that_quotes_the_url_is_scrubbed_of_the_password():
    url = "amqp://shop:p%40ss%2Fw0rd@127.0.0.1:1/%2F?exchange=x"
    sink = Sink(SinkRecord("s", url, None, 0, 1.0, 1.0))
    said = sink.scrub(f"cannot connect to {url} (password p@ss/w0rd)")
    assert "p@ss" not in said and "p%40ss" not in said and said.count("***") == 2
