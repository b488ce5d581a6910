"""The comparison sweep: every contender, workload and concurrency, one run after another.

    python -m bench [--quick] [--contenders a,b] [--workloads a,b] [--callers 1,16,...]
                    [--seconds S] [--out DIR]

Writes ``results.json``, ``throughput.png`` and ``latency.png`` to ``--out``. Without
``--out``, the full default sweep writes to ``docs/bench`` and regenerates the results section of
``docs/benchmarks.md``; any other run (``--quick``, or fewer contenders, workloads, callers, or
other seconds) writes to a temporary directory, so a partial run never replaces the published
figures. Exits 1 when any run FAILED verification.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.contenders import CONTENDERS, Contender
from bench.progress import Progress
from bench.report import PUBLISHED_MARKDOWN, PUBLISHED_OUT, Meta, print_table, write_outputs
from bench.runner import RunResult, run_one
from bench.workloads import WORKLOADS, Workload

__all__ = ["main", "sweep"]

FULL_CALLERS = (1, 16, 64, 256, 1024)
FULL_SECONDS = 2.0
QUICK_CALLERS = (16,)
QUICK_SECONDS = 0.3
#: a calibration run this much shorter than the measured run precedes each one
CALIBRATION_SHARE = 0.25


def sweep(
    contenders: Sequence[Contender],
    workloads: Sequence[Workload],
    callers: Sequence[int],
    seconds: float,
    progress: Progress,
) -> list[RunResult]:
    """Run everything; a contender that cannot start is reported skipped, with the reason."""
    results: list[RunResult] = []
    run_number = 0
    for contender in contenders:
        try:
            skipped = contender.prepare()
        except Exception as exc:  # a server that would not start: report, go on
            skipped = f"could not start: {type(exc).__name__}: {exc}"
            results += [
                RunResult(contender.name, w.name, c, problems=[skipped])
                for w in workloads
                for c in callers
            ]
            progress.advance(len(workloads) * len(callers), f"{contender.name} FAILED")
            continue
        if skipped is not None:
            results += [
                RunResult(contender.name, w.name, c, skipped=skipped)
                for w in workloads
                for c in callers
            ]
            progress.advance(len(workloads) * len(callers), f"{contender.name} skipped")
            continue
        try:
            for workload in workloads:
                for n in callers:
                    run_number += 1
                    label = f"{contender.name} {workload.name} x{n}"
                    progress.show(f"{label} (calibrating)")
                    result = calibrate(contender, workload, n, seconds, f"r{run_number}")
                    if result.verified:
                        progress.show(label)
                        result = run_one(
                            contender, workload, n, seconds, result.rate, f"r{run_number}"
                        )
                    results.append(result)
                    progress.advance(1, f"{label}: {result.status}")
        finally:
            contender.finish()
    progress.close()
    return results


def calibrate(
    contender: Contender, workload: Workload, callers: int, seconds: float, run: str
) -> RunResult:
    """A short run with more stock than it can sell: its rate sizes the stock of the measured
    run that follows, so that every contender sells out its busiest products at about the same
    point of its run (see bench/workloads.py). It is verified like any run; if it fails, its
    result stands in for the measured run."""
    result = run_one(contender, workload, callers, seconds * CALIBRATION_SHARE, None, f"{run}c")
    result.problems = [f"calibration run: {problem}" for problem in result.problems]
    return result


def is_full_sweep(
    quick: bool,
    contenders: Sequence[str],
    workloads: Sequence[str],
    callers: Sequence[int],
    seconds: float,
) -> bool:
    """True for the run whose results are published in docs/ (every contender and workload at
    every default concurrency, default length): only it may replace them by default."""
    return (
        not quick
        and list(contenders) == list(CONTENDERS)
        and list(workloads) == list(WORKLOADS)
        and tuple(callers) == FULL_CALLERS
        and seconds == FULL_SECONDS
    )


def parse_list(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SystemExit(
            f"unknown {what}: {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(known)}"
        )
    return names


def parse_callers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"--callers takes numbers separated by commas, not {text!r}") from None
    if not values or any(not 1 <= v <= 4096 for v in values):
        raise SystemExit("--callers: each count must be from 1 to 4096")
    return values


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Compare stockade with the usual approaches, verified oversell-free.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK_SECONDS}s per run, callers {','.join(map(str, QUICK_CALLERS))}",
    )
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--callers", help="concurrency levels, e.g. 1,16,64,256,1024")
    parser.add_argument("--seconds", type=float, help="length of each run")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"output directory (default: {PUBLISHED_OUT} and {PUBLISHED_MARKDOWN} for the full "
        "default sweep, else a temporary directory)",
    )
    args = parser.parse_args(argv)

    contender_names = parse_list(args.contenders, list(CONTENDERS), "contender")
    workload_names = parse_list(args.workloads, list(WORKLOADS), "workload")
    contenders = [CONTENDERS[n]() for n in contender_names]
    workloads = [WORKLOADS[n] for n in workload_names]
    callers = (
        parse_callers(args.callers)
        if args.callers is not None
        else list(QUICK_CALLERS if args.quick else FULL_CALLERS)
    )
    seconds = args.seconds
    if seconds is None:
        seconds = QUICK_SECONDS if args.quick else FULL_SECONDS
    if not 0 < seconds <= 60:
        raise SystemExit("--seconds must be above 0 and at most 60")
    full = is_full_sweep(args.quick, contender_names, workload_names, callers, seconds)
    out = args.out or (PUBLISHED_OUT if full else Path(tempfile.mkdtemp(prefix="stockade-bench-")))

    started = time.time()
    progress = Progress(len(contenders) * len(workloads) * len(callers))
    results = sweep(contenders, workloads, callers, seconds, progress)
    meta = Meta.now(["python", "-m", "bench", *argv], started, seconds)
    print_table(results)
    markdown = PUBLISHED_MARKDOWN if out == PUBLISHED_OUT else None
    write_outputs(out, meta, results, markdown)
    print(
        f"results: {out}/results.json, plots: {out}/throughput.png, {out}/latency.png"
        + (f", table: {markdown}" if markdown else "")
    )
    failed = [r for r in results if r.status == "FAILED"]
    if failed:
        print(f"\n{len(failed)} run(s) FAILED verification:", file=sys.stderr)
        for r in failed:
            print(
                f"  FAILED {r.contender} {r.workload} x{r.callers}: {'; '.join(r.problems)}",
                file=sys.stderr,
            )
        return 1
    return 0
