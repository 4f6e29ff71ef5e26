"""API keys: where a request carries one, and the constant-time check against the configured keys.

Keys are never logged or echoed. HTTP edge only: must not import the engine or onnxruntime.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from service.api.errors import AdminDisabled, Unauthorized

API_KEY_HEADER = "X-API-Key"


def key_from_headers(request: Request) -> str | None:
    """`Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return _as_utf8(credentials.strip())
    key = request.headers.get(API_KEY_HEADER)
    return _as_utf8(key) if key else None


def _as_utf8(header_value: str) -> str:
    """Starlette reads header bytes as latin-1; clients send a non-ASCII key as UTF-8 (as the key is
    configured and as it arrives in a LibreTranslate body), so read the bytes again as UTF-8 where
    they are."""
    try:
        return header_value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return header_value


def key_matches(keys: list[bytes], candidate: str | None) -> bool:
    if candidate is None:
        return False
    # Digests first, so compare_digest sees equal lengths and the key length does not leak either;
    # every key is compared, so timing does not tell which one matched.
    offered = hashlib.sha256(candidate.encode("utf-8", "surrogatepass")).digest()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(offered, hashlib.sha256(key).digest())
    return matched


def check_api_key(keys: list[bytes], candidate: str | None) -> None:
    """No keys configured: everything passes. Otherwise the candidate must match one."""
    if keys and not key_matches(keys, candidate):
        raise Unauthorized("missing or invalid API key" if candidate else "an API key is required")


def check_admin_key(keys: list[bytes], candidate: str | None) -> None:
    """Admin actions always need a key; with none configured they are disabled."""
    if not keys:
        raise AdminDisabled("admin actions are disabled: set TRANSLATOR_API_KEYS to enable them")
    check_api_key(keys, candidate)
