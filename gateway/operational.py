"""Routes for operators and tooling, outside the versioned API: probes, the spec, docs.

They are not in ``openapi/bookstore.yaml`` on purpose: SDK users have no use for them,
and the spec's single server is ``/api/v1``.
"""

from __future__ import annotations

import json

from a2wsgi import WSGIMiddleware
from connexion import AsyncApp
from flask import Flask
from flask_swagger_ui import get_swaggerui_blueprint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from common import context
from common.schemas import SPEC_PATH, spec_document
from gateway.calls import rpc_client
from gateway.problems import NotReady
from gateway.revocations import RevocationList
from gateway.rpc import ServiceUnavailable, is_serving
from gateway.security import KeyCache
from gateway.settings import Settings

_HEALTHY = json.dumps({"status": "ok"}).encode()


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def swagger_ui() -> WSGIMiddleware:
    """Swagger UI, as flask-swagger-ui serves it (page, assets, OAuth2 redirect): the one
    place the gateway still runs Flask, through a WSGI bridge, because nobody loads the
    docs at request rates and the package keeps its assets current."""
    docs = Flask(__name__)
    docs.register_blueprint(
        get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "Bookstore API"})
    )
    return WSGIMiddleware(docs)


def add_routes(
    app: AsyncApp, settings: Settings, key_cache: KeyCache, revocations: RevocationList
) -> None:
    async def health(_request: Request) -> Response:
        """Liveness: the process is up and serving. Deliberately checks nothing else, so
        an unavailable dependency never gets a healthy gateway restarted."""
        return Response(_HEALTHY, media_type="application/json")

    async def ready(_request: Request) -> Response:
        """Readiness: the broker is reachable, every service answers a ping, and the
        token signing keys and revocations are loaded (without them no authenticated
        call can succeed)."""
        call_context = context.CallContext(correlation_id=context.current().correlation_id)
        try:
            services = await rpc_client().ping_all(
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

    async def openapi_json(_request: Request) -> Response:
        return _json(spec_document())

    async def openapi_yaml(_request: Request) -> Response:
        return Response(SPEC_PATH.read_text(), media_type="application/yaml")

    async def docs_home(_request: Request) -> Response:
        return RedirectResponse("/docs/", status_code=308)

    app.add_url_rule("/health", "health", health, methods=["GET", "HEAD"])
    app.add_url_rule("/ready", "ready", ready, methods=["GET", "HEAD"])
    app.add_url_rule("/openapi.json", "openapi_json", openapi_json, methods=["GET", "HEAD"])
    app.add_url_rule("/openapi.yaml", "openapi_yaml", openapi_yaml, methods=["GET", "HEAD"])
    app.add_url_rule("/", "root", docs_home, methods=["GET", "HEAD"])
    app.add_url_rule("/docs", "docs", docs_home, methods=["GET", "HEAD"])
    docs = swagger_ui()
    app.add_url_rule("/docs/{path:path}", "swagger_ui", docs, methods=["GET", "HEAD"])
