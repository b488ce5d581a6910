"""The journal and its stores: memory, SQLite and PostgreSQL."""

__all__: list[str] = []  # the modules hold the code; stockade re-exports the API
