"""Notification templates: Jinja2 files in svc_notify/templates, rendered when sent.

Each notification ``<name>`` has ``<name>.subject``, ``<name>.txt`` and ``<name>.html``
for email and, if it may go by SMS, ``<name>.sms``. Undefined variables are errors
(StrictUndefined): a template that refers to a field the event lacks fails loudly, is
parked with the reason and can be replayed once fixed, rather than sending "Hello ,".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from common.money import digits

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def format_money(value: dict[str, Any]) -> str:
    """``{"amount": 4000, "currency": "EUR"}`` as ``40.00 EUR``."""
    places = digits(value["currency"])
    return f"{value['amount'] / 10**places:.{places}f} {value['currency']}"


class Renderer:
    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        self.directory = directory
        self.environment = Environment(
            loader=FileSystemLoader(directory),
            undefined=StrictUndefined,
            autoescape=select_autoescape(["html"]),
        )
        self.environment.filters["money"] = format_money

    def _render(self, filename: str, context: dict[str, Any]) -> str:
        return self.environment.get_template(filename).render(context)

    def email(self, name: str, context: dict[str, Any]) -> dict[str, str]:
        return {
            # One line: a newline in a Subject header would start another header.
            "subject": " ".join(self._render(f"{name}.subject", context).split()),
            "text": self._render(f"{name}.txt", context),
            "html": self._render(f"{name}.html", context),
        }

    def sms(self, name: str, context: dict[str, Any]) -> str:
        return self._render(f"{name}.sms", context).strip()

    def has_sms(self, name: str) -> bool:
        return (self.directory / f"{name}.sms").is_file()
