"""Where skyshield keeps its state and the limits it enforces on input.

Embedded default: a SQLite file and a key file in the working folder, created on first use.
Override with environment variables (``SKYSHIELD_DB``, ``SKYSHIELD_KEY_FILE``, ``SKYSHIELD_MAX_BATCH``,
``SKYSHIELD_MAX_TEXT_CHARS``, ``SKYSHIELD_MAX_BODY_BYTES``) or CLI flags.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    #: ``sqlite:///path/to/file.db`` (default) or ``postgresql://user@host:port/db``.
    db_url: str = "sqlite:///skyshield.db"
    #: File holding the HMAC key that pseudonymises phone numbers at rest.
    key_file: Path = Path("skyshield.key")
    #: Most messages in one API request (more is HTTP 413).
    max_batch: int = 10_000
    #: Longest message text accepted, in characters (a 255-part concatenated SMS is ~17,000 UCS-2 characters;
    #: real traffic stays far below). Longer texts are refused with an error naming the item or line.
    max_text_chars: int = 10_000
    #: Largest HTTP request body (more is HTTP 413 before it is parsed).
    max_body_bytes: int = 64 * 1024 * 1024

    @property
    def sqlite_path(self) -> Path:
        # Every table (verdicts, consent ledger, disposal, lists, keys, audit) lives in the one database the URL
        # names; with PostgreSQL there is no SQLite file at all.
        if not self.db_url.startswith("sqlite:///"):
            raise ValueError(f"not a SQLite URL: {self.db_url} (write sqlite:///path/to/file.db)")
        return Path(self.db_url.removeprefix("sqlite:///"))

    def hmac_key(self) -> bytes:
        """The pseudonymisation key; a random one is written on first use (mode 0600)."""
        if self.key_file.exists():
            return bytes.fromhex(self.key_file.read_text().strip())
        key = secrets.token_bytes(32)
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process wrote it first: use theirs
            return bytes.fromhex(self.key_file.read_text().strip())
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return key


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


def load_settings(db_url: str | None = None, key_file: str | Path | None = None) -> Settings:
    """Settings from the arguments, else the environment, else the defaults.

    Without an explicit key file, the key lives beside the SQLite database (``skyshield.db`` →
    ``skyshield.key``), so a database and the key that reads its pseudonyms travel together.
    """
    db_url = db_url or os.environ.get("SKYSHIELD_DB", Settings.db_url)
    key_file = key_file or os.environ.get("SKYSHIELD_KEY_FILE")
    if not key_file:
        key_file = (
            Path(db_url.removeprefix("sqlite:///")).with_suffix(".key")
            if db_url.startswith("sqlite:///")
            else Settings.key_file
        )
    return Settings(
        db_url=db_url,
        key_file=Path(key_file),
        max_batch=_env_int("SKYSHIELD_MAX_BATCH", Settings.max_batch),
        max_text_chars=_env_int("SKYSHIELD_MAX_TEXT_CHARS", Settings.max_text_chars),
        max_body_bytes=_env_int("SKYSHIELD_MAX_BODY_BYTES", Settings.max_body_bytes),
    )
