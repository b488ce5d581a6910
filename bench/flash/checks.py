"""The flash sale's verification: after every hold has ended, the shop's books and each
order's final status are compared with what the shoppers were told."""

from __future__ import annotations

from collections import Counter

from bench.flash.sale import EXTRA, SKU, Sale, Shop

__all__ = ["check"]


async def check(shop: Shop, sale: Sale) -> list[str]:
    """The problems found (none when the sale verifies): oversold, units still reserved, units
    lost or invented (of the product on sale, and with carts of the accessory), orders ending
    other than as told, and payments accepted late. Asks the shop for its levels and for every
    order's status, one call after another."""
    config = sale.config
    problems = [f"{len(sale.errors)} calls failed, e.g. {sale.errors[0]}"] if sale.errors else []
    products = [(SKU, config.units, sale.sold)]
    if config.carts:
        products.append((EXTRA, config.extra_units, sale.sold_extra))
    for sku, units, sold in products:
        problems += _check_units(sku, units, sold, *await shop.level(sku))
    wrong = Counter[str]()
    for order_id, expected in sale.expected.items():
        status = await shop.status(order_id)
        if status != expected:
            wrong[f"{expected} -> {status}"] += 1
    if wrong:
        problems.append(
            f"orders whose final status differs from what shoppers were told: {dict(wrong)}"
        )
    if sale.confirmed_late:
        problems.append(
            f"{len(sale.confirmed_late)} orders confirmed after their hold expired, "
            f"e.g. {sale.confirmed_late[0]}"
        )
    if sale.late_refused != sale.fates["late"]:
        problems.append(f"{sale.fates['late'] - sale.late_refused} late payments were accepted")
    return problems


def _check_units(sku: str, units: int, sold: int, on_hand: int, reserved: int) -> list[str]:
    """One product's books: never more sold than stocked, nothing left reserved, and every
    unit either sold or back on hand."""
    problems = []
    if sold > units:
        problems.append(f"OVERSOLD: {sku}: {sold} units sold of {units}")
    if reserved != 0:
        problems.append(f"{sku}: {reserved} units still reserved after every hold ended")
    if on_hand + sold != units:
        problems.append(
            f"{sku}: units lost or invented: {on_hand} on hand + {sold} sold != {units}"
        )
    return problems
