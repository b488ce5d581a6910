"""Pure stock logic and the actors that own it. No I/O; see ``stockade.open_engine``."""

__all__: list[str] = []  # the modules hold the code; stockade re-exports the API
