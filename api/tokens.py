"""Admin routes for user tokens: create (the token is shown once), list, revoke.

Creating the first token ends open mode: from then on every task endpoint needs a token.
Revoking the last active one brings open mode back (on loopback only; see `api.auth`).
"""

import secrets

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from api.auth import AdminOnly
from api.deps import JsonBody, ReadSession, WriteSession
from api.errors import error_responses
from models.clock import isoformat_z, utcnow
from models.tables import ApiToken
from models.tokens import hash_token, new_token

router = APIRouter(
    prefix="/admin/tokens", dependencies=[AdminOnly], responses=error_responses(401, 403, 503)
)


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.@ -]+$")


class TokenRead(BaseModel):
    id: str
    name: str
    created_at: str
    revoked_at: str | None
    token: str | None = None  # only in the answer that creates it

    @classmethod
    def from_row(cls, row: ApiToken, token: str | None = None) -> "TokenRead":
        return cls(
            id=row.id,
            name=row.name,
            created_at=isoformat_z(row.created_at) or "",
            revoked_at=isoformat_z(row.revoked_at),
            token=token,
        )


class TokenList(BaseModel):
    items: list[TokenRead]


@router.post(
    "",
    status_code=201,
    response_model=TokenRead,
    dependencies=[JsonBody],
    responses=error_responses(413, 415, 422),
)
def create_token(body: TokenCreate, session: WriteSession, request: Request) -> TokenRead:
    """Create a user token; its secret is in this answer only (only its hash is kept)."""
    token = new_token()
    row = ApiToken(id="u-" + secrets.token_hex(6), name=body.name, token_hash=hash_token(token))
    session.add(row)
    session.commit()
    request.app.state.active_tokens.created()
    return TokenRead.from_row(row, token)


@router.get("", response_model=TokenList)
def list_tokens(session: ReadSession) -> TokenList:
    """Every user token, revoked ones included; never the secrets."""
    rows = session.exec(select(ApiToken).order_by(col(ApiToken.created_at)))
    return TokenList(items=[TokenRead.from_row(row) for row in rows])


@router.delete("/{token_id}", response_model=TokenRead, responses=error_responses(404, 422))
def revoke_token(token_id: str, session: WriteSession, request: Request) -> TokenRead:
    """Revoke a user token: it is refused from now on, and its open streams end; its tasks
    stay as they are."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise HTTPException(404, f"token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
    request.app.state.active_tokens.revoked()  # open mode may be back: read again
    request.app.state.streams.revoked(row.id)  # other processes notice within a second
    return TokenRead.from_row(row)
