"""The SDK generated from openapi/bookstore.yaml (``bookstore sdk``) works against the
real gateway: a customer's journey through typed calls and models, no hand-written HTTP.

The journey is a list of steps that share one state: an account and an address, the
catalog (read page by page with the package's iterator), the cart, a paid order
cancelled and refunded, a declined card, and problems both as typed return values and as
typed exceptions (``problems.connect``). A new capability is one more step function in
``JOURNEY``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from common.schemas import spec_document
from ops.sdk import PACKAGE_NAME
from tests.support import eventually, unique_isbn


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, made the way an SDK user makes it (the real CLI command)."""
    output = tmp_path_factory.mktemp("sdk") / "bookstore-sdk"
    completed = subprocess.run(
        [sys.executable, "-m", "ops.cli", "sdk", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    sys.path.insert(0, str(output))
    try:
        yield importlib.import_module(PACKAGE_NAME)
    finally:
        sys.path.remove(str(output))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE_NAME]:
            del sys.modules[name]


def sdk_module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE_NAME}.{name}")


@dataclass
class Journey:
    """What one step leaves for the next."""

    sdk: ModuleType
    api_url: str
    admin_email: str
    admin_password: str
    email: str = field(default_factory=lambda: f"sdk-{uuid.uuid4().hex[:10]}@example.com")
    password: str = "an sdk user's password"
    customer: Any = None  # AuthenticatedClient of the customer
    address_id: uuid.UUID | None = None
    product_id: uuid.UUID | None = None
    _admin: Any = None

    def anonymous(self) -> Any:
        return self.sdk.Client(base_url=self.api_url, raise_on_unexpected_status=True)

    def login(self, email: str, password: str) -> Any:
        """Logs in through the SDK; returns an authenticated client."""
        models = sdk_module("models")
        login = sdk_module("api.auth.login")
        with self.anonymous() as client:
            credentials = models.Credentials(email=email, password=password)
            tokens = login.sync(client=client, body=credentials)
        assert isinstance(tokens, models.TokenPair), tokens
        assert tokens.token_type == "Bearer"
        assert tokens.refresh_token
        return self.sdk.AuthenticatedClient(
            base_url=self.api_url, token=tokens.access_token, raise_on_unexpected_status=True
        )

    def admin(self) -> Any:
        """The administrator's client, logged in once."""
        if self._admin is None:
            self._admin = self.login(self.admin_email, self.admin_password)
        return self._admin


def register_and_log_in(journey: Journey) -> None:
    models = sdk_module("models")
    register = sdk_module("api.auth.register")
    get_me = sdk_module("api.account.get_me")
    with journey.anonymous() as client:
        response = register.sync_detailed(
            client=client,
            body=models.Registration(
                email=journey.email, password=journey.password, accept_terms=True, name="Ada"
            ),
            idempotency_key=str(uuid.uuid4()),
        )
    assert response.status_code == 202, response.content
    assert isinstance(response.parsed, models.Accepted)
    journey.customer = journey.login(journey.email, journey.password)
    me = get_me.sync(client=journey.customer)
    assert isinstance(me, models.User)
    assert me.email == journey.email
    assert me.name == "Ada"
    assert [role.value for role in me.roles] == ["customer"]


def add_an_address(journey: Journey) -> None:
    models = sdk_module("models")
    add_address = sdk_module("api.account.add_address")
    list_addresses = sdk_module("api.account.list_addresses")
    fields = models.AddressFields(
        recipient="Ada Lovelace",
        line1="12 St James's Square",
        city="London",
        postal_code="SW1Y 4JH",
        country="GB",
        is_default=True,
    )
    address = add_address.sync(
        client=journey.customer, body=fields, idempotency_key=str(uuid.uuid4())
    )
    assert isinstance(address, models.Address), address
    assert address.is_default is True
    assert address.line2 is None  # `type: [string, "null"]` reads back as None
    listed = list_addresses.sync(client=journey.customer)
    assert [item.id for item in listed.items] == [address.id]
    journey.address_id = address.id


def browse_the_catalog(journey: Journey) -> None:
    models = sdk_module("models")
    admin = journey.admin()
    category = sdk_module("api.catalog.create_category").sync(
        client=admin, body=models.CategoryCreate(slug="sdk-fiction", name="Fiction")
    )
    assert isinstance(category, models.Category), category
    created = sdk_module("api.catalog.create_product").sync(
        client=admin,
        body=models.ProductCreate(
            isbn13=unique_isbn(),
            title="Generated, Not Written",
            authors=["A. Client"],
            price=models.Price(amount=1999, currency="EUR"),
            category_id=category.id,
            dimensions_mm=[130, 200, 25],
        ),
        idempotency_key=str(uuid.uuid4()),
    )
    assert isinstance(created, models.Product), created

    with journey.anonymous() as client:
        categories = sdk_module("api.catalog.list_categories").sync(client=client)
        assert [item.slug for item in categories.items] == ["sdk-fiction"]
        page = sdk_module("api.catalog.list_products").sync(
            client=client, category=category.id, limit=5, sort=models.ListProductsSort("-price")
        )
        assert isinstance(page, models.ProductPage)
        assert [item.id for item in page.items] == [created.id]
        assert page.next_cursor is None
        product = sdk_module("api.catalog.get_product").sync(product_id=created.id, client=client)
    assert isinstance(product, models.Product)
    assert product.price.amount == 1999
    assert product.dimensions_mm == [130, 200, 25]
    journey.product_id = product.id


