"""A flash sale with payments, in real time, that checks itself.

    python -m bench flash-sale [--target embedded|http|both] [--shoppers N] [--units N]
                               [--hold-s S] [--fail P] [--abandon P] [--late P] [--carts]
                               [--quick] [--workers N]

``shoppers`` arrive in a burst of ``burst_s`` seconds for ``units`` units of one product. Each
places a hold of ``hold_s`` seconds; a shopper told "out of stock" comes back later (stock
freed by failed or abandoned payments returns) up to ``retries`` times, then gives up. A
shopper with a hold then pays: the payment succeeds (confirm), fails (cancel, share ``fail``),
never arrives (share ``abandon``: the hold expires), or arrives after the hold expired (share
``late``: the confirm must be refused). With ``--carts`` a shopper with a hold first edits the
cart (``change_order``): an accessory goes in (half as many units as the sale's), a quarter
also take a second unit, three in ten then take one line back out; then the hold is extended
once (``extend``) before the payment. An edit refused for short stock leaves the cart as it
was. After the last shopper, the sale waits for every hold's expiry and checks, against the
shop itself:

* units sold <= units, and every unit is either sold or back on hand (none left reserved),
  for the product on sale and (with carts) the accessory;
* each order's final status is what its shopper was told (confirmed, cancelled, expired);
* no confirm sent after its hold's ``expires_at`` was accepted, and every late payment was
  refused.

It runs against the embedded engine (memory, or ``--database``) and against ``stockade serve``
over HTTP (durable SQLite), and prints a report per target. ``--workers N`` runs the HTTP target
twice, one after the other: ``serve`` as one process and ``serve --workers N``, then compares
the payments sent in time that reached the server after their hold expired, and the shoppers'
p99, of the two. Exits 1 if a check fails. Over
HTTP, carts need the server's ``PATCH /v1/orders/{id}`` and ``POST /v1/orders/{id}/extend``;
the sale asks for them first and, where they are missing, runs without edits and says so.
"""

from __future__ import annotations

import argparse

import anyio

from bench.flash.report import print_comparison, print_report
from bench.flash.sale import Sale, SaleConfig, Shop
from bench.flash.shops import sale_embedded, sale_http
from bench.flash.simulation import run_sale

__all__ = ["Sale", "SaleConfig", "Shop", "main", "run_sale"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench flash-sale", description="A flash sale with payments, self-checking."
    )
    defaults = SaleConfig()
    parser.add_argument("--target", choices=["embedded", "http", "both"], default="both")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 shoppers for 100 units, holds of 1 s (a smoke run)",
    )
    parser.add_argument("--shoppers", type=int)
    parser.add_argument("--units", type=int)
    parser.add_argument("--hold-s", type=int, help=f"hold length (default {defaults.hold_s})")
    parser.add_argument("--fail", type=float, default=defaults.fail)
    parser.add_argument("--abandon", type=float, default=defaults.abandon)
    parser.add_argument("--late", type=float, default=defaults.late)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--carts", action="store_true", help="shoppers edit their carts and extend once"
    )
    parser.add_argument("--database", help="embedded target's database URL (default memory)")
    parser.add_argument(
        "--connections", type=int, default=64, help="HTTP target: shoppers' keep-alive connections"
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="HTTP target: also run it with serve --workers N, and compare",
    )  # fmt: skip
    args = parser.parse_args(argv)
    quick = SaleConfig(shoppers=1_000, units=100, hold_s=1, burst_s=0.2)
    base = quick if args.quick else defaults
    config = SaleConfig(
        shoppers=base.shoppers if args.shoppers is None else args.shoppers,
        units=base.units if args.units is None else args.units,
        hold_s=base.hold_s if args.hold_s is None else args.hold_s,
        burst_s=base.burst_s,
        fail=args.fail,
        abandon=args.abandon,
        late=args.late,
        seed=args.seed,
        carts=args.carts,
    )
    config.check()
    sales = []
    if args.target in ("embedded", "both"):
        sales.append(anyio.run(sale_embedded, config, args.database, backend="trio"))
        print_report(sales[-1])
    if args.target in ("http", "both"):
        over_http = []
        for workers in sorted({1, args.workers}):
            over_http.append(sale_http(config, args.connections, workers))
            print_report(over_http[-1])
        if len(over_http) > 1:
            print_comparison(over_http)
        sales += over_http
    return 1 if any(sale.problems for sale in sales) else 0
