"""The RPC entrypoint every service uses: nameko's, plus request deadlines.

A caller that gives up after a timeout (the gateway answers 504) leaves its request
behind. RabbitMQ drops it if it is still queued when it expires, but requests already
pushed to a consumer (prefetched by a service that was frozen or overloaded) do not
expire there. So callers put a deadline in the context data, and this entrypoint
acknowledges and drops a request whose deadline has passed instead of running work
nobody waits for. Deadlines propagate with the context to downstream calls.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import eventlet
from kombu.exceptions import KombuError
from kombu.message import Message
from nameko import rpc as nameko_rpc
from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    DEFAULT_SERIALIZER,
    LOGIN_METHOD_CONFIG_KEY,
    SERIALIZER_CONFIG_KEY,
)
from nameko.exceptions import UnknownService

from common.context import DEADLINE_KEY
from common.errors import DependencyUnavailable

log = logging.getLogger(__name__)

# Clocks of different hosts disagree a little; only drop what is clearly stale.
CLOCK_SKEW_ALLOWANCE_SECONDS = 1.0


class _UnconfirmedPublisher(Publisher):
    use_confirms = False


class Responder(nameko_rpc.Responder):
    """Sends replies without waiting for the broker's confirm. A confirm proves only that
    the broker took the reply, which the caller learns anyway by receiving it (or not:
    then its timeout answers, as it would for a reply lost a moment later); waiting for
    it cost a round trip to RabbitMQ per call (docs/decisions/0151)."""

    publisher_cls = _UnconfirmedPublisher


class RpcConsumer(nameko_rpc.RpcConsumer):
    def handle_result(
        self, message: Message, result: Any, exc_info: tuple[Any, Any, Any] | None
    ) -> tuple[Any, Any]:
        config = self.container.config
        responder = Responder(
            config[AMQP_URI_CONFIG_KEY],
            nameko_rpc.get_rpc_exchange(config),
            config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER),
            message,
            ssl=config.get(AMQP_SSL_CONFIG_KEY),
            login_method=config.get(LOGIN_METHOD_CONFIG_KEY),
        )
        try:
            result, exc_info = responder.send_response(result, exc_info)
        except KombuError:
            # The link to the broker went while the work ran. Raising here would kill the
            # whole container (nameko's default), stopping its timers and relays too. The
            # caller times out as it would for any lost reply; the unacknowledged request
            # goes back to the queue with the connection, and its deadline drops it there
            # if the caller has given up.
            log.warning(
                "the reply to %s could not be sent: the broker is unreachable",
                message.properties.get("reply_to"),
                exc_info=True,
            )
            return result, exc_info
        self.queue_consumer.ack_message(message)
        return result, exc_info


class Rpc(nameko_rpc.Rpc):
    rpc_consumer = RpcConsumer()

    def handle_message(self, body: Any, message: Message) -> None:
        deadline = (message.headers or {}).get(f"nameko.{DEADLINE_KEY}")
        if deadline is not None:
            late = time.time() - float(deadline)
            if late > CLOCK_SKEW_ALLOWANCE_SECONDS:
                log.warning(
                    "dropped %s: its caller stopped waiting %.1fs ago",
                    message.delivery_info.get("routing_key"),
                    late,
                    extra={
                        "correlation_id_of_dropped": message.headers.get("nameko.correlation_id")
                    },
                )
                self.rpc_consumer.queue_consumer.ack_message(message)
                return
        super().handle_message(body, message)


rpc = Rpc.decorator


def call_with_timeout(method: Any, *args: Any, timeout: float, **kwargs: Any) -> Any:
    """Calls another service (``self.catalog.reserve``) from inside a service, waiting at
    most ``timeout`` seconds: nameko's own proxies wait for ever, and a service that
    dropped the request (past its deadline) would never answer.

    Raises :class:`DependencyUnavailable` when the call cannot be sent or times out; the
    callee's own errors pass through unchanged.
    """
    try:
        reply = method.call_async(*args, **kwargs)
        with eventlet.Timeout(timeout):
            return reply.result()
    except eventlet.Timeout:
        raise DependencyUnavailable(
            f"The {method.service_name} service did not answer in time.",
            {"service": method.service_name, "method": method.method_name},
        ) from None
    except (OSError, KombuError, UnknownService) as error:
        raise DependencyUnavailable(
            f"The {method.service_name} service is unreachable.",
            {"service": method.service_name, "method": method.method_name, "reason": repr(error)},
        ) from None
