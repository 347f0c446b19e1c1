"""API keys: who is calling. Keys come from the settings (`SEQATTR_API_KEYS`, `SEQATTR_API_KEYS_FILE`), each
with a name; a request sends one as `Authorization: Bearer <key>` or `X-API-Key: <key>`. With no key
configured every request is anonymous (local `make serve`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from schemas.errors import UnauthorizedError


class ApiKeys:
    """The configured keys; `caller(key)` names the key's owner, comparing in constant time."""

    def __init__(self, table: dict[str, str]) -> None:
        self._keys = [(name, key.encode()) for name, key in table.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def caller(self, presented: str | None) -> str | None:
        """The name of the key presented, None when keys are off; UnauthorizedError otherwise."""
        if not self._keys:
            return None
        if not presented:
            raise UnauthorizedError(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'"
            )
        candidate = presented.encode()
        found = None
        for name, key in self._keys:  # every key is compared, so timing does not tell which one matched
            if hmac.compare_digest(candidate, key):
                found = name
        if found is None:
            raise UnauthorizedError("the API key is not valid")
        return found


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


async def get_caller(request: Request) -> str | None:
    """The calling key's name (None without keys); the name is kept on the request for the access log.
    `async`: no I/O, so no worker-thread hand-off."""
    caller = request.app.state.api_keys.caller(presented_key(request))
    request.state.caller = caller
    return caller


CallerDep = Annotated[str | None, Depends(get_caller)]
"""The name of the API key that made the request (None when keys are off)."""
