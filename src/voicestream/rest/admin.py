"""``/v1/admin/…``: a workspace's administration, one sub-app that several domains add to.

aiohttp resolves a prefix to one sub-app, so the seats, billing, single sign-on, compliance and
moderation routes all live under this one: each domain's module offers ``*_admin_routes()``
(paths relative to ``ADMIN_PREFIX``) and ``server/app.py`` adds them here. Every route acts on
the caller's own workspace (the principal's), so no path names a workspace and another
workspace can never be reached through it; ``identity/policy.py`` keeps them to admins and
owners (scope ``admin``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from aiohttp import web

__all__ = ["ADMIN_PREFIX", "admin_app"]

ADMIN_PREFIX: Final = "/v1/admin"


def admin_app(*route_groups: Iterable[web.AbstractRouteDef]) -> web.Application:
    """The sub-app to mount at ``ADMIN_PREFIX``, holding every group of admin routes given."""
    app = web.Application()
    for routes in route_groups:
        app.add_routes(routes)
    return app
