"""HTTP fronts over a remote engine, and the ``serve --workers`` supervisor that runs them."""
