"""Opaque, HMAC-signed page tokens and cursors.

A token is base64url(JSON body) "." base64url(HMAC-SHA256(secret, body)). The secret lives in
the database, so cursors stay valid across restarts and a cursor of another deployment fails.
"""

import base64
import hashlib
import hmac
import json
import time

MAX_AGE_SECONDS = 7 * 24 * 3600


class BadToken(Exception):
    """The token is malformed, tampered with, or issued for another query."""


class ExpiredToken(Exception):
    """The token is older than the server keeps tokens."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def query_hash(**fields) -> str:
    """A stable digest of the request fields a token is bound to."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


class Tokens:
    def __init__(self, secret: bytes):
        self._secret = secret

    def issue(self, kind: str, query: str, expires: bool = True, **body) -> str:
        # A feed cursor names a position and never expires, so it carries no issue time: the same
        # position always gives the same cursor (every page of one listing shares its watch_cursor).
        body = dict(body, k=kind, q=query)
        if expires:
            body["t"] = int(time.time())
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        mac = hmac.new(self._secret, raw, hashlib.sha256).digest()
        return f"{_b64(raw)}.{_b64(mac)}"

    def verify(self, kind: str, query: str, token: str, expires: bool = True) -> dict:
        try:
            raw_b64, mac_b64 = token.split(".")
            raw, mac = _unb64(raw_b64), _unb64(mac_b64)
        except ValueError:
            raise BadToken("malformed") from None
        if not hmac.compare_digest(mac, hmac.new(self._secret, raw, hashlib.sha256).digest()):
            raise BadToken("tampered with or issued by another deployment")
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadToken("malformed") from None
        if body.get("k") != kind or body.get("q") != query:
            raise BadToken("issued for another query")
        if expires and time.time() - body.get("t", 0) > MAX_AGE_SECONDS:
            raise ExpiredToken()
        return body
