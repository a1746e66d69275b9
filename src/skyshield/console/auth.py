"""Console users and sessions: scrypt-hashed passwords, random session tokens kept only as SHA-256.

Roles: ``operator`` (everything), ``reviewer`` (reads, labels the review queue), ``auditor`` (reads only).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from skyshield.disposal.schema import DisposalDB, iso

ROLES = ("operator", "reviewer", "auditor")
#: What each role may do beyond reading.
PERMISSIONS = {"operator": {"label", "block"}, "reviewer": {"label"}, "auditor": set()}
SESSION_HOURS = 12
_N, _R, _P = 2**14, 8, 1
MIN_PASSWORD = 10


class AuthError(ValueError):
    pass


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                         dklen=len(digest) // 2)
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, set())


# A hash to compare against when the user does not exist, so a wrong name takes as long as a wrong password.
_DUMMY = hash_password(secrets.token_hex(8))


class Users:
    def __init__(self, db: DisposalDB):
        self.db = db

    def add(self, name: str, role: str, password: str) -> User:
        name = (name or "").strip()
        if not name or len(name) > 64:
            raise AuthError("a user name is 1 to 64 characters")
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
        if len(password or "") < MIN_PASSWORD:
            raise AuthError(f"a password needs at least {MIN_PASSWORD} characters")
        with self.db.write() as conn:
            conn.execute("INSERT INTO console_users VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
                         " role = excluded.role, password = excluded.password", (name, role, hash_password(password),
                                                                                  iso()))
            conn.execute("DELETE FROM console_sessions WHERE name = ?", (name,))  # a new password ends old sessions
        return User(name, role)

    def login(self, name: str, password: str) -> str:
        """A new session token for a correct name and password; :class:`AuthError` otherwise."""
        row = self.db.one("SELECT name, role, password FROM console_users WHERE name = ?", ((name or "").strip(),))
        ok = verify_password(password or "", row["password"] if row else _DUMMY)
        if not row or not ok:
            raise AuthError("wrong user name or password")
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
        with self.db.write() as conn:
            conn.execute("DELETE FROM console_sessions WHERE expires_at < ?", (iso(),))
            conn.execute("INSERT INTO console_sessions VALUES (?, ?, ?)",
                         (_token_hash(token), row["name"], iso(expires)))
        return token

    def session(self, token: str | None) -> User | None:
        if not token:
            return None
        row = self.db.one("SELECT u.name, u.role FROM console_sessions s JOIN console_users u ON u.name = s.name"
                          " WHERE s.token_hash = ? AND s.expires_at > ?", (_token_hash(token), iso()))
        return User(row["name"], row["role"]) if row else None

    def logout(self, token: str | None) -> None:
        if token:
            with self.db.write() as conn:
                conn.execute("DELETE FROM console_sessions WHERE token_hash = ?", (_token_hash(token),))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
