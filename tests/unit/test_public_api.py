import msgspec

import stockade


def test_public_names_are_pinned():
    assert sorted(stockade.__all__) == [
        "AsyncioEngine",
        "BlockingEngine",
        "Engine",
        "EngineClosed",
        "EngineThread",
        "IdempotencyConflict",
        "InvalidRequest",
        "InvalidTransition",
        "MemoryStore",
        "Order",
        "OrderNotFound",
        "OrderStatus",
        "OutOfStock",
        "Overloaded",
        "StockConflict",
        "StockLevel",
        "StockadeError",
        "StoreInUse",
        "UnknownProduct",
        "open_asyncio_engine",
        "open_engine",
        "run_in_thread",
    ]
    for name in stockade.__all__:
        assert hasattr(stockade, name)


def test_errors_are_one_documented_hierarchy():
    for name in stockade.errors.__all__:
        error = getattr(stockade, name)
        assert issubclass(error, stockade.StockadeError)
        assert error.__doc__, name
    assert issubclass(stockade.InvalidRequest, ValueError)


def test_results_are_msgspec_structs():
    assert issubclass(stockade.Order, msgspec.Struct)
    assert issubclass(stockade.StockLevel, msgspec.Struct)
