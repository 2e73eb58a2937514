"""Building blocks every bookstore service shares.

Config, the database dependency, the event envelope and transactional outbox, typed
domain errors, idempotency keys, keyset cursors and JSON logging with correlation ids.
Nothing here knows about a particular service.
"""
