"""User API tokens: how they look, and how they are stored (a SHA-256, never the token)."""

import hashlib
import secrets

PREFIX = "ty_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
