"""Every process's settings (common/config.py): defaults written once, the environment
over them, and a bad value refused in one line that names its variable."""

from __future__ import annotations

from collections import defaultdict

import pytest

from common.config import (
    SERVICE_PACKAGES,
    InvalidSettings,
    ServiceSettings,
    database_url,
    service_config,
    settings_class,
)
from gateway.settings import Settings as GatewaySettings
from ops.config_docs import settings_variables
from svc_auth.settings import Settings as AuthSettings
from svc_notify.settings import Settings as NotifySettings
from svc_order.settings import Settings as OrderSettings
from svc_payment.providers import configured_provider
from svc_payment.settings import Settings as PaymentSettings
from svc_search.settings import Settings as SearchSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No variable a settings class reads, whatever the machine's environment has."""
    for variable in settings_variables():
        monkeypatch.delenv(variable.name, raising=False)
    monkeypatch.setenv("AUTH_KEY_PASSPHRASE", "a passphrase for the tests")


def refusal(cls, **environment: str) -> str:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        with pytest.raises(InvalidSettings) as error:
            cls.load()
    message = str(error.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("service", list(SERVICE_PACKAGES))
def test_every_service_starts_on_its_defaults_with_its_own_database(service):
    settings = settings_class(service).load()
    assert settings.database_url == (
        f"postgresql+psycopg2://bookstore:bookstore@127.0.0.1:5432/bookstore_{service}"
    )
    assert settings.amqp_uri == "pyamqp://guest:guest@127.0.0.1:5672//"
    # One connection per worker (analytics runs fewer workers: its batches share a lock).
    workers = 4 if service == "analytics" else 10
    assert (settings.max_workers, settings.db_pool_size, settings.db_max_overflow) == (
        workers,
        workers,
        0,
    )
    assert database_url(service) == settings.database_url


def test_defaults_are_the_documented_ones():
    order = OrderSettings.load()
    assert (order.call_timeout, order.shipping_fee, order.free_shipping_from) == (5.0, 399, 3500)
    auth = AuthSettings.load()
    assert (auth.login_window_seconds, auth.account_lock_after, auth.lock_seconds) == (900, 10, 900)
    gateway = GatewaySettings.load()
    assert (gateway.port, gateway.rpc_timeout, gateway.read_cache) == (8080, 5.0, True)
    assert gateway.token_issuer == auth.token_issuer == "bookstore-auth"


def test_the_environment_wins_over_a_default(monkeypatch):
    monkeypatch.setenv("ORDER_CALL_TIMEOUT", "7.5")
    monkeypatch.setenv("ORDER_DATABASE_URL", "postgresql+psycopg2://elsewhere/orders")
    monkeypatch.setenv("AMQP_URI", "pyamqp://guest:guest@broker:5672/shop")
    order = OrderSettings.load()
    assert order.call_timeout == 7.5
    assert service_config("order")["DB_URIS"] == {"order:Base": order.database_url}
    assert order.nameko_config()["AMQP_URI"] == "pyamqp://guest:guest@broker:5672/shop"
    monkeypatch.setenv("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("GATEWAY_JWKS_REFRESH", "60")
    assert NotifySettings.load().webhook_allow_private is True
    assert GatewaySettings.load().jwks_refresh_interval == 60


def test_a_bad_value_is_refused_naming_its_variable_and_what_is_expected():
    message = refusal(OrderSettings, ORDER_CALL_TIMEOUT="5s")
    assert message.startswith("ORDER_CALL_TIMEOUT='5s': ")
    assert "valid number" in message
    assert refusal(OrderSettings, ORDER_CALL_TIMEOUT="-1").startswith(
        "ORDER_CALL_TIMEOUT='-1': Input should be greater than 0"
    )
    assert refusal(NotifySettings, NOTIFY_SMTP_STARTTLS="maybe").startswith(
        "NOTIFY_SMTP_STARTTLS='maybe': Input should be a valid boolean"
    )
    assert refusal(GatewaySettings, GATEWAY_PORT="http").startswith("GATEWAY_PORT='http': ")
    assert "expected group=requests/window" in refusal(
        GatewaySettings, GATEWAY_RATE_LIMITS="default=lots"
    )
    assert refusal(ServiceSettings, LOG_LEVEL="chatty").startswith("LOG_LEVEL='chatty': ")


def test_every_bad_value_is_named_on_the_one_line():
    message = refusal(OrderSettings, ORDER_CALL_TIMEOUT="5s", ORDER_SHIPPING_FEE="cheap")
    assert "ORDER_CALL_TIMEOUT='5s'" in message and "ORDER_SHIPPING_FEE='cheap'" in message


def test_a_required_secret_that_is_missing_is_named(monkeypatch):
    monkeypatch.delenv("AUTH_KEY_PASSPHRASE")
    assert refusal(AuthSettings) == "AUTH_KEY_PASSPHRASE is not set: it is required"
    assert "AUTH_KEY_PASSPHRASE=''" in refusal(AuthSettings, AUTH_KEY_PASSPHRASE="")
    # Tools that need only the database do not need the service's secrets.
    assert database_url("auth").endswith("/bookstore_auth")


def test_the_mock_payment_provider_is_refused_in_production():
    message = refusal(PaymentSettings, BOOKSTORE_ENVIRONMENT="production")
    assert message.startswith("PAYMENT_PROVIDER=mock takes no real payments")
    # The chart leaves PAYMENT_PROVIDER empty on purpose: it must be chosen.
    assert refusal(PaymentSettings, PAYMENT_PROVIDER="").startswith("PAYMENT_PROVIDER='': ")
    assert refusal(PaymentSettings, PAYMENT_PROVIDER="paypal").startswith(
        "PAYMENT_PROVIDER='paypal': Input should be 'mock' or 'stripe'"
    )


def test_stripe_needs_its_keys_and_then_is_the_provider(monkeypatch):
    monkeypatch.setenv("PAYMENT_PROVIDER", "stripe")
    assert "STRIPE_API_KEY is not set" in refusal(PaymentSettings)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    assert "STRIPE_WEBHOOK_SECRET is not set" in refusal(PaymentSettings)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
    monkeypatch.setenv("BOOKSTORE_ENVIRONMENT", "production")
    assert configured_provider(PaymentSettings.load()).name == "stripe"
    monkeypatch.setenv("PAYMENT_PROVIDER", "mock")
    monkeypatch.setenv("BOOKSTORE_ENVIRONMENT", "staging")
    assert configured_provider(PaymentSettings.load()).name == "mock"


def test_elasticsearch_needs_an_address():
    assert refusal(SearchSettings, SEARCH_BACKEND="elasticsearch") == (
        "SEARCH_BACKEND=elasticsearch needs SEARCH_ELASTICSEARCH_URL"
    )


def test_an_empty_number_or_flag_is_its_default_and_empty_text_is_a_value(monkeypatch):
    monkeypatch.setenv("ORDER_CALL_TIMEOUT", "")
    monkeypatch.setenv("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "")  # bin/run's own default
    monkeypatch.setenv("GATEWAY_READ_CACHE", "")
    monkeypatch.setenv("GATEWAY_REDIS_URL", "")  # rate limiting off
    assert OrderSettings.load().call_timeout == 5.0
    assert NotifySettings.load().webhook_allow_private is False
    gateway = GatewaySettings.load()
    assert (gateway.read_cache, gateway.redis_url) == (True, "")


def test_a_service_metrics_port_wins_over_the_machine_wide_one(monkeypatch):
    monkeypatch.setenv("METRICS_PORT", "9100")
    assert settings_class("search").load().serving_metrics_port == 9100
    monkeypatch.setenv("SEARCH_METRICS_PORT", "9107")
    assert settings_class("search").load().serving_metrics_port == 9107
    assert settings_class("order").load().serving_metrics_port == 9100


def test_a_variable_read_by_several_processes_has_one_default_and_meaning():
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for variable in settings_variables():
        seen[variable.name].add((variable.default, variable.description))
    assert {name: meanings for name, meanings in seen.items() if len(meanings) > 1} == {}
    assert {"AMQP_URI", "AUTH_TOKEN_ISSUER", "ORDER_DATABASE_URL", "GATEWAY_PORT"} <= set(seen)
