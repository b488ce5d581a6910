"""The ``stockade engine`` process: one engine serving the engine protocol (design.md §12)."""

__all__: list[str] = []  # the modules hold the code
