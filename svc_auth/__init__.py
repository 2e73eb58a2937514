"""Accounts, roles and access tokens (nameko service ``auth``)."""
