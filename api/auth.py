"""Bearer-token checks. Admin endpoints accept only the admin token: 401 without a token,
403 with a wrong one.
"""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False)


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "admin token required: send Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    expected: str = request.app.state.admin_token
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(403, "this token is not the admin token")


AdminOnly = Depends(require_admin)
