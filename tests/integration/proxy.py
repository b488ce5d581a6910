"""A TCP proxy on loopback that a test can cut and restore: a database outage on demand."""

from __future__ import annotations

import trio


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``. :meth:`cut` drops every connection and
    refuses new ones (they are accepted and closed at once) until :meth:`restore`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.up = True
        self._scope = trio.CancelScope()
        self._links: set[trio.CancelScope] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started()
            await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        if not self.up:
            await client.aclose()
            return
        with trio.CancelScope() as link:
            self._links.add(link)
            try:
                server = await trio.open_tcp_stream(*self.target)
            except OSError:
                await client.aclose()
                return
            try:
                async with client, server, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server, link)
                    nursery.start_soon(self._pump, server, client, link)
            finally:
                self._links.discard(link)

    @staticmethod
    async def _pump(
        source: trio.SocketStream, sink: trio.SocketStream, link: trio.CancelScope
    ) -> None:
        try:
            async for data in source:
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        link.cancel()  # one side is gone: close both

    def cut(self) -> None:
        self.up = False
        for link in list(self._links):
            link.cancel()

    def restore(self) -> None:
        self.up = True

    def stop(self) -> None:
        self._scope.cancel()
