"""The masking key: where it comes from, what is derived from it, and what of it may be shown.

The key itself never leaves this process: production computes masks with HMAC-SHA256 under keys
derived from it, one per transform and purpose (so that a transform gives the same output for the same
input in every table, and masked values still join). A derived key travels in the SELECT that production
runs, and so may appear in production's own statement logs; it reveals nothing of the key, and whoever
reads production's logs can read production's raw values anyway. What is shown anywhere else is only the
key's fingerprint, which says whether the key changed since a run masked with it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from psycopg import sql

from sync_assets.engine.errors import ConfigError

KEY_ENV = "SYNC_ASSETS_MASK_KEY"
MIN_LENGTH = 16  # characters: a shorter key could be guessed and every mask undone
_CONTEXT = b"sync_assets mask v1\x00"
_BLOCK = 64  # SHA-256's block size: HMAC pads its key to it


@dataclass(frozen=True)
class MaskKey:
    secret: bytes = field(repr=False)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> MaskKey:
        """The key from SYNC_ASSETS_MASK_KEY; a missing or short key is a config error that names the
        variable, never its value."""
        value = (os.environ if environ is None else environ).get(KEY_ENV, "")
        if not value:
            raise ConfigError(f"{KEY_ENV} is not set: masking needs a key (at least {MIN_LENGTH} characters)")
        if len(value) < MIN_LENGTH:
            raise ConfigError(f"{KEY_ENV} is too short: masking needs at least {MIN_LENGTH} characters")
        return cls(value.encode())

    def derived(self, purpose: str) -> bytes:
        return hmac.new(self.secret, _CONTEXT + purpose.encode(), hashlib.sha256).digest()

    @property
    def fingerprint(self) -> str:
        """Says whether two runs masked with the same key, and nothing else of it."""
        return self.derived("fingerprint").hex()[:16]

    def hmac_sql(self, purpose: str, message: sql.Composable) -> sql.Composable:
        """HMAC-SHA256 of `message` (a bytea expression) under the key derived for `purpose`, with core
        functions only: sha256(k ^ opad || sha256(k ^ ipad || message))."""
        padded = self.derived(purpose).ljust(_BLOCK, b"\x00")
        inner = bytes(b ^ 0x36 for b in padded)
        outer = bytes(b ^ 0x5C for b in padded)
        return sql.SQL("sha256({outer}::bytea || sha256({inner}::bytea || {message}))").format(
            outer=sql.Literal(outer), inner=sql.Literal(inner), message=message
        )

    def __repr__(self) -> str:
        return f"MaskKey(fingerprint={self.fingerprint})"

    __str__ = __repr__
