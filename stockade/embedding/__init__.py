"""Running an engine for programs that are not trio: blocking threads and asyncio."""

__all__: list[str] = []  # the modules hold the code; stockade re-exports the API
