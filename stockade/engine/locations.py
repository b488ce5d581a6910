"""Locations and sales channels as a plain, synchronous table. No trio, no clock, no I/O.

The engine owns one :class:`LocationTable` and every product ledger reads it when it answers
(``available`` and allocation look up whether a location is active *then*). That is what makes
deactivating a location O(1) however large the catalogue: its units leave every product's
``available`` at once, in every channel, because availability is decided at read time and no
product is walked. Holds already placed at an inactive location stay valid.
"""

from __future__ import annotations

from collections.abc import Iterable

from stockade.engine.allocation import DEFAULT_LOCATION as ALLOCATION_DEFAULT
from stockade.engine.allocation import STRATEGIES, Strategy
from stockade.engine.changes import ChannelSet, LocationSet
from stockade.engine.models import Channel, Location
from stockade.engine.validation import check_location_id
from stockade.errors import InvalidRequest, UnknownChannel, UnknownLocation

__all__ = [
    "DEFAULT_LOCATION",
    "MAX_CHANNELS",
    "MAX_LOCATIONS",
    "MAX_NAME_LENGTH",
    "MAX_PRIORITY",
    "LocationTable",
    "Where",
]

#: The location every shop has: stock set without naming a location lives here.
DEFAULT_LOCATION = ALLOCATION_DEFAULT
#: Bounds: every product's allocation considers at most this many locations, and a channel
#: names at most this many; the table itself is small next to any catalogue.
MAX_LOCATIONS = 10_000
MAX_CHANNELS = 10_000
MAX_NAME_LENGTH = 200
MAX_PRIORITY = 1_000_000

#: Which locations an order may take from: None (every active location) or a set of ids.
Where = frozenset[str] | None


class LocationTable:
    """Every location and channel. ``inactive`` is the set of inactive location ids (read on
    every take, so kept as a set; ``default_active`` is the hot path's one-attribute check)."""

    def __init__(self, strategy: Strategy = "priority") -> None:
        if strategy not in STRATEGIES:
            raise InvalidRequest(
                f"allocation must be one of {', '.join(STRATEGIES)}, not {strategy!r}"
            )
        self.strategy: Strategy = strategy
        self.locations: dict[str, Location] = {DEFAULT_LOCATION: Location(DEFAULT_LOCATION)}
        self.channels: dict[str, Channel] = {}
        self._channel_sets: dict[str, frozenset[str]] = {}
        self.inactive: set[str] = set()
        self.default_active = True
        self._order: list[str] | None = [DEFAULT_LOCATION]
        self._rank: dict[str, int] | None = None

    # -- reading ------------------------------------------------------------------------------

    def is_active(self, location: str) -> bool:
        return location not in self.inactive

    def order(self) -> list[str]:
        """Every location id in allocation order: ``(priority, id)``."""
        if self._order is None:
            self._order = sorted(self.locations, key=lambda i: (self.locations[i].priority, i))
        return self._order

    def rank(self) -> dict[str, int]:
        """Each location's place in allocation order (cached until a location changes)."""
        if self._rank is None:
            self._rank = {location: i for i, location in enumerate(self.order())}
        return self._rank

    def location(self, location: str) -> Location:
        """The location, or UnknownLocation (InvalidRequest for a malformed id)."""
        found = self.locations.get(location) if type(location) is str else None
        if found is None:
            check_location_id(location)
            raise UnknownLocation(location)
        return found

    def channel(self, channel: str) -> Channel:
        found = self.channels.get(channel) if type(channel) is str else None
        if found is None:
            check_location_id(channel, what="channel id")
            raise UnknownChannel(channel)
        return found

    def where(self, channel: str | None, location: str | None) -> Where:
        """The locations an order in ``channel`` pinned to ``location`` may take from (None:
        any active location). Raises UnknownChannel / UnknownLocation, or InvalidRequest when
        the pinned location is not one the channel sells from."""
        if channel is None and location is None:
            return None
        allowed: frozenset[str] | None = None
        if channel is not None:
            self.channel(channel)
            allowed = self._channel_sets[channel]
        if location is not None:
            self.location(location)
            if allowed is not None and location not in allowed:
                raise InvalidRequest(f"channel {channel!r} does not sell from {location!r}")
            allowed = frozenset((location,))
        return allowed

    # -- changing -----------------------------------------------------------------------------

    def set_location(
        self, location_id: str, name: str, priority: int, active: bool, now: float
    ) -> tuple[Location, LocationSet, bool]:
        """Create or replace a location: (the location, the event, whether it was created)."""
        check_location_id(location_id)
        if type(name) is not str or len(name) > MAX_NAME_LENGTH:
            raise InvalidRequest(f"name must be a string of at most {MAX_NAME_LENGTH} characters")
        if type(priority) is not int or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidRequest(
                f"priority must be an integer from {-MAX_PRIORITY} to {MAX_PRIORITY}"
            )
        if type(active) is not bool:
            raise InvalidRequest("active must be true or false")
        created = location_id not in self.locations
        if created and len(self.locations) >= MAX_LOCATIONS:
            raise InvalidRequest(f"a shop may have at most {MAX_LOCATIONS} locations")
        location = Location(location_id, name, priority, active)
        self.restore_location(location)
        return location, LocationSet(location, now), created

    def update_location(
        self, location_id: str, name: str | None, priority: int | None, active: bool | None,
        now: float,
    ) -> tuple[Location, LocationSet | None, bool]:  # fmt: skip
        """Change only the fields given (not None) of an existing location: (the location,
        the event, False). Nothing given, or nothing different: no event. Raises
        UnknownLocation, InvalidRequest."""
        current = self.location(location_id)
        changed = Location(
            location_id,
            current.name if name is None else name,
            current.priority if priority is None else priority,
            current.active if active is None else active,
        )
        if changed == current:
            return current, None, False
        return self.set_location(location_id, changed.name, changed.priority, changed.active, now)

    def restore_location(self, location: Location) -> None:
        """Put ``location`` in the table as it is (start-up, or after validation)."""
        self.locations[location.id] = location
        self._order = None
        self._rank = None
        if location.active:
            self.inactive.discard(location.id)
        else:
            self.inactive.add(location.id)
        self.default_active = DEFAULT_LOCATION not in self.inactive

    def set_channel(
        self, channel_id: str, locations: Iterable[str], now: float
    ) -> tuple[Channel, ChannelSet, bool]:
        """Create or replace a channel selling from ``locations`` (known, at least one, no
        repeats): (the channel, the event, whether it was created)."""
        check_location_id(channel_id, what="channel id")
        if isinstance(locations, str | bytes) or not isinstance(locations, Iterable):
            raise InvalidRequest("locations must be a list of location ids")
        ids = list(locations)
        if not ids:
            raise InvalidRequest("a channel needs at least one location")
        if len(ids) > MAX_LOCATIONS:
            raise InvalidRequest(f"a channel may name at most {MAX_LOCATIONS} locations")
        for location_id in ids:
            self.location(location_id)
        if len(set(ids)) != len(ids):
            raise InvalidRequest("a channel names each location at most once")
        created = channel_id not in self.channels
        if created and len(self.channels) >= MAX_CHANNELS:
            raise InvalidRequest(f"a shop may have at most {MAX_CHANNELS} channels")
        channel = Channel(channel_id, ids)
        self.restore_channel(channel)
        return channel, ChannelSet(channel, now), created

    def restore_channel(self, channel: Channel) -> None:
        self.channels[channel.id] = channel
        self._channel_sets[channel.id] = frozenset(channel.locations)
