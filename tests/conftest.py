from collections.abc import AsyncIterator

import pytest

import stockade
from stockade import Engine, MemoryStore


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(keep_movements=True)


@pytest.fixture
async def engine(store: MemoryStore) -> AsyncIterator[Engine]:
    async with stockade.open_engine(store=store, durability="durable") as engine:
        yield engine
