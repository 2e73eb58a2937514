"""One platform per checkout: ``BOOKSTORE_INSTANCE`` (written by ``bin/run`` into
``.env.local``) gives a checkout databases, a RabbitMQ virtual host and rate-limit keys
of its own, so a second clone on the same machine never opens another's databases (whose
keys it could not read) nor answers another's RPC calls (docs/decisions/0091).

Unset (checkouts from before, containers, tests): the configured defaults, unchanged.

The operator's tools (``bookstore``, ``python -m ops.nameko_cli shell``) read the
checkout's ``.env.local`` for what the environment does not set, so that a command
typed in another terminal talks to the platform ``bin/run`` started from this checkout.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import MutableMapping
from pathlib import Path

from common.notices import silence_import_notices

silence_import_notices()

from sqlalchemy.engine import make_url  # noqa: E402

from common.config import REPO_ROOT, SERVICE_PACKAGES, SharedSettings, database_url  # noqa: E402

INSTANCE_ENV = "BOOKSTORE_INSTANCE"
_VALID = re.compile(r"^[a-z0-9_]{1,40}$")


def new_instance_name(checkout: Path) -> str:
    """The checkout's folder name, made safe for database names, and 4 random hex digits
    (two clones of one repository usually share the folder name)."""
    stem = re.sub(r"[^a-z0-9]+", "_", checkout.name.lower()).strip("_")[:30] or "bookstore"
    return f"{stem}_{secrets.token_hex(2)}"


def vhost(instance: str) -> str:
    return f"bookstore-{instance}"


def database_name(instance: str, service: str) -> str:
    return f"bookstore_{instance}_{service}"


ENV_FILE = REPO_ROOT / ".env.local"


def use_checkout_environment(environ: MutableMapping[str, str], env_file: Path = ENV_FILE) -> None:
    """Fills ``environ`` from ``.env.local`` (what it does not set already), then applies
    the instance (:func:`apply_instance`)."""
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, equals, value = line.partition("=")
            if equals and not name.lstrip().startswith("#"):
                environ.setdefault(name.strip(), value.strip())
    apply_instance(environ)


def apply_instance(environ: MutableMapping[str, str]) -> str | None:
    """Sets, for the instance ``environ`` names, every database URL, ``AMQP_URI`` and the
    rate-limit prefix that ``environ`` does not set itself; returns the instance."""
    instance = environ.get(INSTANCE_ENV, "").strip()
    if not instance:
        return None
    if not _VALID.match(instance):
        raise ValueError(
            f"{INSTANCE_ENV}={instance!r}: use lower-case letters, digits and _ (at most 40)"
        )
    for service in SERVICE_PACKAGES:
        variable = f"{service.upper()}_DATABASE_URL"
        if not environ.get(variable):
            url = make_url(database_url(service)).set(database=database_name(instance, service))
            environ[variable] = url.render_as_string(hide_password=False)
    if not environ.get("AMQP_URI"):
        # The configured broker (scheme, credentials, host), with the instance's vhost.
        scheme, _, rest = SharedSettings.load().amqp_uri.partition("://")
        environ["AMQP_URI"] = f"{scheme}://{rest.split('/', 1)[0]}/{vhost(instance)}"
    environ.setdefault("GATEWAY_RATE_LIMIT_PREFIX", f"bookstore:{instance}:ratelimit:")
    return instance


def main(argv: list[str]) -> int:
    """``new <checkout>`` prints a new instance name (bin/run, for .env.local); ``vhost``
    prints the instance's virtual host (if any); ``database <service>`` the name of the
    service's database (for psql)."""
    if argv[:1] == ["new"] and len(argv) == 2:
        print(new_instance_name(Path(argv[1]).resolve()))
        return 0
    if argv == ["vhost"]:
        instance = os.environ.get(INSTANCE_ENV, "").strip()
        if instance and not os.environ.get("AMQP_URI"):
            print(vhost(instance))
        return 0
    if argv[:1] == ["database"] and len(argv) == 2 and argv[1] in SERVICE_PACKAGES:
        use_checkout_environment(os.environ)
        print(make_url(database_url(argv[1])).database)
        return 0
    print(
        "usage: python -m ops.instance new <checkout> | vhost | database <service>", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
