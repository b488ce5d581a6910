"""Fronts (design.md §12): HTTP processes that serve the API over an engine in another process.

* :mod:`stockade.fronts.front`: ``stockade serve --engine URL[,URL]``, one front: the app of
  :mod:`stockade.api` over a remote engine, with no store of its own.
* :mod:`stockade.fronts.supervisor`: ``stockade serve --workers N``, one engine process and N
  fronts sharing a port; :mod:`stockade.fronts.sockets`, the port's sockets;
  :mod:`stockade.fronts.supervised`, what a child of the supervisor does on its side (stop
  when it is gone, serve the socket it was handed).
"""

__all__: list[str] = []  # the modules hold the code
