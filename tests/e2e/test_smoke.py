from common.config import SERVICE_PACKAGES
from tests.support import assert_problem


def test_health_and_ready(api):
    assert api.get(f"{api.platform.base_url}/health").json() == {"status": "ok"}
    ready = api.get(f"{api.platform.base_url}/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "broker": "ok",
        **dict.fromkeys(SERVICE_PACKAGES, "ok"),
        "token_keys": "ok",
        "token_revocations": "ok",
    }


def test_create_and_read_product(api):
    created = api.create_product(title="Foundation", authors=["Isaac Asimov"])
    fetched = api.get(f"/products/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created


def test_unknown_product_is_404(api):
    assert_problem(api.get("/products/00000000-0000-4000-8000-000000000000"), 404)
