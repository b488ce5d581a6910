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
import math
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from stockade._open import EngineOptions
from stockade.engine.allocation import STRATEGIES
from stockade.errors import InvalidRequest

if TYPE_CHECKING:  # the HTTP layer: imported only by the commands that serve it
    from stockade.api.bounds import HoldBounds

__all__ = [
    "BURST_SECONDS",
    "ENGINE_FLAGS",
    "add_engine_flags",
    "add_public_hold_flags",
    "engine_flag_args",
    "engine_options",
    "hold_bounds",
    "parse_duration",
    "public_hold_flag_args",
    "positive_integer",
    "positive_number",
]

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


#: Seconds of steady rate an anonymous client may spend at once (its bucket's size).
BURST_SECONDS = 4
#: The longest hold any HTTP body may ask for (the schema's bound on ``hold_seconds``).
_LONGEST_HTTP_HOLD = timedelta(days=1)


def positive_integer(variable: str = "") -> Callable[[str], int]:
    """An argparse type: a positive integer; the error names ``variable`` if given."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"must be a positive integer, not {text!r}{_from(variable)}"
            )
        return value

    return parse


def positive_number(what: str, variable: str = "") -> Callable[[str], float]:
    """An argparse type: a positive, finite number of ``what``; the error names ``variable``
    if given."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(
                f"must be a positive number of {what}, not {text!r}{_from(variable)}"
            )
        return value

    return parse


def _from(variable: str) -> str:
    return f" (from the flag or {variable})" if variable else ""


def _hold_length(text: str) -> timedelta:
    span = _duration("--public-max-hold", "STOCKADE_PUBLIC_MAX_HOLD")(text)
    if span < timedelta(seconds=1) or span > _LONGEST_HTTP_HOLD:
        raise argparse.ArgumentTypeError(
            f"must be from 1s to 1d (the longest hold a body may ask for), not {text!r} (from "
            "the flag or STOCKADE_PUBLIC_MAX_HOLD)"
        )
    return span


def _forwarded(text: str) -> str:
    value = text.strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return ""
    if value in ("1", "yes", "true", "on"):
        return "x-forwarded-for"
    if value not in ("x-forwarded-for", "forwarded"):
        raise argparse.ArgumentTypeError(
            f"must be x-forwarded-for or forwarded, not {text!r} (from the flag or "
            "STOCKADE_TRUST_FORWARDED)"
        )
    return value


def _networks(text: str) -> tuple[str, ...]:
    from stockade.api.bounds import parse_networks

    try:
        return parse_networks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc} (from the flag or STOCKADE_TRUSTED_PROXIES)"
        ) from None


def add_public_hold_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Add the bounds on anonymous holds (``serve --public-holds``, design.md §13) and how the
    client's address is found, each defaulting to its ``STOCKADE_*`` variable in ``environ``,
    then to :class:`~stockade.api.bounds.HoldBounds`' default."""
    group = parser.add_argument_group(
        "anonymous holds (with --public-holds)",
        "bounds on callers without a key; callers with a key are never bounded",
    )
    group.add_argument(
        "--public-max-units", type=positive_integer("STOCKADE_PUBLIC_MAX_UNITS"),
        default=environ.get("STOCKADE_PUBLIC_MAX_UNITS", "10"), metavar="N",
        help="units of one sku per line, at most; more is 422 (env STOCKADE_PUBLIC_MAX_UNITS;"
        " default 10)",
    )  # fmt: skip
    group.add_argument(
        "--public-max-hold", type=_hold_length,
        default=environ.get("STOCKADE_PUBLIC_MAX_HOLD", "15m"), metavar="DURATION",
        help="longest hold (placing or extending), at most 1d; longer is 422 (env "
        "STOCKADE_PUBLIC_MAX_HOLD; default 15m)",
    )  # fmt: skip
    group.add_argument(
        "--public-max-open", type=positive_integer("STOCKADE_PUBLIC_MAX_OPEN"),
        default=environ.get("STOCKADE_PUBLIC_MAX_OPEN", "10"), metavar="N",
        help="open holds per client address, counted by the engine; more is 429 (env "
        "STOCKADE_PUBLIC_MAX_OPEN; default 10)",
    )  # fmt: skip
    group.add_argument(
        "--public-rate", type=positive_number("requests a second", "STOCKADE_PUBLIC_RATE"),
        default=environ.get("STOCKADE_PUBLIC_RATE", "5"), metavar="PER_SECOND",
        help=f"requests a second per client address, in bursts of {BURST_SECONDS} seconds' "
        "worth, per front process; more is 429 (env STOCKADE_PUBLIC_RATE; default 5)",
    )  # fmt: skip
    group.add_argument(
        "--trust-forwarded", type=_forwarded, nargs="?", const="x-forwarded-for",
        default=environ.get("STOCKADE_TRUST_FORWARDED", ""), metavar="HEADER",
        help="behind a proxy: read the client address from the header it writes, "
        "x-forwarded-for (the default when given alone) or forwarded; never without this "
        "(env STOCKADE_TRUST_FORWARDED)",
    )  # fmt: skip
    group.add_argument(
        "--trusted-proxies", type=_networks,
        default=environ.get("STOCKADE_TRUSTED_PROXIES", ""), metavar="NETWORKS",
        help="comma-separated networks of further proxies in that header's chain, skipped "
        "from the right (env STOCKADE_TRUSTED_PROXIES)",
    )  # fmt: skip


def hold_bounds(args: argparse.Namespace) -> HoldBounds:
    """The :class:`~stockade.api.bounds.HoldBounds` the flags of
    :func:`add_public_hold_flags` asked for."""
    from stockade.api.bounds import HoldBounds

    rate: float = args.public_rate
    return HoldBounds(
        max_units=args.public_max_units,
        max_hold_s=int(args.public_max_hold.total_seconds()),
        max_open=args.public_max_open,
        rate=rate,
        burst=max(1, math.ceil(rate * BURST_SECONDS)),
        trust_forwarded=args.trust_forwarded,
        trusted_proxies=args.trusted_proxies,
    )


def engine_flag_args(options: EngineOptions) -> list[str]:
    """The flags of :func:`add_engine_flags` that ask for ``options``: what ``serve --workers``
    hands its engine process, so flags given to it reach the engine as its variables do."""
    args = [
        f"{flag}={getattr(options, field).total_seconds()!r}"
        for flag, (field, _, _) in ENGINE_FLAGS.items()
    ]
    return [*args, f"--allocation={options.allocation}"]


def public_hold_flag_args(bounds: HoldBounds) -> list[str]:
    """The flags of :func:`add_public_hold_flags` that ask for ``bounds``: what ``serve
    --workers`` hands every front."""
    args = [
        f"--public-max-units={bounds.max_units}",
        f"--public-max-hold={bounds.max_hold_s}",
        f"--public-max-open={bounds.max_open}",
        f"--public-rate={bounds.rate!r}",
        f"--trust-forwarded={bounds.trust_forwarded or 'off'}",
    ]
    if bounds.trusted_proxies:
        args.append(f"--trusted-proxies={','.join(bounds.trusted_proxies)}")
    return args
