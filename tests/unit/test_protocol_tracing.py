"""The W3C trace context across the hop: a call made inside a span runs, in the engine, inside
a server span that is its child; with tracing off, OpenTelemetry is never imported."""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import trio
import trio.testing
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import stockade
from stockade._open import open_engine_and_store
from stockade.protocol.addresses import Address
from stockade.protocol.client import RemoteEngine
from stockade.protocol.server import serve_connection
from stockade.protocol.tracing import CallSpans, current_trace_context


async def test_an_engine_call_runs_in_a_child_of_the_callers_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    store = stockade.MemoryStore(keep_movements=True)
    opened = open_engine_and_store(store=store, durability="durable", record_commits=True)
    async with opened as (engine, _), trio.open_nursery() as nursery:

        async def connector(address: Address) -> trio.abc.Stream:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(partial(serve_connection, server, engine, tracer=CallSpans(tracer)))
            return client

        remote = RemoteEngine(
            [Address("unix", path="memory")],
            connector=connector,
            trace_context=current_trace_context,
        )
        nursery.start_soon(remote.run)
        await remote.wait_connected()
        with tracer.start_as_current_span("caller") as caller:
            await remote.set_stock("sku-1", 4)
        await remote.has_product("sku-1")  # no span current: a root span in the engine
        nursery.cancel_scope.cancel()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    served = spans["stockade.engine.set_stock"]
    assert served.kind is SpanKind.SERVER
    assert served.parent is not None
    assert served.parent.span_id == caller.get_span_context().span_id
    assert served.context.trace_id == caller.get_span_context().trace_id
    assert spans["stockade.engine.has_product"].parent is None
    commit = spans["stockade.journal.commit"]  # the commit set_stock waited for
    assert commit.parent is not None and commit.parent.span_id == served.context.span_id


def test_without_tracing_the_client_and_server_import_no_opentelemetry(tmp_path) -> None:
    script = f"""
import sys, trio, stockade
from stockade.engine_process.listen import open_listener
from stockade.engine_process.serving import serve_listener
from stockade.protocol.addresses import parse_addresses

async def main():
    async with stockade.open_engine() as engine, trio.open_nursery() as nursery:
        [address] = parse_addresses("unix:{tmp_path}/e.sock")
        listener = await open_listener(address)
        await nursery.start(serve_listener, listener, engine)
        async with stockade.open_remote_engine(str(address)) as remote:
            await remote.set_stock("sku-1", 1)
        nursery.cancel_scope.cancel()
    assert not [m for m in sys.modules if m.startswith("opentelemetry")]

trio.run(main)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
