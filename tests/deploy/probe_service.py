"""A nameko service the scale-out tests run twice, and the tracing test once: it records
each catalog ``product.created`` event it handles in a file of its own (``PROBE_LOG``).
Like every service, it binds the call context (and continues traces) with
``CallContextProvider``."""

from __future__ import annotations

import os
from typing import Any

from nameko.events import event_handler

from common.context import CallContextProvider
from common.metrics import ServiceMetrics


class EventProbe:
    name = "event_probe"

    call_context = CallContextProvider()
    metrics = ServiceMetrics()

    @event_handler("catalog", "product.created")
    def record(self, envelope: dict[str, Any]) -> None:
        with open(os.environ["PROBE_LOG"], "a") as log:
            log.write(f"{envelope['id']}\n")
