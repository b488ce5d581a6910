"""The HTTP order API: quart-trio on hypercorn, over an engine."""
