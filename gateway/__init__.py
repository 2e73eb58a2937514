"""The REST gateway: OpenAPI 3.1 in, Nameko RPC out. No business rules live here."""

from common.notices import silence_import_notices

# Here rather than in __main__: uvicorn's worker processes import gateway.app afresh.
silence_import_notices()
