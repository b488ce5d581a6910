"""The engine protocol: the Engine's API as msgpack frames between a client and ``stockade
engine`` (design.md §12).

The layers, each in its own module: :mod:`~stockade.protocol.calls` (the calls, one Struct
each, and the one table), :mod:`~stockade.protocol.codes` (errors as codes),
:mod:`~stockade.protocol.frames` (frames and their batching on a stream),
:mod:`~stockade.protocol.auth` (the handshake and its HMAC proofs),
:mod:`~stockade.protocol.dispatch` (a call run on an Engine),
:mod:`~stockade.protocol.server` (the engine's side of a connection),
:mod:`~stockade.protocol.client` (:class:`RemoteEngine`, :func:`open_remote_engine`) and
:mod:`~stockade.protocol.surface` (the async methods every async handle shares).
"""

__all__: list[str] = []  # the modules hold the code; stockade re-exports the API
