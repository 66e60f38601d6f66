"""Enforces a workspace's compliance settings on every request made in it (after auth, which
sets the principal): the IP allow-list, and under the HIPAA mode the second-factor rule, the
shorter token lifetime and the audit of personal-data reads (``identity/compliance.py``).

Requests with no principal (public routes, a person's own routes, a socket opened with a
ticket) name no workspace here and pass untouched; a ticket is minted by a member's request,
which went through this check.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import AuthError, IpNotAllowed, MfaRequired, ServiceUnavailable
from ..identity.audit_trail import audit, client_ip
from ..identity.compliance import COMPLIANCE, address_listed, is_personal_data_read
from ..identity.policy import Rule
from ..rest.auth import ACCOUNTS
from ..store.compliance_settings import ComplianceSettings
from ..store.keys import Principal
from ..transports.context import PRINCIPAL
from .route_policy import rule_of

__all__ = ["compliance_middleware"]

log = logging.getLogger(__name__)


@web.middleware
async def compliance_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    principal = request.get(PRINCIPAL)
    if principal is None:
        return await handler(request)
    rules = request.config_dict[COMPLIANCE]
    settings = await rules.settings_for(principal.workspace_id)
    if settings.ip_allow_list:
        address = client_ip(request, trust_forwarded_headers=rules.trust_forwarded_headers)
        if not address_listed(address, settings.ip_allow_list):
            raise IpNotAllowed(
                f"this workspace does not accept requests from {address}",
                details={"address": address},
            )
    if not settings.hipaa:
        return await handler(request)
    if principal.key_id is None and principal.user_id is not None:
        await _check_member(request, principal, settings)
    response = await handler(request)
    rule = rule_of(request)
    if (
        rule is not None
        and response.status < 400
        and is_personal_data_read(request.method, rule.route)
    ):
        await _audit_read(request, rule, response)
    return response


async def _check_member(
    request: web.Request, principal: Principal, settings: ComplianceSettings
) -> None:
    assert principal.user_id is not None
    if not await request.config_dict[COMPLIANCE].has_second_factor(principal.user_id):
        raise MfaRequired(
            "this workspace requires a second factor for every member: set one up under "
            "/v1/auth/mfa, then sign in again"
        )
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if token.count(".") != 2:
        return  # a member acting by other means than an access token (none today)
    claims = request.config_dict[ACCOUNTS].access.verify(token)
    if time.time() - claims.issued_at > settings.access_token_minutes * 60:
        raise AuthError(
            f"this workspace accepts access tokens for {settings.access_token_minutes} "
            "minutes: refresh it",
            details={"max_token_age_minutes": settings.access_token_minutes},
        )


async def _audit_read(request: web.Request, rule: Rule, response: web.StreamResponse) -> None:
    ids = {name: value for name, value in request.match_info.items() if value}
    target_type = rule.objects[-1] if rule.objects else "collection"
    target_id = ids[list(ids)[-1]][:200] if ids else None
    try:
        await audit(
            request,
            "data.read",
            target_type,
            target_id,
            details={"method": request.method, "route": rule.route, "ids": ids},
        )
    except ServiceUnavailable:
        if not response.prepared:
            raise  # the data has not left yet: no unrecorded read under HIPAA
        # Streamed already (audio, a socket): nothing left to refuse; say so loudly.
        log.warning("data.read on %s not audited: the audit log is unavailable", rule.route)
