"""Routes for operators and tooling, outside the versioned API: probes, the spec, docs.

They are not in ``openapi/bookstore.yaml`` on purpose: SDK users have no use for them,
and the spec's single server is ``/api/v1``.
"""

from __future__ import annotations

import json
from typing import Any

from connexion import FlaskApp
from flask import Response, redirect
from flask_swagger_ui import get_swaggerui_blueprint

from common import context
from common.schemas import SPEC_PATH, spec_document
from gateway.calls import rpc_client
from gateway.problems import NotReady
from gateway.revocations import RevocationList
from gateway.rpc import ServiceUnavailable, is_serving
from gateway.security import KeyCache
from gateway.settings import Settings


def _json(body: dict[str, Any], status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(json.dumps(body), status=status, mimetype=mimetype)


def add_routes(
    app: FlaskApp, settings: Settings, key_cache: KeyCache, revocations: RevocationList
) -> None:
    def health() -> Response:
        """Liveness: the process is up and serving. Deliberately checks nothing else, so
        an unavailable dependency never gets a healthy gateway restarted."""
        return _json({"status": "ok"})

    def ready() -> Response:
        """Readiness: the broker is reachable, every service answers a ping, and the
        token signing keys and revocations are loaded (without them no authenticated
        call can succeed)."""
        call_context = context.CallContext(correlation_id=context.current().correlation_id)
        try:
            services = rpc_client().ping_all(
                settings.services, call_context, settings.ready_timeout
            )
            checks = {"broker": "ok", **services}
        except ServiceUnavailable:
            checks = {"broker": "unreachable"}
        checks["token_keys"] = "ok" if key_cache.loaded else "not loaded yet"
        checks["token_revocations"] = "ok" if revocations.loaded else "not loaded yet"
        if not all(is_serving(outcome) for outcome in checks.values()):
            raise NotReady(checks)
        # Degraded still serves (a fallback answers), so it stays in rotation: 200, but
        # saying so for monitoring.
        degraded = any(outcome != "ok" for outcome in checks.values())
        return _json({"status": "degraded" if degraded else "ready", "checks": checks})

    def openapi_json() -> Response:
        return _json(spec_document())

    def openapi_yaml() -> Response:
        return Response(SPEC_PATH.read_text(), mimetype="application/yaml")

    def docs_home() -> Response:
        return redirect("/docs/", code=308)

    app.add_url_rule("/health", "health", health)
    app.add_url_rule("/ready", "ready", ready)
    app.add_url_rule("/openapi.json", "openapi_json", openapi_json)
    app.add_url_rule("/openapi.yaml", "openapi_yaml", openapi_yaml)
    app.add_url_rule("/", "root", docs_home)
    app.app.register_blueprint(
        get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "Bookstore API"})
    )
