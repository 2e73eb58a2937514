"""Building blocks every bookstore service shares.

Config, the database dependency, the event envelope and transactional outbox, typed
domain errors, idempotency keys, keyset cursors and JSON logging with correlation ids.
Nothing here knows about a particular service.
"""

from common.notices import silence_import_notices

# Here, because every process imports this package before nameko or eventlet: a
# gateway worker process configures its JSON logging (common.logging) before it
# imports the gateway package.
silence_import_notices()
