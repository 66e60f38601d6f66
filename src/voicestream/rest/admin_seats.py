"""``/v1/admin/seats`` and ``/v1/admin/usage``: the caller's workspace's seats, as one console.

A console over the same domain services as ``/v1/workspaces/{id}/members`` (``identity/members.py``
for invitations, role changes and removals, with their owner rules, socket closing and audit;
``identity/quotas.py`` for per-seat quotas), for the workspace of the caller's own key or
session (contract: no workspace in the path). Listing shows every member with their role,
their own quotas, the quota that applies (their own, else the server's default seat quota)
and what they used this calendar month, plus the pending invitations.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..errors import NotFound
from ..identity.members import MEMBERS
from ..identity.quotas import month_start, seat_quota_default
from ..identity.request_principal import principal_of
from ..store.invitations import MAX_PAGE_SIZE as MAX_INVITATION_PAGE
from ..store.keys import Principal, Role
from ..store.members import Member
from ..store.usage import USAGE_KINDS, UsageGroup, UsageKind, decode_cursor
from .bodies import read_model, read_query
from .operator import PeriodQuery
from .resources import SETTINGS, USAGE
from .usage import UsageTotals
from .workspaces import (
    InvitationModel,
    InviteBody,
    MemberChangeBody,
    SeatModel,
    SeatQuotasModel,
    change_seat,
    invite_seat,
    remove_seat,
    seat_of,
)

__all__ = [
    "AdminSeat",
    "SeatList",
    "SeatUsage",
    "SeatUsagePage",
    "SeatUsageQuery",
    "seats_admin_routes",
]

_USAGE_PAGE = 1000  # seats read at once while listing (one page of store/usage.groups)


class AdminSeat(SeatModel):
    # The quota that applies to the seat: its own, else the server's default seat quota
    # (null: no seat limit, within the workspace's own).
    effective_quotas: SeatQuotasModel
    used: UsageTotals  # this calendar month (UTC)


class SeatList(BaseModel):
    since: datetime  # start of the month ``used`` counts from
    seats: list[AdminSeat]
    invitations: list[InvitationModel]  # pending


class SeatUsageQuery(PeriodQuery):
    user_id: UUID | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class SeatUsage(UsageTotals):
    # null: usage of no member (a command-line key's, or a member since removed)
    user_id: UUID | None
    email: str | None = None  # a current member's
    role: Role | None = None


class SeatUsagePage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: datetime
    until: datetime | None
    data: list[SeatUsage]
    next_cursor: str | None  # None on the last page


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def _user_id(request: web.Request) -> UUID:
    raw = request.match_info["user_id"]
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound("no such member", details={"user_id": raw}) from None


async def _month_usage(request: web.Request, principal: Principal) -> dict[UUID | None, UsageGroup]:
    usage = request.config_dict[USAGE]
    since = month_start()
    by_seat: dict[UUID | None, UsageGroup] = {}
    after: str | None = None
    while True:
        groups, cursor = await usage.groups(
            principal.workspace_id, "user", since=since, until=None, limit=_USAGE_PAGE, after=after
        )
        by_seat.update((group.user_id, group) for group in groups)
        if cursor is None:
            return by_seat
        after = decode_cursor(cursor)


def _totals(group: UsageGroup | None) -> UsageTotals:
    return UsageTotals(**group.totals) if group is not None else UsageTotals()


def _effective(request: web.Request, own: Mapping[UsageKind, Decimal]) -> SeatQuotasModel:
    settings = request.config_dict[SETTINGS]
    limits: dict[str, float | None] = {}
    for kind in USAGE_KINDS:
        value = own.get(kind, seat_quota_default(settings, kind))
        limits[kind] = None if value is None else float(value)
    return SeatQuotasModel(**limits)


async def list_seats(request: web.Request) -> web.Response:
    principal = principal_of(request)
    members = request.config_dict[MEMBERS]
    people = await members.members.list(principal.workspace_id)
    quotas = await request.config_dict[USAGE].seat_quotas_of_members(principal.workspace_id)
    used = await _month_usage(request, principal)
    seats = []
    for member in people:
        own = quotas.get(member.user_id, {})
        seats.append(
            AdminSeat(
                **seat_of(member, own).model_dump(),
                effective_quotas=_effective(request, own),
                used=_totals(used.get(member.user_id)),
            )
        )
    invitations: list[InvitationModel] = []
    cursor: str | None = None
    while True:
        page = await members.invitations.list(
            principal.workspace_id, "pending", limit=MAX_INVITATION_PAGE, cursor=cursor
        )
        invitations += [InvitationModel.of(invitation) for invitation in page.invitations]
        if (cursor := page.next_cursor) is None:
            break
    return _json(SeatList(since=month_start(), seats=seats, invitations=invitations))


async def invite(request: web.Request) -> web.Response:
    body = await read_model(request, InviteBody)
    return _json(await invite_seat(request, principal_of(request), body), 201)


async def change(request: web.Request) -> web.Response:
    principal = principal_of(request)
    user_id = _user_id(request)
    # The seat before the body: another workspace's member is a 404 whatever is sent.
    await request.config_dict[MEMBERS].members.get(principal.workspace_id, user_id)
    body = await read_model(request, MemberChangeBody)
    return _json(await change_seat(request, principal, user_id, body))


async def remove(request: web.Request) -> web.Response:
    await remove_seat(request, principal_of(request), _user_id(request))
    return web.Response(status=204)


async def seat_usage(request: web.Request) -> web.Response:
    principal = principal_of(request)
    query = read_query(request, SeatUsageQuery)
    period = query.period()
    people: dict[UUID, Member] = {
        member.user_id: member
        for member in await request.config_dict[MEMBERS].members.list(principal.workspace_id)
    }
    if query.user_id is not None and query.user_id not in people:
        # Another workspace's member is as missing as someone who does not exist.
        raise NotFound("no such member", details={"user_id": str(query.user_id)})
    groups, next_cursor = await request.config_dict[USAGE].groups(
        principal.workspace_id,
        "user",
        since=period.since,
        until=period.until,
        limit=query.limit,
        after=decode_cursor(query.cursor) if query.cursor is not None else None,
        user_id=query.user_id,
    )
    data = []
    for group in groups:
        member = people.get(group.user_id) if group.user_id is not None else None
        data.append(
            SeatUsage(
                user_id=group.user_id,
                email=member.email if member is not None else None,
                role=member.role if member is not None else None,
                **group.totals,
            )
        )
    return _json(
        SeatUsagePage(since=period.since, until=period.until, data=data, next_cursor=next_cursor)
    )


def seats_admin_routes() -> list[web.RouteDef]:
    """Paths relative to ``/v1/admin`` (rest/admin.py)."""
    return [
        web.get("/seats", list_seats, allow_head=False),
        web.post("/seats", invite),
        web.patch("/seats/{user_id}", change),
        web.delete("/seats/{user_id}", remove),
        web.get("/usage", seat_usage, allow_head=False),
    ]
