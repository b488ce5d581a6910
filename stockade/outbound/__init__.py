"""Events out (design.md §9, §14): the deliveries of the change feed, owned by the process
that owns the engine (``stockade serve`` today; the ``stockade engine`` process with fronts).
:class:`~stockade.outbound.service.Outbound` is the service; the HTTP routes stay in
:mod:`stockade.api`."""

__all__: list[str] = []  # the modules hold the code; stockade re-exports the API
