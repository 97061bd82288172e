"""Login, sessions and CSRF through the real HTTP app."""


async def test_health_answers_with_database_ok(client):
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "database": "ok"}


async def test_wrong_password_is_refused_without_saying_which_part_was_wrong(client, login):
    await login(client, "agent", "alice")
    resp = await client.post("/api/v1/session", json={"username": "alice", "password": "nope"})
    assert resp.status == 401
    assert (await resp.json())["message"] == "wrong user name or password"
    resp = await client.post("/api/v1/session", json={"username": "nobody", "password": "nope"})
    assert (await resp.json())["message"] == "wrong user name or password"


async def test_login_then_whoami_then_logout(client, login):
    user = await login(client, "supervisor", "sue")
    me = await (await client.get("/api/v1/session")).json()
    assert me["username"] == "sue" and me["role"] == "supervisor"
    resp = await client.delete("/api/v1/session", headers={"X-CSRF-Token": user["csrf_token"]})
    assert resp.status == 200
    assert (await client.get("/api/v1/session")).status == 401


async def test_state_change_without_csrf_token_is_refused(client, login):
    user = await login(client, "admin")
    resp = await client.post("/api/v1/campaigns", json={"name": "Spring"})
    assert resp.status == 403 and (await resp.json())["error"] == "csrf_failed"
    resp = await client.post("/api/v1/campaigns", json={"name": "Spring"},
                             headers={"X-CSRF-Token": user["csrf_token"]})
    assert resp.status == 201
    assert (await resp.json())["name"] == "Spring"


async def test_cross_site_post_is_refused_even_with_token(client, login):
    user = await login(client, "admin")
    resp = await client.post("/api/v1/campaigns", json={"name": "X"},
                             headers={"X-CSRF-Token": user["csrf_token"], "Origin": "https://evil.example"})
    assert resp.status == 403


async def test_deactivated_user_loses_session_at_once(client, login, app_ctx):
    user = await login(client, "agent")
    await app_ctx.pool.execute("update users set active = false where id = $1", user["id"])
    assert (await client.get("/api/v1/session")).status == 401


async def test_login_page_form_logs_in_and_redirects_to_next(client, login, app_ctx):
    await login(client, "qa", "quinn")
    client.session.cookie_jar.clear()
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    resp = await client.post("/login", data={"username": "quinn", "password": "correct horse",
                                             "next": "/"}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/"
    page = await (await client.get("/")).text()
    assert "signed in as <strong>qa</strong>" in page


async def test_login_form_never_redirects_off_site(client, login):
    await login(client, "qa", "quinn")
    resp = await client.post("/login", data={"username": "quinn", "password": "correct horse",
                                             "next": "//evil.example/"}, allow_redirects=False)
    assert resp.headers["Location"] == "/"


async def test_bad_json_body_gets_a_400_naming_the_problem(client, login):
    user = await login(client, "admin")
    resp = await client.post("/api/v1/campaigns", data=b"{nope",
                             headers={"X-CSRF-Token": user["csrf_token"], "Content-Type": "application/json"})
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["message"]


async def test_logged_out_session_cookie_cannot_be_replayed(client, login):
    user = await login(client, "agent")
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["telesales_session"].value
    await client.delete("/api/v1/session", headers={"X-CSRF-Token": user["csrf_token"]})
    resp = await client.get("/api/v1/session", headers={"Cookie": f"telesales_session={cookie}"})
    assert resp.status == 401


async def test_session_token_is_stored_hashed(client, login, app_ctx):
    await login(client, "agent")
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["telesales_session"].value
    ids = [r["id"] for r in await app_ctx.pool.fetch("select id from web_sessions")]
    assert len(ids) == 1 and cookie not in ids


async def test_repeated_wrong_passwords_lock_the_name_for_a_while(client, login, app_ctx):
    app_ctx.settings.http.login_max_failures = 3
    await login(client, "agent", "mallory")
    for _ in range(3):
        resp = await client.post("/api/v1/session", json={"username": "Mallory", "password": "guess"})
        assert resp.status == 401
    resp = await client.post("/api/v1/session", json={"username": "mallory", "password": "correct horse"})
    assert resp.status == 429
    assert "try again in 15 minutes" in (await resp.json())["message"]
    page = await client.post("/login", data={"username": "mallory", "password": "correct horse"})
    assert page.status == 401 and "Too many failed logins" in await page.text()
