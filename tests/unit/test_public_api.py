import re

import msgspec

import stockade


def test_public_names_are_pinned():
    assert sorted(stockade.__all__) == [
        "AsyncioEngine",
        "BlockingEngine",
        "Channel",
        "CorruptStore",
        "Engine",
        "EngineClosed",
        "EngineRefused",
        "EngineStatistics",
        "EngineThread",
        "EngineUnavailable",
        "Event",
        "FeedGone",
        "IdempotencyConflict",
        "IncompatibleStore",
        "InvalidRequest",
        "InvalidTransition",
        "JournalStatistics",
        "LimitExceeded",
        "Location",
        "LocationLevel",
        "MemoryStore",
        "Movement",
        "NotOnSale",
        "Order",
        "OrderNotFound",
        "OrderStatus",
        "OutOfStock",
        "Overloaded",
        "ProductRules",
        "RemoteEngine",
        "ReturnConflict",
        "StockConflict",
        "StockLevel",
        "StockadeError",
        "StoreError",
        "StoreInUse",
        "StoreLost",
        "StoreUnavailable",
        "TooManyHolds",
        "UnknownChannel",
        "UnknownLocation",
        "UnknownProduct",
        "open_asyncio_engine",
        "open_engine",
        "open_remote_engine",
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


def test_the_error_tree_in_the_docstring_is_the_real_one():
    drawn: dict[str, str | None] = {}  # class -> the parent it is drawn under
    stack: list[str] = []
    for line in (stockade.errors.__doc__ or "").splitlines():
        match = re.fullmatch(r"    ((?:    |│   )*)(?:[├└]── )?(\w+)\b.*", line)
        if match is None or not match.group(2)[0].isupper():
            continue
        depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
        del stack[depth:]
        drawn[match.group(2)] = stack[-1] if stack else None
        stack.append(match.group(2))
    assert sorted(drawn) == sorted(stockade.errors.__all__)
    for name, parent in drawn.items():
        base = getattr(stockade.errors, name).__bases__[0]
        assert base.__name__ == (parent or "Exception"), name


def test_moved_errors_still_import_from_their_old_homes():
    from stockade.persistence.journal import StoreUnavailable
    from stockade.persistence.postgres import StoreLost

    assert StoreUnavailable is stockade.StoreUnavailable
    assert StoreLost is stockade.StoreLost


def test_results_are_msgspec_structs():
    for result in (stockade.Order, stockade.StockLevel, stockade.EngineStatistics,
                   stockade.JournalStatistics):  # fmt: skip
        assert issubclass(result, msgspec.Struct)
        assert result.__struct_config__.frozen, result
