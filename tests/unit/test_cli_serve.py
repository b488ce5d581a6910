"""``stockade serve``'s options reach ServerSettings; bad ones are refused before anything runs."""

from __future__ import annotations

import pytest

import stockade.api.server
from stockade.api.server import ServerSettings
from stockade.cli import main


@pytest.fixture
def served(monkeypatch) -> list[ServerSettings]:
    """The settings `serve` would have run with (nothing is served)."""
    seen: list[ServerSettings] = []

    async def fake_serve(settings: ServerSettings) -> None:
        seen.append(settings)

    monkeypatch.setattr(stockade.api.server, "serve", fake_serve)
    monkeypatch.setenv("STOCKADE_ADMIN_TOKEN", "t")
    monkeypatch.delenv("STOCKADE_READ_TIMEOUT", raising=False)
    return seen


def test_read_timeout_from_the_flag_the_environment_or_the_default(served, monkeypatch):
    assert main(["serve", "--read-timeout", "0.5"]) == 0
    monkeypatch.setenv("STOCKADE_READ_TIMEOUT", "7")
    assert main(["serve"]) == 0
    monkeypatch.delenv("STOCKADE_READ_TIMEOUT")
    assert main(["serve"]) == 0
    assert [s.read_timeout_s for s in served] == [0.5, 7.0, ServerSettings().read_timeout_s]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_read_timeout_is_refused(served, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--read-timeout", value])
    assert exit_.value.code == 2
    assert "--read-timeout: must be a positive number of seconds" in capsys.readouterr().err
    assert served == []


def test_stream_bounds_from_the_flags_or_the_environment(served, monkeypatch):
    assert main(["serve", "--max-streams", "3", "--stream-lifetime", "0.5"]) == 0
    monkeypatch.setenv("STOCKADE_MAX_STREAMS", "7")
    monkeypatch.setenv("STOCKADE_STREAM_LIFETIME", "60")
    assert main(["serve"]) == 0
    assert [(s.feed.max_streams, s.feed.lifetime_s) for s in served] == [(3, 0.5), (7, 60.0)]


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_a_bad_stream_bound_is_refused(served, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--max-streams", value])
    assert exit_.value.code == 2
    assert "--max-streams: must be a positive integer" in capsys.readouterr().err
    assert served == []
