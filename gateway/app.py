"""The gateway application: ``create_app()`` builds it, ``python -m gateway`` serves it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import inflection
from connexion import FlaskApp
from connexion.exceptions import ResolverError
from connexion.jsonifier import Jsonifier
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver

from common import context, tracing
from common.schemas import SPEC_PATH
from gateway import calls, openapi31, operational, problems, ratelimit, security
from gateway.audit import TokenRefusalReporter
from gateway.handlers import admin, auth, catalog, notify, orders, search, webhooks
from gateway.metrics import MetricsMiddleware
from gateway.middleware import (
    BodySizeLimitMiddleware,
    ControlCharactersInPathMiddleware,
    RequestContextMiddleware,
)
from gateway.revocations import RevocationList
from gateway.rpc import RpcClient
from gateway.settings import API_BASE_PATH, Settings

HANDLER_MODULES = (admin, auth, catalog, notify, orders, search, webhooks)


class HandlerResolver(Resolver):
    """Finds operation ``listProducts`` as ``list_products`` in one of the handler
    modules, so operationIds stay short and SDK-friendly."""

    def __init__(self, modules: tuple[Any, ...]) -> None:
        super().__init__()
        self.handlers: dict[str, Any] = {}
        for module in modules:
            for name, function in vars(module).items():
                if callable(function) and getattr(function, "__module__", None) == module.__name__:
                    if name in self.handlers:
                        raise ResolverError(f"handler {name} is defined twice")
                    self.handlers[name] = function

    def resolve_function_from_operation_id(self, operation_id: str) -> Any:
        name = inflection.underscore(operation_id)
        try:
            return self.handlers[name]
        except KeyError:
            raise ResolverError(f"no handler {name} for operationId {operation_id}") from None


def create_app(
    settings: Settings | None = None,
    *,
    resolver: Resolver | None = None,
    key_cache: security.KeyCache | None = None,
    revocations: RevocationList | None = None,
) -> FlaskApp:
    """The gateway. ``resolver``, ``key_cache`` and ``revocations`` replace the real
    handlers, the JWKS source and the revocation source, for tests of the HTTP layer
    that run without services."""
    settings = settings or Settings()
    # Per process (each uvicorn worker runs this factory): a tracer provider cannot be
    # shared across a fork.
    tracing.configure("gateway")
    openapi31.install()
    rpc = RpcClient(settings.amqp_uri, settings.rpc_timeout)
    if key_cache is None:
        key_cache = security.KeyCache(
            lambda: rpc.call(
                "auth",
                "get_jwks",
                context=context.CallContext(correlation_id=context.new_correlation_id()),
            ),
            settings.jwks_refresh_interval,
        )
    if revocations is None:
        revocations = RevocationList(
            lambda since: rpc.call(
                "auth",
                "access_revocations",
                since,
                # Every second, every gateway: not worth a trace each.
                context=context.CallContext(
                    correlation_id=context.new_correlation_id(),
                    traceparent=tracing.unsampled_traceparent(),
                ),
            ),
            settings.revocation_poll_interval,
        )
    refusals = TokenRefusalReporter(
        lambda batch: rpc.call(
            "auth",
            "record_token_refusals",
            batch,
            context=context.CallContext(correlation_id=context.new_correlation_id()),
        )
    )
    calls.use_rpc_client(rpc)
    security.use_key_cache(key_cache, refusals, revocations)
    limiter = (
        ratelimit.RateLimiter(
            settings.redis_url,
            ratelimit.parse_limits(settings.rate_limits),
            settings.rate_limit_prefix,
        )
        if settings.redis_url
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        key_cache.start()
        revocations.start()
        refusals.start()
        yield
        refusals.stop()
        revocations.stop()
        key_cache.stop()
        if limiter is not None:
            await limiter.close()
        rpc.close()

    app = FlaskApp(__name__, lifespan=lifespan)
    app.add_middleware(MetricsMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(RequestContextMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(
        ControlCharactersInPathMiddleware, position=MiddlewarePosition.BEFORE_SWAGGER
    )
    app.add_middleware(
        BodySizeLimitMiddleware,
        position=MiddlewarePosition.BEFORE_SWAGGER,
        max_bytes=settings.max_body_bytes,
    )
    if limiter is not None:
        app.add_middleware(
            ratelimit.RateLimitMiddleware,
            position=MiddlewarePosition.BEFORE_SECURITY,
            limiter=limiter,
        )
    app.add_api(
        SPEC_PATH,
        base_path=API_BASE_PATH,
        resolver=resolver or HandlerResolver(HANDLER_MODULES),
        strict_validation=True,
        validate_responses=settings.validate_responses,
        validator_map=openapi31.VALIDATOR_MAP,
        security_map=security.SECURITY_MAP,
        swagger_ui_options=SwaggerUIOptions(serve_spec=False, swagger_ui=False),
        jsonifier=Jsonifier(json, separators=(",", ":")),
    )
    problems.register(app)
    app.add_error_handler(ratelimit.RateLimited, ratelimit.rate_limited_problem)
    operational.add_routes(app, settings, key_cache, revocations)
    return app
