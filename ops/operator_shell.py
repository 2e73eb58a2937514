"""What the operators' ``nameko shell`` adds to nameko's ``n`` (ops/shell_startup.py
runs :func:`prepare` at start-up; docs/decisions/0094):

- the services' errors arrive typed (``NotFound``, ``Conflict``...), not as ``RemoteError``;
- every call gives up after a timeout (``BOOKSTORE_SHELL_TIMEOUT``, 30 s) with an error
  that says what to check, instead of waiting for ever on a stopped service;
  ``n.with_timeout(300).search.rebuild_index()`` waits longer for one call;
- ``n.methods("order")`` lists a service's RPC methods with their signatures and
  docstrings, ``n.methods()`` every service's; ``dir(n.rpc)`` and ``dir(n.rpc.order)``
  (and so tab completion) show services and methods.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

from nameko.exceptions import RpcTimeout
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.rpc import Rpc
from nameko.standalone.rpc import ClusterRpcProxy

from common.config import SERVICE_PACKAGES

TIMEOUT_ENV = "BOOKSTORE_SHELL_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 30.0


class ShellCallTimeout(RpcTimeout):
    """A call from the shell got no answer in time; the message says what to check."""


def rpc_methods(service: str) -> dict[str, Any]:
    """The service's RPC methods by name (the functions of its service class), read from
    the code: the shell runs beside it (a checkout, or the image's /app)."""
    module = importlib.import_module(f"{SERVICE_PACKAGES[service]}.service")
    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and getattr(value, "name", None) == service
    ]
    methods: dict[str, Any] = {}
    for cls in classes:
        for name, function in inspect.getmembers(cls, inspect.isfunction):
            entrypoints = getattr(function, ENTRYPOINT_EXTENSIONS_ATTR, ())
            if any(_is_rpc(entrypoint) for entrypoint in entrypoints):
                methods[name] = function
    return methods


def _is_rpc(entrypoint: Any) -> bool:
    # nameko keeps the decorator's arguments in a partial-like wrapper: look through it.
    cls = getattr(entrypoint, "cls", None) or type(entrypoint)
    return inspect.isclass(cls) and issubclass(cls, Rpc)


def describe_methods(service: str) -> str:
    """``service.method(signature)`` and the docstring of each RPC method."""
    lines = [f"{service}:"]
    for name, function in sorted(rpc_methods(service).items()):
        lines.append(f"  n.rpc.{service}.{name}({_parameters(function)})")
        doc = inspect.getdoc(function)
        if doc:
            lines.extend(f"      {line}" if line else "" for line in doc.splitlines())
    return "\n".join(lines)


def _parameters(function: Any) -> str:
    """``product_id: str, limit: int = 1000``: annotations as written (they are strings
    under ``from __future__ import annotations``), ``self`` left out."""
    shown = []
    for parameter in list(inspect.signature(function).parameters.values())[1:]:
        text = parameter.name
        if parameter.annotation is not inspect.Parameter.empty:
            text += f": {parameter.annotation}"
        if parameter.default is not inspect.Parameter.empty:
            text += f" = {parameter.default!r}"
        shown.append(text)
    return ", ".join(shown)


class _Method:
    def __init__(self, cluster: DescribedCluster, service: str, name: str) -> None:
        self._cluster, self._service, self._name = cluster, service, name
        function = rpc_methods(service).get(name) if service in SERVICE_PACKAGES else None
        self.__doc__ = inspect.getdoc(function) if function else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        proxy = getattr(getattr(self._cluster._proxy, self._service), self._name)
        try:
            return proxy(*args, **kwargs)
        except RpcTimeout:
            # A late reply could confuse the next call on this proxy: start a fresh one.
            self._cluster._restart()
            raise ShellCallTimeout(
                f"{self._service}.{self._name} gave no answer within "
                f"{self._cluster.timeout:g}s. Is the {self._service} service running "
                f"(`bookstore ping {self._service}`, section 2 of docs/operations.md)? "
                f"For a slow call: n.with_timeout(300).{self._service}.{self._name}(...)"
            ) from None

    def __repr__(self) -> str:
        return f"<RPC method n.rpc.{self._service}.{self._name}>"


class _Service:
    def __init__(self, cluster: DescribedCluster, service: str) -> None:
        self._cluster, self._service = cluster, service
        if service in SERVICE_PACKAGES:
            self.__doc__ = describe_methods(service)

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self._cluster, self._service, name)

    def __dir__(self) -> list[str]:
        known = rpc_methods(self._service) if self._service in SERVICE_PACKAGES else {}
        return sorted(known)

    def __repr__(self) -> str:
        return f"<service {self._service}: n.methods({self._service!r}) lists its methods>"


class DescribedCluster:
    """``n.rpc``: nameko's cluster proxy with a timeout on every call, services and
    methods listed by ``dir``."""

    def __init__(self, config: dict[str, Any], timeout: float) -> None:
        self.config, self.timeout = config, timeout
        self._standalone = ClusterRpcProxy(config, timeout=timeout)
        self._proxy = self._standalone.start()

    def __getattr__(self, service: str) -> _Service:
        if service.startswith("_"):
            raise AttributeError(service)
        return _Service(self, service)

    def __dir__(self) -> list[str]:
        return sorted(SERVICE_PACKAGES)

    def _restart(self) -> None:
        self.stop()
        self._standalone = ClusterRpcProxy(self.config, timeout=self.timeout)
        self._proxy = self._standalone.start()

    def stop(self) -> None:
        self._standalone.stop()


def configured_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    return float(raw) if raw else DEFAULT_TIMEOUT_SECONDS


def prepare(n: Any) -> str:
    """Equips nameko's shell helper ``n``; returns the lines to show the operator."""
    import common.errors  # registers the typed errors for deserialisation

    timeout = configured_timeout()
    n.disconnect()  # nameko's own proxy, which waits for ever
    n.rpc = DescribedCluster(n.config, timeout)
    n.disconnect = n.rpc.stop
    opened: list[DescribedCluster] = []

    def with_timeout(seconds: float) -> DescribedCluster:
        """``n.rpc`` with another timeout (a new connection; closed when the shell ends)."""
        cluster = DescribedCluster(n.config, seconds)
        opened.append(cluster)
        return cluster

    def methods(service: str | None = None) -> None:
        """Prints the RPC methods of ``service`` (every service's without one)."""
        services = [service] if service else list(SERVICE_PACKAGES)
        print("\n\n".join(describe_methods(name) for name in services))

    n.with_timeout = with_timeout
    n.methods = methods
    n.errors = common.errors
    return (
        f"Bookstore operators' shell (docs/operations.md). Errors arrive typed "
        f"(n.errors.NotFound, Conflict...); calls time out after {timeout:g}s "
        f"({TIMEOUT_ENV}; n.with_timeout(300).<service>.<method>(...) for a slow one); "
        f"n.methods('order') lists a service's methods, n.methods() all."
    )
