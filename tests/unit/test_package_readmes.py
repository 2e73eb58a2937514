"""Every service package has a README whose interface section (RPC methods, events
published and consumed, timers, tables) is what the code and the event contract say."""

import pytest

from common.config import SERVICE_PACKAGES
from ops import package_docs


@pytest.mark.parametrize("service", list(SERVICE_PACKAGES))
def test_the_readme_names_what_the_service_offers_and_owns(service):
    path = package_docs.readme_path(service)
    assert path.exists(), f"{path} is missing"
    readme = path.read_text()
    interface = package_docs.read_interface(service)
    assert interface.rpc, "every service answers RPC (ping at least)"
    assert interface.tables, "every service owns tables"
    assert package_docs.with_interface(readme, interface) == readme, (
        f"{path.name} of {service} is stale: run python -m ops.package_docs"
    )


def test_a_method_missing_from_a_readme_is_noticed():
    interface = package_docs.read_interface("order")
    readme = package_docs.readme_path("order").read_text()
    interface.rpc.append(("a_method_nobody_documented", ""))
    assert package_docs.with_interface(readme, interface) != readme
