"""The HTTP order API: quart-trio on hypercorn, over an engine."""

__all__: list[str] = []  # the modules hold the code; stockade re-exports the API
