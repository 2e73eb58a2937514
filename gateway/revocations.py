"""Access tokens revoked before they expire, known locally to each gateway process.

svc_auth records a revocation when a login is signed out (logout, a reused refresh
token: the token's ``sid``) or when all of a user's tokens must stop (suspension,
deletion, a new password, new roles: every token issued before then). This process
polls ``auth.access_revocations`` from a background thread, like the signing keys
(gateway/security.py), so checking a token stays a dictionary lookup on the event loop:
no call per request. A revocation reaches every gateway within ``poll_seconds``; a
gateway that starts loads those of the last access-token lifetime first.

If auth cannot be reached, the list already loaded keeps being used and new
revocations wait until it answers again (tokens still expire within 15 minutes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

Fetch = Callable[[float | None], dict[str, Any]]
#: Each poll reads again this far back from the newest revocation seen: a transaction
#: in auth that committed after a later one is still read (they last milliseconds).
OVERLAP_SECONDS = 10.0


class RevocationList:
    """Revoked logins (``sid``) and users (tokens issued before a time), by id."""

    def __init__(self, fetch: Fetch | None, poll_seconds: float) -> None:
        self._fetch = fetch
        self._poll_seconds = poll_seconds
        self._sessions: dict[str, float] = {}
        self._users: dict[str, float] = {}
        self._since: float | None = None
        self._kept_seconds = 0.0
        self._loaded = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="token-revocations", daemon=True)
        if fetch is None:  # no source (tests without services): nothing is revoked
            self._loaded.set()

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def start(self) -> None:
        if self._fetch is not None:
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def is_revoked(self, claims: dict[str, Any]) -> bool:
        """Whether verified ``claims`` belong to a revoked login or were issued before a
        revocation of all the user's tokens (auth issues ``iat`` to the millisecond)."""
        session_id = claims.get("sid")
        if isinstance(session_id, str) and session_id in self._sessions:
            return True
        revoked_at = self._users.get(str(claims.get("sub")))
        issued_at = claims.get("iat")
        return (
            revoked_at is not None and isinstance(issued_at, int | float) and issued_at < revoked_at
        )

    def apply(self, items: Iterable[dict[str, Any]], kept_seconds: float) -> None:
        """Adds revocations (as ``auth.access_revocations`` lists them) and forgets those
        older than ``kept_seconds``: the tokens they concern have expired."""
        sessions, users = dict(self._sessions), dict(self._users)
        for item in items:
            if item["session_id"]:
                sessions[item["session_id"]] = item["revoked_at"]
            else:
                users[item["user_id"]] = max(users.get(item["user_id"], 0.0), item["revoked_at"])
        oldest = time.time() - kept_seconds
        # Replaced whole, so the event loop never reads a dict being changed.
        self._sessions = {key: at for key, at in sessions.items() if at >= oldest}
        self._users = {key: at for key, at in users.items() if at >= oldest}

    def poll(self) -> None:
        """Fetches the revocations since the newest seen (less the overlap), page by
        page (pages are in time order; the next starts at the last one's time)."""
        if self._fetch is None:
            return
        since, newest = self._since, None
        while True:
            page = self._fetch(since)
            self.apply(page["items"], float(page["kept_seconds"]))
            if page["items"]:
                newest = page["items"][-1]["revoked_at"]
            if not page["more"] or newest is None or newest == since:
                break  # the last page (or a page of one instant: nothing further to ask)
            since = newest
        if newest is not None:
            self._since = max(self._since or 0.0, newest - OVERLAP_SECONDS)
        self._loaded.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll()
            except Exception as error:  # noqa: BLE001 - keep what we know, try again
                log.warning("could not poll the token revocations: %r", error)
            self._stopping.wait(self._poll_seconds)
