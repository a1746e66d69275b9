"""Where skyshield keeps its state: the database URL and the pseudonymisation key.

Embedded default: a SQLite file and a key file in the working folder, created on first use.
Override with environment variables (``SKYSHIELD_DB``, ``SKYSHIELD_KEY_FILE``) or CLI flags.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    #: ``sqlite:///path/to/file.db`` (default) or, later, ``postgresql://...``.
    db_url: str = "sqlite:///skyshield.db"
    #: File holding the HMAC key that pseudonymises phone numbers at rest.
    key_file: Path = Path("skyshield.key")

    @property
    def sqlite_path(self) -> Path:
        if not self.db_url.startswith("sqlite:///"):
            raise ValueError(f"not a SQLite URL: {self.db_url}")
        return Path(self.db_url.removeprefix("sqlite:///"))

    def hmac_key(self) -> bytes:
        """The pseudonymisation key; a random one is written on first use (mode 0600)."""
        if self.key_file.exists():
            return bytes.fromhex(self.key_file.read_text().strip())
        key = secrets.token_bytes(32)
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return key


def load_settings(db_url: str | None = None, key_file: str | Path | None = None) -> Settings:
    return Settings(
        db_url=db_url or os.environ.get("SKYSHIELD_DB", Settings.db_url),
        key_file=Path(key_file or os.environ.get("SKYSHIELD_KEY_FILE", Settings.key_file)),
    )
