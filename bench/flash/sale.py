"""What a flash sale is: its configuration, the shop a shopper talks to, and the record of what
happened as the shoppers saw it. No I/O here."""

from __future__ import annotations

import abc
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["EXTRA", "SKU", "Sale", "SaleConfig", "Shop"]

#: the product on sale; with carts, shoppers also add ``EXTRA`` (an accessory, fewer units)
SKU = "flash-drop"
EXTRA = "flash-extra"


@dataclass(frozen=True)
class SaleConfig:
    shoppers: int = 10_000
    units: int = 1_000
    hold_s: int = 5
    burst_s: float = 0.5
    fail: float = 0.2
    abandon: float = 0.1
    late: float = 0.05
    retries: int = 3
    seed: int = 1
    #: shoppers edit their carts (add the accessory, some take a second unit, some change their
    #: mind) and extend their hold once before paying
    carts: bool = False

    @property
    def extra_units(self) -> int:
        """The accessory's stock (carts only): half the sale's, so that it sells out too."""
        return max(1, self.units // 2) if self.carts else 0

    def check(self) -> None:
        if self.shoppers < 1 or self.units < 1 or self.hold_s < 1:
            raise SystemExit("shoppers, units and hold seconds must be at least 1")
        shares = (self.fail, self.abandon, self.late)
        if any(not 0 <= s <= 1 for s in shares) or sum(shares) > 1:
            raise SystemExit("--fail, --abandon and --late are shares from 0 to 1, summing to <= 1")


class Shop(abc.ABC):
    """What a shopper can do; one implementation per target. A shop whose ``carts`` is False
    cannot change or extend a hold (:meth:`change` and :meth:`extend` are not called)."""

    carts: bool = False

    @abc.abstractmethod
    async def hold(self, hold_s: int) -> tuple[str, float] | None:
        """Hold one unit: (order id, expires_at as UNIX time), or None when out of stock."""

    @abc.abstractmethod
    async def confirm(self, order_id: str) -> bool:
        """Pay: True when confirmed, False when refused (the hold expired)."""

    @abc.abstractmethod
    async def cancel(self, order_id: str) -> str:
        """Cancel; returns the order's status after it (``expired`` when the hold had already
        lapsed: cancelling is idempotent and never an error)."""

    @abc.abstractmethod
    async def status(self, order_id: str) -> str: ...

    @abc.abstractmethod
    async def level(self, sku: str = SKU) -> tuple[int, int]:
        """(on_hand, reserved) of the product."""

    async def change(self, order_id: str, lines: dict[str, int]) -> bool:
        """Replace the held order's lines: True when changed, False when refused (out of
        stock, or the hold lapsed), the order then as it was."""
        raise NotImplementedError("this shop has no carts")

    async def extend(self, order_id: str, hold_s: int) -> float | None:
        """Extend the hold by ``hold_s`` from now: the new expires_at (UNIX time), or None
        when refused (the hold lapsed)."""
        raise NotImplementedError("this shop has no carts")


@dataclass
class Sale:
    """What happened, as the shoppers saw it."""

    config: SaleConfig
    target: str
    started: float = 0.0
    first_refusal_s: float | None = None
    sold_out_s: float | None = None
    holds: int = 0
    refusals: int = 0
    gave_up: int = 0
    overloaded: int = 0
    #: units sold of SKU, and of EXTRA
    sold: int = 0
    sold_extra: int = 0
    #: cart edits made and refused, extensions granted and refused
    edits: int = 0
    edits_refused: int = 0
    extended: int = 0
    extend_refused: int = 0
    #: why cart edits were skipped, if they were
    carts_skipped: str = ""
    #: order id -> the status its shopper was told it would end in
    expected: dict[str, str] = field(default_factory=dict)
    fates: Counter[str] = field(default_factory=Counter)
    late_refused: int = 0
    timely_refused: int = 0
    #: order ids confirmed although the confirm was sent after expires_at
    confirmed_late: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_expiry: float = 0.0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    latency_note: str = ""
    #: HTTP: how long each request held its connection (the server's share of the latency)
    request_latencies_s: list[float] = field(default_factory=list)
