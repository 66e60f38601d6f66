"""Every mounted route has an entry in the policy (``identity/policy.py``), or the server does
not start: a route nobody said who may call would otherwise be mounted with no rule at all.

``require_policy`` runs first thing at start-up, when every route and sub-app of the app is in
place (whatever order ``create_app`` added them in) and before any resource is opened.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from aiohttp.web_urldispatcher import PrefixedSubAppResource

from ..identity import policy

__all__ = ["RouteWithoutPolicy", "add_policy_check", "mounted_routes", "require_policy", "rule_of"]


class RouteWithoutPolicy(RuntimeError):
    """The app mounts a route that ``identity/policy.py`` has no entry for."""


def mounted_routes(app: web.Application) -> Iterator[tuple[str, str]]:
    """(method, canonical path) of every route of ``app`` and of its sub-apps, at any depth."""
    for resource in app.router.resources():
        if isinstance(resource, PrefixedSubAppResource):
            # aiohttp keeps a sub-app behind a private attribute only; its resources already
            # carry the prefix in their canonical paths.
            yield from mounted_routes(resource._app)
            continue
        for route in resource:
            yield route.method, resource.canonical


def require_policy(app: web.Application) -> None:
    """Raises ``RouteWithoutPolicy`` naming every route of ``app`` that has no policy entry."""
    if missing := policy.missing_rules(mounted_routes(app)):
        raise RouteWithoutPolicy(
            "these routes have no entry in identity/policy.py (say who may call each, with "
            "which scope and role, in its table): " + ", ".join(missing)
        )


async def _on_startup(app: web.Application) -> None:
    require_policy(app)


def add_policy_check(app: web.Application) -> None:
    # First of the start-up hooks: nothing is opened for a server that must not start.
    app.on_startup.insert(0, _on_startup)


def rule_of(request: web.Request) -> policy.Rule | None:
    """The policy entry of the route ``request`` matched; None when it matched none (its
    handler answers 404 or 405)."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    rule = policy.rule_for(request.method, resource.canonical)
    if rule is None:  # require_policy refused to start with such a route: never reached
        raise RouteWithoutPolicy(f"{request.method} {resource.canonical} has no policy entry")
    return rule
