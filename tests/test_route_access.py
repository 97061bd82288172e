"""Every route, with every role and anonymously: the answer matches the roles declared on it.

The table walked is the app's own route table, so a new route is covered the
moment it is added.
"""

import re

import pytest

from telesales.app import all_routes

ROLES = ("agent", "qa", "supervisor", "admin")

# Routes anyone may call without logging in. Adding one here is a security decision.
EXPECTED_PUBLIC = {
    ("GET", "/health"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/api/v1/session"),
    ("GET", "/api/v1/openapi.json"),
}


def test_only_the_expected_routes_are_public():
    public = {(r.method, r.path) for r in all_routes() if r.public}
    assert public == EXPECTED_PUBLIC


def test_every_route_declares_known_roles_and_a_summary():
    for r in all_routes():
        assert set(r.roles) <= set(ROLES), r
        assert r.summary, r


def _expected(route, role):
    if route.public:
        return "allowed"
    if role is None:
        return "login" if not route.path.startswith("/api/") and route.method == "GET" else 401
    return "allowed" if role in route.roles else 403


REFUSALS = {"login_required": 401, "forbidden": 403, "csrf_failed": 403}


async def _outcome(resp):
    """What the guard decided; a handler's own 4xx (bad body, wrong password) counts as allowed."""
    # The guard sends anonymous page views to the login page; other redirects are handlers'.
    if resp.method == "GET" and resp.status == 302 and resp.headers["Location"].startswith("/login?"):
        return "login"
    if resp.content_type == "application/json" and resp.status in (401, 403):
        return REFUSALS.get((await resp.json()).get("error"), "allowed")
    return "allowed"


@pytest.mark.parametrize("role", [None, *ROLES], ids=["anonymous", *ROLES])
async def test_each_route_answers_as_declared_for_role(client, login, role):
    token = None
    wrong = []
    for route in all_routes():
        if role and token is None:
            token = (await login(client, role))["csrf_token"]
        path = re.sub(r"{\w+}", "1", route.path)
        headers = {"X-CSRF-Token": token} if token else {}
        kwargs = {} if route.method in ("GET", "DELETE") else {"json": {}}
        resp = await client.request(route.method, path, headers=headers, allow_redirects=False, **kwargs)
        got, want = await _outcome(resp), _expected(route, role)
        if got != want or resp.status >= 500:
            wrong.append(f"{route.method} {route.path}: expected {want}, got {resp.status}")
        if role and (await client.get("/api/v1/session")).status == 401:
            token = None  # that route logged us out; log in again for the next one
    assert not wrong, "\n".join(wrong)