def errors_are_typed_problems(journey: Journey) -> None:
    models = sdk_module("models")
    admin = journey.admin()
    isbn = unique_isbn()
    bad_isbn = isbn[:-1] + str((int(isbn[-1]) + 1) % 10)
    response = sdk_module("api.catalog.create_product").sync_detailed(
        client=admin,
        body=models.ProductCreate(
            isbn13=bad_isbn,
            title="Wrong Check Digit",
            authors=["A. Client"],
            price=models.Price(amount=100, currency="EUR"),
        ),
    )
    assert response.status_code == 422
    problem = response.parsed
    assert isinstance(problem, models.InvalidInputProblem)
    assert problem.status == 422
    assert problem.field == "isbn13"
    assert problem.type_ == "urn:bookstore:problem:invalid-input"
    assert problem.correlation_id == response.headers["X-Request-ID"]
    # A customer may not create products: a typed 403, not an exception.
    forbidden = sdk_module("api.catalog.create_product").sync_detailed(
        client=journey.customer,
        body=models.ProductCreate(
            isbn13=unique_isbn(),
            title="Not Yours To Sell",
            authors=["A. Client"],
            price=models.Price(amount=100, currency="EUR"),
        ),
    )
    assert forbidden.status_code == 403
    assert isinstance(forbidden.parsed, models.Problem)


STOCK = 3


def available(journey: Journey) -> int:
    admin = journey.admin()
    stock = sdk_module("api.catalog.get_stock").sync(product_id=journey.product_id, client=admin)
    assert isinstance(stock, sdk_module("models").Stock), stock
    return stock.available


def fill_the_cart(journey: Journey, quantity: int = 2) -> None:
    models = sdk_module("models")
    admin = journey.admin()
    stock = sdk_module("api.catalog.set_stock").sync(
        product_id=journey.product_id, client=admin, body=models.StockUpdate(on_hand=STOCK)
    )
    assert isinstance(stock, models.Stock), stock
    assert (stock.on_hand, stock.reserved, stock.available) == (STOCK, 0, STOCK)
    cart = sdk_module("api.orders.set_cart_item").sync(
        product_id=journey.product_id,
        client=journey.customer,
        body=models.CartItemUpdate(quantity=quantity),
    )
    assert isinstance(cart, models.Cart), cart
    (line,) = cart.items
    assert (line.product_id, line.quantity, line.available) == (journey.product_id, quantity, STOCK)
    assert cart.subtotal.amount == 1999 * quantity


def check_out_list_and_cancel(journey: Journey) -> None:
    models = sdk_module("models")
    place_order = sdk_module("api.orders.place_order")
    get_order = sdk_module("api.orders.get_order")
    checkout = models.OrderCreate(
        shipping_address_id=journey.address_id, payment_method="pm_card_visa"
    )
    key = str(uuid.uuid4())
    order = place_order.sync(client=journey.customer, body=checkout, idempotency_key=key)
    assert isinstance(order, models.Order), order
    assert order.status == models.OrderStatus.PAID
    assert order.total.amount == 2 * 1999  # free shipping from 35.00
    assert order.payment.status == models.PaymentStatus.AUTHORIZED
    assert order.payment.card.last4 == "4242"
    assert available(journey) == STOCK - 2
    # The same key is the same order, not a second charge.
    again = place_order.sync_detailed(client=journey.customer, body=checkout, idempotency_key=key)
    assert again.status_code == 201
    assert again.parsed.id == order.id

    orders = sdk_module("api.orders.list_orders").sync(client=journey.customer)
    assert isinstance(orders, models.OrderPage)
    assert [item.id for item in orders.items] == [order.id]

    cancelled = sdk_module("api.orders.cancel_order").sync(
        order_id=order.id, client=journey.customer
    )
    assert isinstance(cancelled, models.Order), cancelled
    assert cancelled.status in {models.OrderStatus.CANCELLED, models.OrderStatus.REFUNDED}

    def refunded() -> None:
        final = get_order.sync(order_id=order.id, client=journey.customer)
        assert final.status == models.OrderStatus.REFUNDED, final.status
        assert final.payment.status == models.PaymentStatus.REFUNDED

    eventually(refunded)
    assert available(journey) == STOCK


