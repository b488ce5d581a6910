"""The engine's options as command-line flags, defined once for every command that runs one.

``stockade serve`` (one process) and ``stockade engine`` (the engine alone, design.md §12) open
the same engine, so both call :func:`add_engine_flags` on their argparse parser and
:func:`engine_options` on the parsed namespace: one definition of each flag, its
``STOCKADE_*`` variable, its default and its error message.

Each flag falls back to its variable, then to :class:`~stockade._open.EngineOptions`'s default.
A bad value, from the flag or the variable, is a usage error (argparse's exit status 2) that
names both the flag and the variable, before anything is opened.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from datetime import timedelta

from stockade._open import EngineOptions
from stockade.engine.allocation import STRATEGIES
from stockade.errors import InvalidRequest

__all__ = ["ENGINE_FLAGS", "add_engine_flags", "engine_options", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_PLAIN = re.compile(r"\d+(?:\.\d+)?")

#: flag -> (EngineOptions field, environment variable, what it sets): the duration flags.
ENGINE_FLAGS: dict[str, tuple[str, str, str]] = {
    "--max-hold": ("max_hold", "STOCKADE_MAX_HOLD", "longest hold one order may ask for"),
    "--max-hold-lifetime": (
        "max_hold_lifetime", "STOCKADE_MAX_HOLD_LIFETIME",
        "how far extending may push a hold from when it was placed",
    ),
    "--idempotency-window": (
        "idempotency_ttl", "STOCKADE_IDEMPOTENCY_WINDOW",
        "how long an Idempotency-Key is remembered (and a finished order kept in memory)",
    ),
    "--event-retention": (
        "event_retention", "STOCKADE_EVENT_RETENTION", "how long the change feed keeps events"
    ),
}  # fmt: skip


def parse_duration(text: str) -> timedelta:
    """A positive duration: seconds (``90``, ``0.5``) or numbers with units, largest first or
    in any order (``15m``, ``24h``, ``7d``, ``1h30m``, ``250ms``). Raises ValueError saying
    what is accepted."""
    value = text.strip().lower()
    if _PLAIN.fullmatch(value):
        seconds = float(value)
    else:
        parts = _PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(
                f"not a duration: {text!r} (seconds, or a number with a unit: 90, 90s, 15m, "
                "24h, 7d, 1h30m)"
            )
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not seconds > 0 or seconds > timedelta.max.total_seconds() / 2:
        raise ValueError(f"must be a positive duration, not {text!r}")
    return timedelta(seconds=seconds)


def _duration(flag: str, variable: str) -> Callable[[str], timedelta]:
    def parse(text: str) -> timedelta:
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (from the flag or {variable})") from None

    parse.__name__ = flag.lstrip("-")  # argparse names the type in some messages
    return parse


def _allocation(text: str) -> str:
    if text not in STRATEGIES:
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(STRATEGIES)}, not {text!r} (from the flag or "
            "STOCKADE_ALLOCATION)"
        )
    return text


def _show(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


def add_engine_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Add ``--max-hold``, ``--max-hold-lifetime``, ``--idempotency-window``,
    ``--event-retention`` (durations, see :func:`parse_duration`) and ``--allocation`` to
    ``parser``, each defaulting to its ``STOCKADE_*`` variable in ``environ``, then to
    EngineOptions' default. argparse checks a variable's value as it checks the flag's."""
    group = parser.add_argument_group("engine options")
    defaults = EngineOptions()
    for flag, (field, variable, what) in ENGINE_FLAGS.items():
        default: timedelta = getattr(defaults, field)
        group.add_argument(
            flag,
            type=_duration(flag, variable),
            default=environ.get(variable, _show(default)),
            metavar="DURATION",
            dest=f"engine_{field}",
            help=f"{what} (env {variable}; default {_show(default)})",
        )
    group.add_argument(
        "--allocation",
        type=_allocation,
        default=environ.get("STOCKADE_ALLOCATION", defaults.allocation),
        metavar="|".join(STRATEGIES),
        dest="engine_allocation",
        help="which locations an order takes from first (env STOCKADE_ALLOCATION; default "
        f"{defaults.allocation})",
    )


def engine_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, **more: object
) -> EngineOptions:
    """The EngineOptions the flags of :func:`add_engine_flags` asked for (plus ``more``
    fields). Options that do not fit together (a hold longer than the hold lifetime) are a
    usage error: ``parser.error`` exits with status 2."""
    fields: dict[str, object] = {field: getattr(args, f"engine_{field}")
                                 for field, _, _ in ENGINE_FLAGS.values()}  # fmt: skip
    fields["allocation"] = args.engine_allocation
    fields.update(more)
    options = EngineOptions(**fields)  # type: ignore[arg-type]
    try:
        options.check()
    except InvalidRequest as exc:
        parser.error(str(exc))
    return options
