"""The gateway application: ``create_app()`` builds it, ``python -m gateway`` serves it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import inflection
from connexion import AsyncApp
from connexion.exceptions import ResolverError
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver

from common import context, tracing
from common.schemas import SPEC_PATH
from gateway import calls, openapi31, operational, problems, ratelimit, security
from gateway.amqp_rpc import AsyncRpcClient
from gateway.audit import TokenRefusalReporter
from gateway.handlers import admin, analytics, auth, catalog, notify, orders, search, webhooks
from gateway.metrics import MetricsMiddleware, forget_this_process
from gateway.middleware import (
    BodySizeLimitMiddleware,
    ControlCharactersInPathMiddleware,
    RawBodyMiddleware,
    RequestContextMiddleware,
)
from gateway.read_cache import EventSubscription, ReadCache, ReadCacheMiddleware
from gateway.revocations import RevocationList
from gateway.settings import API_BASE_PATH, Settings

HANDLER_MODULES = (admin, analytics, auth, catalog, notify, orders, search, webhooks)
#: How long a worker's startup waits for the token keys and revocations (then it serves
#: anyway, and /ready says what is missing).
STARTUP_WAIT_SECONDS = 15.0


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
) -> AsyncApp:
    """The gateway. ``resolver``, ``key_cache`` and ``revocations`` replace the real
    handlers, the JWKS source and the revocation source, for tests of the HTTP layer
    that run without services.

    Every request runs on the event loop from end to end (docs/decisions/0070): the
    handlers are coroutines awaiting one RPC call on the process's one AMQP connection.
    The background threads (key refresh, revocation poll, refusal audit) call through
    the same client, on its loop."""
    settings = settings or Settings.current()
    # Per process (each uvicorn worker runs this factory): a tracer provider cannot be
    # shared across a fork.
    tracing.configure("gateway")
    openapi31.install()
    rpc = AsyncRpcClient(settings.amqp_uri, settings.rpc_timeout)
    if key_cache is None:
        key_cache = security.KeyCache(
            lambda: rpc.call_from_thread(
                "auth",
                "get_jwks",
                context=context.CallContext(correlation_id=context.new_correlation_id()),
            ),
            settings.jwks_refresh_interval,
        )
    if revocations is None:
        revocations = RevocationList(
            lambda since: rpc.call_from_thread(
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
        lambda batch: rpc.call_from_thread(
            "auth",
            "record_token_refusals",
            batch,
            context=context.CallContext(correlation_id=context.new_correlation_id()),
        )
    )
    calls.use_rpc_client(rpc)
    cache = (
        ReadCache(settings.cache_ttl, settings.cache_max_entries, settings.cache_max_bytes)
        if settings.read_cache
        else None
    )
    if cache is not None:
        rpc.on_connected.append(EventSubscription(cache).subscribe)
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
        await rpc.start()
        key_cache.start()
        revocations.start()
        refusals.start()
        # A worker takes no connection before its startup ends: waiting here for what
        # token checks need keeps a fresh worker from refusing tokens while its siblings
        # (and /ready, answered by any of them) already accept them.
        waited = 0.0
        while not (key_cache.loaded and revocations.loaded) and waited < STARTUP_WAIT_SECONDS:
            await asyncio.sleep(0.05)
            waited += 0.05
        yield
        refusals.stop()
        revocations.stop()
        key_cache.stop()
        if limiter is not None:
            await limiter.close()
        await rpc.close()
        forget_this_process()

    app = AsyncApp(__name__, lifespan=lifespan)
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
    app.add_middleware(RawBodyMiddleware, position=MiddlewarePosition.BEFORE_VALIDATION)
    if limiter is not None:
        app.add_middleware(
            ratelimit.RateLimitMiddleware,
            position=MiddlewarePosition.BEFORE_SECURITY,
            limiter=limiter,
        )
    if cache is not None:
        # Inside the rate limiter (a hit is still a request), before security and
        # validation (a hit needs neither: gateway/read_cache.py).
        app.add_middleware(
            ReadCacheMiddleware, position=MiddlewarePosition.BEFORE_SECURITY, cache=cache
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
        jsonifier=calls.JSONIFIER,
    )
    problems.register(app)
    app.add_error_handler(ratelimit.RateLimited, ratelimit.rate_limited_problem)
    operational.add_routes(app, settings, key_cache, revocations)
    return app
