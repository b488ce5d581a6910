"""Running an engine for programs that are not trio: blocking threads and asyncio."""
