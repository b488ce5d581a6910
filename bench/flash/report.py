"""The flash sale's printed report: one block per target."""

from __future__ import annotations

from collections import Counter

from bench.flash.sale import Sale
from bench.runner import percentile

__all__ = ["print_comparison", "print_report"]


def print_report(sale: Sale) -> None:
    config = sale.config
    latencies = sorted(sale.latencies_s)

    def at(seconds: float | None) -> str:
        return "never" if seconds is None else f"{seconds:.2f} s"

    print(
        f"\nflash sale, {sale.target}: {config.shoppers:,} shoppers for {config.units:,} units, "
        f"holds of {config.hold_s} s, burst {config.burst_s} s; payments fail "
        f"{config.fail:.0%}, never arrive {config.abandon:.0%}, arrive late {config.late:.0%}"
    )
    print(f"  units sold              {sale.sold:,} of {config.units:,}")
    if config.carts:
        print(f"  accessories sold        {sale.sold_extra:,} of {config.extra_units:,}")
        if sale.carts_skipped:
            print(f"  carts                   {sale.carts_skipped}")
        else:
            print(
                f"  cart edits              {sale.edits:,} ({sale.edits_refused:,} refused), "
                f"holds extended {sale.extended:,} ({sale.extend_refused:,} refused)"
            )
    print(f"  first 'out of stock'    {at(sale.first_refusal_s)} after the start")
    print(f"  all units sold          {at(sale.sold_out_s)} after the start")
    print(
        f"  holds placed            {sale.holds:,} ({sale.refusals:,} refusals, "
        f"{sale.gave_up:,} shoppers gave up, {sale.overloaded:,} overloaded)"
    )
    ended = Counter(sale.expected.values())
    print(
        f"  holds cancelled         {ended['cancelled']:,} ({sale.fates['fails']:,} failed "
        f"payments, {sale.fates['fails'] - ended['cancelled']:,} of them after the hold expired)"
    )
    print(
        f"  holds expired           {ended['expired']:,} ({sale.fates['abandoned']:,} abandoned, "
        f"{sale.fates['late']:,} paid late)"
    )
    print(
        f"  late payments refused   {sale.late_refused:,} of {sale.fates['late']:,}"
        f" (and {sale.timely_refused:,} payments sent in time but judged late)"
    )
    print(
        f"  latency                 {len(latencies):,} calls as shoppers saw them: p50 "
        f"{percentile(latencies, 0.5) * 1000:.1f} ms, p99 "
        f"{percentile(latencies, 0.99) * 1000:.1f} ms, peak "
        f"{(latencies[-1] if latencies else 0) * 1000:.1f} ms{sale.latency_note}"
    )
    if sale.request_latencies_s:
        served = sorted(sale.request_latencies_s)
        print(
            f"  request latency         on the connection: p50 {percentile(served, 0.5) * 1000:.1f}"
            f" ms, p99 {percentile(served, 0.99) * 1000:.1f} ms, peak {served[-1] * 1000:.1f} ms"
        )
    print(f"  sale lasted             {sale.seconds:.1f} s (then waited for the last expiry)")
    print(
        "  verified: sold <= units, every unit sold or back on hand, statuses as told, "
        "nothing confirmed late"
        if not sale.problems
        else "  FAILED:\n    " + "\n    ".join(sale.problems)
    )


def print_comparison(sales: list[Sale]) -> None:
    """One line per HTTP sale: what one process and several workers did to the shoppers."""
    print("\nflash sale over HTTP, side by side:")
    print(f"  {'server':<46}{'paid in time, judged late':>27}{'shoppers p99 ms':>17}")
    for sale in sales:
        p99 = percentile(sorted(sale.latencies_s), 0.99) * 1000
        print(f"  {sale.target:<46}{sale.timely_refused:>27,}{p99:>17,.1f}")
