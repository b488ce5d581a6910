"""The HTTP order API (to come: quart-trio on hypercorn)."""
