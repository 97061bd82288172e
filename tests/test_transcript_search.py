"""Transcript search (crm/transcript_search.py, GET /api/v1/qa/search) on the real database, in Chinese and English."""

from __future__ import annotations

import datetime as dt

import pytest
from factories import campaign, user
from scored_calls import scored, scored_call

from crm import qa_jobs, transcript_search
from crm.transcript_search import Filters, Viewer
from qa.embeddings import embed_call_segments, shared_embedder

ADMIN = Viewer(0, "admin")

ENGLISH = [
    ("agent", 0.5, 3.0, "Hello, my name is Anna, calling from Sunrise Insurance."),
    ("agent", 3.5, 6.0, "This call is recorded for quality."),
    ("customer", 6.5, 9.0, "I already told you people, I want to cancel my policy."),
    ("agent", 9.5, 12.0, "I understand. Thank you, goodbye."),
]
CHINESE = [
    ("agent", 0.5, 3.0, "您好，我是小王，来自阳光保险公司。"),
    ("agent", 3.5, 6.0, "本次通话将被录音。"),
    ("customer", 6.5, 9.0, "我上周买的东西质量太差了我要退货"),
    ("agent", 9.5, 12.0, "好的，我帮您办理，谢谢，再见。"),
]
OTHER = [
    ("agent", 0.5, 3.0, "Good morning, this is Ben from Sunrise."),
    ("customer", 3.5, 6.0, "Sounds good, send me the brochure by email please."),
    ("agent", 6.5, 9.0, "Will do. Have a nice day."),
]


async def _search(conn, q, viewer=ADMIN, limit=20, **filters):
    rows, total = await transcript_search.keyword_search(conn, viewer, q, Filters(**filters), limit=limit, offset=0)
    return [dict(r.items()) for r in rows], total


@pytest.fixture
async def calls3(conn):
    agents = {name: await user(conn, "agent", name) for name in ("anna", "wang", "ben")}
    ids = {
        "en": await scored_call(conn, ENGLISH, agent_id=agents["anna"], disposition="NI"),
        "zh": await scored_call(conn, CHINESE, agent_id=agents["wang"], disposition="COMPLAINT"),
        "other": await scored_call(conn, OTHER, agent_id=agents["ben"], disposition="INTERESTED"),
    }
    return agents, ids


async def test_english_phrase_is_found_with_speaker_time_and_highlight(conn, calls3):
    _, ids = calls3
    rows, total = await _search(conn, "want to cancel")
    assert total == 1
    hit = transcript_search.result_item(rows[0], "want to cancel", "keyword")
    assert str(hit["call_id"]) == ids["en"]
    assert hit["speaker"] == "customer" and hit["start_s"] == pytest.approx(6.5)
    assert "<mark>want to cancel</mark>" in hit["snippet_html"]
    assert hit["review_url"] == f"/review/{ids['en']}?t=6.5"


async def test_english_words_match_by_stem_as_well(conn, calls3):
    rows, _ = await _search(conn, "cancelling policies")
    assert [r["text"] for r in rows] == [ENGLISH[2][3]]


async def test_two_character_chinese_word_is_found_inside_a_sentence_without_spaces(conn, calls3):
    _, ids = calls3
    rows, total = await _search(conn, "退货")
    assert total == 1 and str(rows[0]["call_id"]) == ids["zh"]
    _, marked = transcript_search.snippet(rows[0]["text"], "退货")
    assert marked.endswith("<mark>退货</mark>")


async def test_chinese_phrase_single_character_and_traditional_spelling_are_found(conn, calls3):
    assert (await _search(conn, "质量太差"))[1] == 1
    assert (await _search(conn, "退貨"))[1] == 1  # traditional folded to simplified
    assert (await _search(conn, "录"))[1] == 1
    assert (await _search(conn, "退款"))[1] == 0


async def test_mixed_case_and_like_wildcards_are_taken_literally(conn, calls3):
    assert (await _search(conn, "SUNRISE insurance"))[1] == 1
    assert (await _search(conn, "%"))[1] == 0
    assert (await _search(conn, "_"))[1] == 0


