"""A minimal Flask shop that reserves and confirms stock through stockade.

    flask --app examples.flask_app run

Flask handlers are synchronous: they call the engine's blocking handle, which is safe from any
number of worker threads. The engine thread starts with the app; call ``app.stockade.stop()``
(or let the process exit) to close it, which commits the journal.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

import stockade


def create_app(database: str | None = None, **options: Any) -> Flask:
    app = Flask(__name__)
    thread = stockade.EngineThread(database, **options)
    thread.start()
    engine = stockade.BlockingEngine(thread, timeout=10)
    app.extensions["stockade"] = thread

    @app.put("/stock/<sku>")
    def set_stock(sku: str) -> Any:
        level = engine.set_stock(sku, int(request.args["on_hand"]))
        return {"sku": level.sku, "available": level.available}

    @app.post("/reservations")
    def reserve() -> Any:
        body = request.get_json()
        try:
            order = engine.place_order(
                {body["sku"]: body["qty"]}, hold_for=body.get("hold_seconds", 900)
            )
        except stockade.OutOfStock as exc:
            return jsonify(error=str(exc)), 409
        except stockade.UnknownProduct as exc:
            return jsonify(error=str(exc)), 404
        return jsonify(order_id=order.id, status=order.status), 201

    @app.post("/reservations/<order_id>/confirm")
    def confirm(order_id: str) -> Any:
        try:
            order = engine.confirm(order_id)
        except stockade.OrderNotFound as exc:
            return jsonify(error=str(exc)), 404
        except stockade.InvalidTransition as exc:
            return jsonify(error=str(exc)), 409
        return {"order_id": order.id, "status": order.status}

    return app
