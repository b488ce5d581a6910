"""``stockade serve``'s options reach ServerSettings; bad ones are refused before anything runs."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

import stockade
import stockade.api.server
from stockade._open import EngineOptions, open_engine_and_store
from stockade.api.bounds import HoldBounds
from stockade.api.server import ServerSettings
from stockade.cli import main
from stockade.options import hold_bounds, parse_duration


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


_ENGINE_VARIABLES = ("STOCKADE_MAX_HOLD", "STOCKADE_MAX_HOLD_LIFETIME", "STOCKADE_ALLOCATION",
                     "STOCKADE_IDEMPOTENCY_WINDOW", "STOCKADE_EVENT_RETENTION")  # fmt: skip


def test_engine_options_from_the_flags_the_environment_or_the_defaults(served, monkeypatch):
    for variable in _ENGINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert main(["serve"]) == 0
    assert main(["serve", "--max-hold", "15m", "--max-hold-lifetime", "2h",
                 "--allocation", "most_available", "--idempotency-window", "1h30m",
                 "--event-retention", "3d"]) == 0  # fmt: skip
    monkeypatch.setenv("STOCKADE_MAX_HOLD", "90")
    monkeypatch.setenv("STOCKADE_ALLOCATION", "most_available")
    monkeypatch.setenv("STOCKADE_EVENT_RETENTION", "250ms")
    assert main(["serve", "--max-hold", "45s"]) == 0  # the flag wins over the variable
    default, flagged, mixed = (s.engine_options for s in served)
    assert default == EngineOptions()
    assert (flagged.max_hold, flagged.max_hold_lifetime, flagged.allocation,
            flagged.idempotency_ttl, flagged.event_retention) == (
        timedelta(minutes=15), timedelta(hours=2), "most_available",
        timedelta(minutes=90), timedelta(days=3))  # fmt: skip
    assert (mixed.max_hold, mixed.allocation, mixed.event_retention) == (
        timedelta(seconds=45),
        "most_available",
        timedelta(milliseconds=250),
    )


@pytest.mark.parametrize(
    ("argv", "env", "said"),
    [
        (["--max-hold", "soon"], {}, "argument --max-hold: not a duration: 'soon'"),
        (["--max-hold-lifetime", "0"], {}, "--max-hold-lifetime: must be a positive duration"),
        (["--idempotency-window=-5m"], {}, "--idempotency-window: not a duration"),
        (["--event-retention", "7 days"], {}, "--event-retention: not a duration"),
        (["--allocation", "nearest"], {}, "--allocation: must be one of priority, most_avail"),
        ([], {"STOCKADE_MAX_HOLD": "1y"}, "--max-hold: not a duration: '1y'"),
        ([], {"STOCKADE_ALLOCATION": "x"}, "or STOCKADE_ALLOCATION"),
        ([], {"STOCKADE_EVENT_RETENTION": "0s"}, "or STOCKADE_EVENT_RETENTION"),
    ],
)
def test_a_bad_engine_option_is_refused(served, capsys, monkeypatch, argv, env, said):
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", *argv])
    assert exit_.value.code == 2
    assert said in capsys.readouterr().err
    assert served == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("0.5", 0.5), ("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800),
     ("1h30m", 5400), ("250ms", 0.25), (" 2H ", 7200)],
)  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


async def test_the_options_reach_the_engine_serve_opens(tmp_path):
    """What serve passes on is what the engine enforces: a hold over --max-hold is refused."""
    settings = ServerSettings(engine_options=EngineOptions(max_hold=timedelta(seconds=60)))
    async with open_engine_and_store(None, options=settings.engine_options) as (engine, _):
        await engine.set_stock("a", 5)
        with pytest.raises(stockade.InvalidRequest, match="hold"):
            await engine.place_order({"a": 1}, hold_for=61)
        assert (await engine.place_order({"a": 1}, hold_for=60)).status == "reserved"


_BOUND_VARIABLES = ("STOCKADE_PUBLIC_MAX_UNITS", "STOCKADE_PUBLIC_MAX_HOLD",
                    "STOCKADE_PUBLIC_MAX_OPEN", "STOCKADE_PUBLIC_RATE",
                    "STOCKADE_TRUST_FORWARDED", "STOCKADE_TRUSTED_PROXIES")  # fmt: skip


def test_public_hold_bounds_from_the_flags_the_environment_or_the_defaults(served, monkeypatch):
    for variable in _BOUND_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert main(["serve", "--public-holds"]) == 0
    assert main(["serve", "--public-max-units", "2", "--public-max-hold", "5m",
                 "--public-max-open", "3", "--public-rate", "0.5", "--trust-forwarded",
                 "--trusted-proxies", "10.0.0.0/8, 2001:db8::1"]) == 0  # fmt: skip
    monkeypatch.setenv("STOCKADE_TRUST_FORWARDED", "forwarded")
    monkeypatch.setenv("STOCKADE_PUBLIC_MAX_OPEN", "7")
    assert main(["serve"]) == 0
    default, flagged, env = (s.bounds for s in served)
    assert default == HoldBounds()
    assert (default.max_units, default.max_hold_s, default.max_open, default.rate,
            default.burst, default.trust_forwarded) == (10, 900, 10, 5.0, 20, "")  # fmt: skip
    assert flagged == HoldBounds(max_units=2, max_hold_s=300, max_open=3, rate=0.5, burst=2,
                                 trust_forwarded="x-forwarded-for",
                                 trusted_proxies=("10.0.0.0/8", "2001:db8::1/128"))  # fmt: skip
    assert (env.trust_forwarded, env.max_open) == ("forwarded", 7)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--public-max-units", "0"], "--public-max-units: must be a positive integer"),
        (["--public-max-open", "many"], "--public-max-open: must be a positive integer"),
        (["--public-max-hold", "2d"], "--public-max-hold: must be from 1s to 1d"),
        (["--public-max-hold", "later"], "--public-max-hold: not a duration"),
        (["--public-rate", "0"], "--public-rate: must be a positive number"),
        (["--trust-forwarded", "x-real-ip"], "--trust-forwarded: must be x-forwarded-for or"),
        (["--trusted-proxies", "10.0.0.0/8,nope"], "not a network or address: 'nope'"),
    ],
)
def test_a_bad_public_hold_bound_is_refused(served, capsys, argv, said):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", *argv])
    assert exit_.value.code == 2
    assert said in capsys.readouterr().err
    assert served == []


def test_stockade_engine_takes_the_same_engine_flags(monkeypatch, capsys):
    import stockade.engine_process.main as engine_process

    seen: list[EngineOptions] = []

    def fake_main(database, durability, listen, options):
        seen.append(options)
        return 0

    monkeypatch.setattr(engine_process, "main", fake_main)
    monkeypatch.setenv("STOCKADE_EVENT_RETENTION", "2d")
    assert main(["engine", "--max-hold", "10m", "--allocation", "most_available"]) == 0
    (options,) = seen
    assert (options.max_hold, options.allocation, options.event_retention) == (
        timedelta(minutes=10), "most_available", timedelta(days=2))  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(["engine", "--idempotency-window", "forever"])
    assert exit_.value.code == 2 and "--idempotency-window" in capsys.readouterr().err


def test_serve_workers_hands_its_engine_and_fronts_the_flags_it_was_given(monkeypatch):
    """--workers N runs `stockade engine` and N fronts as children: flags given to serve must
    reach them (variables do, by inheritance), and mean there what they meant here."""
    import stockade.fronts.supervisor as supervisor
    from stockade.options import add_engine_flags, add_public_hold_flags, engine_options

    seen: list[supervisor.SupervisorSettings] = []

    async def fake_supervise(settings: supervisor.SupervisorSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(supervisor, "supervise", fake_supervise)
    monkeypatch.setenv("STOCKADE_ADMIN_TOKEN", "t")
    flags = ["--max-hold", "10m", "--allocation", "most_available", "--event-retention", "2d",
             "--public-max-open", "3", "--public-rate", "0.5", "--trust-forwarded", "forwarded",
             "--trusted-proxies", "10.0.0.0/8"]  # fmt: skip
    assert main(["serve", "--workers", "2", "--public-holds", *flags]) == 0
    (settings,) = seen
    engine_side = argparse.ArgumentParser()
    add_engine_flags(engine_side, {})
    passed = engine_options(engine_side, engine_side.parse_args(list(settings.engine_args)))
    assert (passed.max_hold, passed.allocation, passed.event_retention) == (
        timedelta(minutes=10), "most_available", timedelta(days=2))  # fmt: skip
    front_side = argparse.ArgumentParser()
    add_public_hold_flags(front_side, {})
    known, _ = front_side.parse_known_args(list(settings.front_args))
    assert hold_bounds(known) == HoldBounds(max_open=3, rate=0.5, burst=2,
                                            trust_forwarded="forwarded",
                                            trusted_proxies=("10.0.0.0/8",))  # fmt: skip
    assert "--public-holds" in settings.front_args