async def test_filters_narrow_the_results(conn, calls3):
    agents, ids = calls3
    assert (await _search(conn, "sunrise"))[1] == 2
    assert (await _search(conn, "sunrise", agent_id=agents["ben"]))[1] == 1
    assert (await _search(conn, "sunrise", speaker="customer"))[1] == 0
    assert (await _search(conn, "brochure", speaker="customer"))[1] == 1
    assert (await _search(conn, "sunrise", disposition="NI"))[1] == 1
    # OTHER never discloses the recording: its recording_disclosure check failed
    rows, total = await _search(conn, "sunrise", failed_check="recording_disclosure")
    assert total == 1 and str(rows[0]["call_id"]) == ids["other"]
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert (await _search(conn, "sunrise", since=future))[1] == 0
    assert (await _search(conn, "sunrise", until=future))[1] == 2
    assert (await _search(conn, "sunrise", min_duration=12.5))[1] == 1
    assert (await _search(conn, "sunrise", max_duration=12.5))[1] == 1


async def test_score_range_uses_the_calls_score(conn, calls3):
    _, ids = calls3
    score = await conn.fetchval("select score from qa_results where call_id = $1::uuid", ids["en"])
    assert (await _search(conn, "cancel", score_min=float(score)))[1] == 1
    assert (await _search(conn, "cancel", score_min=float(score) + 0.1))[1] == 0


async def test_team_and_campaign_filters(conn):
    a = await user(conn, "agent")
    team = await conn.fetchval("insert into teams (name) values ('north') returning id")
    await conn.execute("update users set team_id = $1 where id = $2", team, a)
    camp = await campaign(conn)
    await scored_call(conn, ENGLISH, agent_id=a, campaign_id=camp)
    await scored_call(conn, ENGLISH, agent_id=await user(conn, "agent"))
    assert (await _search(conn, "cancel"))[1] == 2
    assert (await _search(conn, "cancel", team_id=team))[1] == 1
    assert (await _search(conn, "cancel", campaign_id=camp))[1] == 1


async def test_an_agent_finds_only_their_own_calls(conn, calls3):
    agents, ids = calls3
    rows, total = await _search(conn, "sunrise", Viewer(agents["anna"], "agent"))
    assert total == 1 and str(rows[0]["call_id"]) == ids["en"]
    assert (await _search(conn, "退货", Viewer(agents["anna"], "agent")))[1] == 0


async def test_a_reviewer_sees_assigned_teams_or_all_when_none(conn, calls3):
    agents, ids = calls3
    reviewer = await user(conn, "qa")
    assert (await _search(conn, "sunrise", Viewer(reviewer, "qa")))[1] == 2
    team = await conn.fetchval("insert into teams (name) values ('east') returning id")
    await conn.execute("update users set team_id = $1 where id = $2", team, agents["ben"])
    await conn.execute("insert into reviewer_teams (reviewer_id, team_id) values ($1, $2)", reviewer, team)
    rows, total = await _search(conn, "sunrise", Viewer(reviewer, "qa"))
    assert total == 1 and str(rows[0]["call_id"]) == ids["other"]


async def test_paging_splits_results_without_repeats(conn, calls3):
    texts = []
    for offset in range(3):
        rows, total = await transcript_search.keyword_search(
            conn, ADMIN, "o", Filters(), limit=1, offset=offset
        )
        texts += [r["segment_id"] for r in rows]
    assert total > 3 and len(set(texts)) == 3


async def test_a_rescored_call_is_found_once(conn, calls3):
    _, ids = calls3
    call_id = ids["en"]
    await qa_jobs.enqueue(conn, call_id, "recordings/x.wav", "service")
    job = await qa_jobs.claim(conn, "w", qa_jobs.QueuePolicy(60, 3, 0, 0))
    assert await qa_jobs.store_result(conn, job, scored(ENGLISH) | {"scorecard_version": "v2"})
    assert (await _search(conn, "want to cancel"))[1] == 1