def a_declined_checkout_is_a_typed_402(journey: Journey) -> None:
    models = sdk_module("models")
    fill_the_cart(journey, quantity=1)
    response = sdk_module("api.orders.place_order").sync_detailed(
        client=journey.customer,
        body=models.OrderCreate(
            shipping_address_id=journey.address_id, payment_method="pm_card_chargeDeclined"
        ),
        idempotency_key=str(uuid.uuid4()),
    )
    assert response.status_code == 402, response.content
    problem = response.parsed
    assert isinstance(problem, models.PaymentDeclinedProblem)
    assert problem.type_ == "urn:bookstore:problem:payment-declined"
    # The problem type's extensions are typed fields of its model.
    assert problem.decline_code == "card_declined"
    order = sdk_module("api.orders.get_order").sync(
        order_id=problem.order_id, client=journey.customer
    )
    assert order.status == models.OrderStatus.CANCELLED
    assert order.cancel_reason == "payment_declined"
    assert order.payment.status == models.PaymentStatus.DECLINED
    assert available(journey) == STOCK


def problems_are_raised_as_typed_errors(journey: Journey) -> None:
    models = sdk_module("models")
    problems = sdk_module("problems")
    # One exception class per problem type the spec documents, and no other.
    spec_types = {
        part["properties"]["type"]["const"]
        for schema in spec_document()["components"]["schemas"].values()
        for part in schema.get("allOf", [])
        if "const" in part.get("properties", {}).get("type", {})
    }
    assert set(problems.ERRORS) == spec_types
    fill_the_cart(journey, quantity=1)
    with problems.connect(journey.api_url, token=journey.customer.token) as client:
        with pytest.raises(problems.PaymentDeclined) as declined:
            sdk_module("api.orders.place_order").sync(
                client=client,
                body=models.OrderCreate(
                    shipping_address_id=journey.address_id,
                    payment_method="pm_card_chargeDeclined",
                ),
                idempotency_key=str(uuid.uuid4()),
            )
        assert declined.value.status_code == 402
        assert declined.value.decline_code == "card_declined"
        assert isinstance(declined.value.problem, models.PaymentDeclinedProblem)
        assert declined.value.problem.order_id == uuid.UUID(declined.value.order_id)
        assert declined.value.correlation_id == declined.value.headers["X-Request-ID"]

        with pytest.raises(problems.InvalidRequest) as invalid:
            sdk_module("api.orders.set_cart_item").sync(
                product_id=journey.product_id,
                client=client,
                body=models.CartItemUpdate(quantity=0),
            )
        assert [pointer for pointer, _detail in invalid.value.errors] == ["/body/quantity"]
        assert isinstance(invalid.value.problem, models.InvalidRequestProblem)

        with pytest.raises(problems.NotFound):
            sdk_module("api.catalog.get_product").sync(product_id=uuid.uuid4(), client=client)
        # A missing scope is an about:blank problem: the base class, still typed.
        with pytest.raises(problems.ApiError) as forbidden:
            sdk_module("api.catalog.get_stock").sync(product_id=journey.product_id, client=client)
        assert (type(forbidden.value), forbidden.value.status_code) == (problems.ApiError, 403)
    assert available(journey) == STOCK


def every_page_is_iterated(journey: Journey) -> None:
    models = sdk_module("models")
    list_products = sdk_module("api.catalog.list_products")
    admin = journey.admin()
    first = sdk_module("api.catalog.get_product").sync(product_id=journey.product_id, client=admin)
    for title in ("Paged, One", "Paged, Two", "Paged, Three", "Paged, Four"):
        created = sdk_module("api.catalog.create_product").sync(
            client=admin,
            body=models.ProductCreate(
                isbn13=unique_isbn(),
                title=title,
                authors=["A. Client"],
                price=models.Price(amount=999, currency="EUR"),
                category_id=first.category_id,
            ),
        )
        assert isinstance(created, models.Product), created
    pages = sdk_module("pages")
    with journey.anonymous() as client:
        titles = [
            product.title
            for product in pages.iterate(
                list_products, client=client, category=first.category_id, limit=2
            )
        ]
        # Five books, two a page: three pages, in the order asked for, none twice.
        assert titles == sorted(titles) and len(titles) == len(set(titles)) == 5
        assert list_products.sync(client=client, category=first.category_id, limit=2).next_cursor


JOURNEY: tuple[Callable[[Journey], None], ...] = (
    register_and_log_in,
    add_an_address,
    browse_the_catalog,
    fill_the_cart,
    check_out_list_and_cancel,
    a_declined_checkout_is_a_typed_402,
    errors_are_typed_problems,
    problems_are_raised_as_typed_errors,
    every_page_is_iterated,
)


# Setup runs the generator as a subprocess (it formats a few hundred modules with ruff)
# and the journey is long: more than the default 120 s on a loaded 2-core machine.
@pytest.mark.timeout(420)
def test_a_customer_journey_through_the_generated_sdk(api, sdk):
    journey = Journey(
        sdk=sdk,
        api_url=api.platform.api,
        admin_email=api.platform.admin.email,
        admin_password=api.platform.admin.password,
    )
    for step in JOURNEY:
        step(journey)
