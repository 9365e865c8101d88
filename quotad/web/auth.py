"""Logins and sessions of the console (SPEC "The console": sessions by cookie, HttpOnly and SameSite=Strict; every
form protected against cross-site requests; failed logins rate-limited and logged).

- A session is a random token (32 bytes, `secrets`) in a cookie, mapped in memory to its user, role and its own
  anti-forgery token; it ends when idle for `[web] session_hours`, at logout, or when the daemon restarts (people
  log in again; nothing of theirs is lost: every action is journaled when taken).
- Failed logins are counted per name and per address over a quarter of an hour: after `LIMIT` failures the name
  (after `ADDRESS_LIMIT` the address) is refused for a quarter of an hour, whatever the password; each failure is
  logged with the name and address, never the password. Behind nginx on the same machine the address is the one
  nginx passes in `X-Real-IP` (trusted from a loopback peer only).
- A password is checked with argon2 on a worker thread (about 50 ms of work, off the daemon's loop); an unknown
  name is checked against a dummy hash all the same, so the time taken does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from quotad.config.users import User, hasher, read_users

__all__ = ["ADDRESS_LIMIT", "LIMIT", "WINDOW_S", "Limiter", "Session", "Sessions", "Users"]

log = logging.getLogger(__name__)

LIMIT = 5  # failed logins per name within WINDOW_S before the name is locked out
ADDRESS_LIMIT = 20  # per address: higher, as a township's office may share one address (and a proxy's is one)
WINDOW_S = 15 * 60.0


@dataclass(slots=True)
class Session:
    user: str
    role: str
    csrf: str
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._by_token: dict[str, Session] = {}

    def start(self, user: User) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(user.name, user.role, secrets.token_urlsafe(32))
        self._by_token[token] = session
        self._expire()
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        now = time.monotonic()
        if session is None or now - session.seen > self.idle_s:
            self._by_token.pop(token, None)
            return None
        session.seen = now
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def end_user(self, name: str) -> None:
        """End every session of `name` (removed from the users file, or its role changed)."""
        for token in [t for t, s in self._by_token.items() if s.user == name]:
            del self._by_token[token]

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, s in self._by_token.items() if now - s.seen > self.idle_s]:
            del self._by_token[token]

    def __len__(self) -> int:
        return len(self._by_token)


class Limiter:
    """Failed logins per key (a name, an address) within the window."""

    def __init__(self, limit: int = LIMIT, window_s: float = WINDOW_S) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, deque[float]] = {}

    def locked(self, key: str) -> bool:
        failures = self._recent(key)
        return len(failures) >= self.limit

    def fail(self, key: str) -> None:
        self._recent(key).append(time.monotonic())

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        horizon = time.monotonic() - self.window_s
        while failures and failures[0] < horizon:
            failures.popleft()
        return failures


_DUMMY = hasher().hash(secrets.token_hex(16))  # checked for an unknown name: the same work as for a known one


class Users:
    """The users file, read again when it changes (a user added, a password changed: no restart needed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._users: dict[str, User] = {}
        self.limiter = Limiter()
        self.address_limiter = Limiter(ADDRESS_LIMIT)
        self.refresh()

    def refresh(self) -> dict[str, User]:
        """The users as the file has them now; the last good ones if the file went bad (said in the log)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
        except OSError:
            return self._users
        if stamp != self._stamp:
            try:
                self._users = read_users(self.path)
            except Exception as exc:  # a bad edit keeps the last good users
                log.error("the users file was not taken, the users read before are kept: %s", exc)
            self._stamp = stamp
        return self._users

    async def check(self, name: str, password: str, address: str) -> User | None:
        """The user `name` if `password` is theirs and neither the name nor the address is locked out; else None,
        the failure counted and logged."""
        limiter = self.limiter
        if limiter.locked(name) or self.address_limiter.locked(address):
            log.warning("console login refused for %r from %s: locked out after repeated failures", name, address)
            return None
        user = self.refresh().get(name)
        digest = user.hash if user is not None else _DUMMY
        ok = await asyncio.to_thread(_verify, digest, password)
        if ok and user is not None:
            limiter.clear(name)
            return user
        limiter.fail(name)
        self.address_limiter.fail(address)
        log.warning("console login failed for %r from %s", name, address)
        return None


def _verify(digest: str, password: str) -> bool:
    try:
        return hasher().verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(a.encode(), b.encode())