async def test_semantic_search_finds_other_words_for_the_same_meaning(conn, calls3):
    _, ids = calls3
    leaving = "Please terminate my subscription, I do not want it anymore."
    ids["leaving"] = await scored_call(conn, [("customer", 1.0, 4.0, leaving)])
    for call_id in ids.values():
        assert await embed_call_segments(conn, call_id) > 0
    vector = shared_embedder().embed(["customer wants to cancel"])[0].tolist()
    rows = await transcript_search.semantic_search(conn, ADMIN, vector, Filters(), limit=5, min_similarity=0.3)
    assert {r["text"] for r in rows[:2]} == {leaving, ENGLISH[2][3]}
    assert all("brochure" not in r["text"] for r in rows)
    keyword, _ = await _search(conn, "customer wants to cancel")
    assert keyword == []
    fused = transcript_search.fuse([], rows)
    assert fused[0][1] == "semantic"


# --- API -------------------------------------------------------------------


async def _api_calls(app_ctx, agent_ids):
    async with app_ctx.pool.acquire() as c:
        return {
            "en": await scored_call(c, ENGLISH, agent_id=agent_ids[0]),
            "zh": await scored_call(c, CHINESE, agent_id=agent_ids[1]),
        }


async def test_api_search_in_english_and_chinese_for_a_reviewer(client, login, app_ctx):
    await login(client, "qa")
    async with app_ctx.pool.acquire() as c:
        a1, a2 = await user(c, "agent"), await user(c, "agent")
    ids = await _api_calls(app_ctx, [a1, a2])
    resp = await client.get("/api/v1/qa/search", params={"q": "退货", "mode": "keyword"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["total"] == 1 and body["items"][0]["call_id"] == ids["zh"]
    assert body["items"][0]["review_url"].startswith(f"/review/{ids['zh']}?t=6.5")
    resp = await client.get("/api/v1/qa/search", params={"q": "cancel my policy"})
    body = await resp.json()
    assert body["mode"] == "hybrid" and body["items"][0]["call_id"] == ids["en"]
    assert body["items"][0]["matched"] in ("keyword", "both")


async def test_api_search_never_shows_an_agent_another_agents_call(client, login, app_ctx):
    me = await login(client, "agent")
    async with app_ctx.pool.acquire() as c:
        other = await user(c, "agent")
    await _api_calls(app_ctx, [other, other])
    for q in ("cancel", "退货", "customer wants to leave"):
        resp = await client.get("/api/v1/qa/search", params={"q": q})
        assert resp.status == 200
        assert (await resp.json())["items"] == [], (q, me)


async def test_api_search_rejects_bad_input_with_clear_errors(client, login):
    await login(client, "qa")
    cases = [
        ({}, 422, "missing_fields"),
        ({"q": "x", "speaker": "robot"}, 422, "invalid_value"),
        ({"q": "x", "mode": "magic"}, 422, "invalid_value"),
        ({"q": "x", "score_min": "ten"}, 422, "invalid_value"),
        ({"q": "x", "since": "yesterday"}, 422, "invalid_value"),
        ({"q": "x", "colour": "red"}, 400, "bad_request"),
        ({"q": "x", "per_page": "0"}, 400, "bad_request"),
    ]
    for params, status, error in cases:
        resp = await client.get("/api/v1/qa/search", params=params)
        assert resp.status == status, (params, await resp.text())
        assert (await resp.json())["error"] == error


async def test_saved_searches_belong_to_their_reviewer(client, login, app_ctx):
    me = await login(client, "qa")
    headers = {"X-CSRF-Token": me["csrf_token"]}
    query = {"q": "退货", "speaker": "customer"}
    resp = await client.post("/api/v1/qa/saved-searches", json={"name": "returns", "query": query}, headers=headers)
    assert resp.status == 201, await resp.text()
    saved = await resp.json()
    resp = await client.post(
        "/api/v1/qa/saved-searches", json={"name": "returns", "query": {"q": "退款"}}, headers=headers
    )
    assert resp.status == 201
    items = (await (await client.get("/api/v1/qa/saved-searches")).json())["items"]
    assert [(i["name"], i["query"]) for i in items] == [("returns", {"q": "退款"})]
    bad = await client.post(
        "/api/v1/qa/saved-searches", json={"name": "x", "query": {"q": "a", "speaker": "robot"}}, headers=headers
    )
    assert bad.status == 422
    other = await login(client, "qa")
    resp = await client.delete(
        f"/api/v1/qa/saved-searches/{saved['id']}", headers={"X-CSRF-Token": other["csrf_token"]}
    )
    assert resp.status == 404
    assert (await (await client.get("/api/v1/qa/saved-searches")).json())["items"] == []


async def test_a_word_matching_more_than_the_count_limit_comes_newest_first(conn, calls3):
    rows, total = await transcript_search.keyword_search(conn, ADMIN, "o", Filters(), limit=5, offset=0, count_max=3)
    assert total == 3  # counted up to the limit only
    ids = [r["segment_id"] for r in rows]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)


@pytest.mark.parametrize("sort_cost", [0, 10**9])  # 0: always sort the matches; 10**9: always walk the key
async def test_both_newest_first_plans_give_the_same_page(conn, calls3, monkeypatch, sort_cost):
    expected = [r["id"] for r in await conn.fetch(
        "select id from transcript_segments where norm like '%o%' order by id desc limit 4 offset 1")]
    monkeypatch.setattr(transcript_search, "SORT_COST", sort_cost)
    rows, total = await transcript_search.keyword_search(conn, ADMIN, "o", Filters(), limit=4, offset=1, count_max=3)
    assert total == 3 and [r["segment_id"] for r in rows] == expected


async def test_a_phrase_is_found_through_one_of_its_words_even_cut_inside_words(conn, calls3):
    """The trigram index looks up one word of the phrase (the rarest); the whole phrase is still a substring
    test: cut inside words it finds the same segment, and words in another order find nothing."""
    _, ids = calls3
    await conn.execute("analyze transcript_segments")
    for q in ("ncel my pol", "to cancel my policy", "WANT TO CANCEL"):
        rows, total = await _search(conn, q)
        assert total == 1 and str(rows[0]["call_id"]) == ids["en"], q
    assert (await _search(conn, "policy my cancel"))[1] == 1  # full text (stems, any order) still matches
    assert (await _search(conn, "ncel policy my"))[1] == 0


async def test_a_frequent_english_word_is_counted_by_full_text_and_pages_like_the_ranked_search(conn, calls3,
                                                                                               monkeypatch):
    for _ in range(3):
        await scored_call(conn, OTHER)
    await conn.execute("analyze transcript_segments")
    assert (await transcript_search.word_shares(conn, ["sunrise"]))["sunrise"] >= transcript_search.FREQUENT_GRAM
    counted = []
    real = transcript_search._full_text_count

    async def spy(*args):
        counted.append(await real(*args))
        return counted[-1]

    monkeypatch.setattr(transcript_search, "_full_text_count", spy)

    async def page(count_max, offset=1):
        rows, total = await transcript_search.keyword_search(conn, ADMIN, "Sunrise", Filters(), limit=2,
                                                             offset=offset, count_max=count_max)
        return [r["segment_id"] for r in rows], total

    frequent = await page(3)
    assert counted == [3]  # five segments say it: the full text alone reaches count_max
    expected = [r["id"] for r in await conn.fetch(
        "select id from transcript_segments where norm like '%sunrise%' order by id desc limit 2 offset 1")]
    assert frequent == (expected, 3)
    few = await page(50, offset=0)
    assert counted[-1] == 5 and few[1] == 5  # under count_max: ranked and counted as before
    # The same answers when no word counts as frequent (the ranked pass first, as before).
    monkeypatch.setattr(transcript_search, "FREQUENT_GRAM", 2.0)
    assert await page(3) == frequent and await page(50, offset=0) == few
