"""Transcript search: keyword (substring and English full text) and semantic, with filters and the access rule.

Keyword search finds a phrase as a substring of a segment's normalised text
(pg_trgm index for three characters and more, the Chinese bigram index for
Chinese of any length) or, for English, by its stemmed words (full text).
Semantic search ranks segments by the cosine distance of their sentence
embedding to the query's, reading only the embedding lists nearest the query
(crm/embedding_lists.py) or, where search.vector_index made one, pgvector's
HNSW index. Hybrid mode fuses both rankings.

The access rule sits in the same WHERE clause as the filters, so a segment
the viewer may not see is never a candidate: an agent sees their own calls,
a reviewer the teams assigned to them (every team when none are), an admin
everything.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

import asyncpg

from crm.errors import NotFound
from crm.fields import InvalidValue, MissingFields, check_text, parse_time
from crm.transcripts import normalize

MODES = ("keyword", "semantic", "hybrid")
SPEAKERS = ("agent", "customer", "unknown")
QUERY_MAX = 200
SNIPPET_CHARS = 160
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_LATIN_WORD = re.compile(r"[^\W\d_\u3400-\u9fff\uf900-\ufaff]{2,}")
COUNT_MAX = 1000  # totals are counted this far: counting every match of a frequent word costs more than the page
# A Chinese query whose rarest character pair is in this share of segments or more is frequent.
FREQUENT_GRAM = 0.02
# A match collected through the text indexes costs about this many rows walked along the primary key
# (a heap page in no order against the next row of the same page).
SORT_COST = 2
SHORTLIST = 8  # a filtered semantic search first checks this many times `limit` of the lists' nearest
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.): damps the weight of the first few ranks


@dataclass(frozen=True)
class Viewer:
    user_id: int
    role: str


@dataclass(frozen=True)
class Filters:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    agent_id: int | None = None
    team_id: int | None = None
    campaign_id: int | None = None
    disposition: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    failed_check: str | None = None
    speaker: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None


FILTER_NAMES = tuple(f.name for f in fields(Filters))
PARAMS = ("q", "mode", *FILTER_NAMES)


def _number(query: Mapping, name: str, *, whole: bool = False) -> float | int | None:
    raw = query.get(name)
    raw = "" if raw is None else str(raw).strip()
    if not raw:
        return None
    pattern = r"[0-9]{1,18}" if whole else r"-?[0-9]{1,9}(\.[0-9]{1,6})?"
    if not re.fullmatch(pattern, raw):
        kind = "an id" if whole else "a number"
        raise InvalidValue(f"{name} must be {kind}, got {raw[:40]!r}", fields=[name])
    return int(raw) if whole else float(raw)


def parse_filters(query: Mapping) -> Filters:
    """Filters from query-string text ({name: str}), each checked and named in a 422."""
    values: dict = {}
    for name in ("since", "until"):
        raw = query.get(name)
        if isinstance(raw, str):
            # An unencoded "+08:00" in a query string arrives as " 08:00".
            raw = re.sub(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$", r"\1+\2", raw.strip())
        values[name] = parse_time(raw, name)
    for name in ("agent_id", "team_id", "campaign_id"):
        values[name] = _number(query, name, whole=True)
    for name in ("score_min", "score_max", "min_duration", "max_duration"):
        values[name] = _number(query, name)
    for name in ("disposition", "failed_check"):
        values[name] = check_text(query.get(name), name, max_len=100) or None
    speaker = check_text(query.get("speaker"), "speaker", max_len=20) or None
    if speaker is not None and speaker not in SPEAKERS:
        raise InvalidValue(f"speaker must be one of {', '.join(SPEAKERS)}", fields=["speaker"])
    values["speaker"] = speaker
    f = Filters(**values)
    for low, high in (("since", "until"), ("score_min", "score_max"), ("min_duration", "max_duration")):
        a, b = getattr(f, low), getattr(f, high)
        if a is not None and b is not None and a > b:
            raise InvalidValue(f"{low} must not be after {high}", fields=[low, high])
    return f


def parse_query(query: Mapping) -> tuple[str, str]:
    """(q, mode) checked: q is required, mode one of MODES (hybrid by default)."""
    q = check_text(query.get("q"), "q", max_len=QUERY_MAX)
    if not q:
        raise MissingFields("q (the words or phrase to look for) is required", fields=["q"])
    mode = (query.get("mode") or "hybrid").strip()
    if mode not in MODES:
        raise InvalidValue(f"mode must be one of {', '.join(MODES)}", fields=["mode"])
    return q, mode


class _Sql:
    """A WHERE clause and its positional arguments, built together."""

    def __init__(self) -> None:
        self.args: list = []
        self.where: list[str] = []

    def arg(self, value) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self.where.append(condition)

    @property
    def condition(self) -> str:
        return " and ".join(self.where) or "true"


_FROM = """
    from transcript_segments s
    join calls c on c.id = s.call_id
    join qa_results r on r.id = s.result_id
    left join users ag on ag.id = c.agent_id
    left join teams t on t.id = ag.team_id
    left join qa_reviews rv on rv.result_id = r.id
    left join call_dispositions cd on cd.call_id = c.id
"""

_COLUMNS = """
    s.id as segment_id, s.call_id, s.seq, s.speaker, s.start_s, s.end_s, s.text, s.norm,
    c.created_at as call_started_at, c.agent_id, ag.username as agent, ag.team_id, t.name as team,
    c.campaign_id, coalesce(c.disposition, cd.code) as disposition,
    coalesce(rv.score, r.score) as score, r.duration_seconds as duration_s, rv.result_id is not null as reviewed
"""

# The joins a condition on these aliases needs, in the order they must appear.
_JOINS = (
    ("c", "join calls c on c.id = s.call_id"),
    ("r", "join qa_results r on r.id = s.result_id"),
    ("ag", "left join users ag on ag.id = c.agent_id"),
    ("rv", "left join qa_reviews rv on rv.result_id = r.id"),
    ("cd", "left join call_dispositions cd on cd.call_id = c.id"),
)
_NEEDS = {"ag": {"c"}, "cd": {"c"}, "rv": {"r"}}


def _candidates_from(condition: str) -> str:
    """FROM transcript_segments with only the joins the condition uses.

    The candidates (matching segments, ranked, one page) are found first;
    the call, agent and score columns are joined to that page only. A
    frequent word matches many thousand segments: joining all of them to
    their calls before ranking would cost more than the search itself.
    """
    used = {alias for alias, _ in _JOINS if re.search(rf"\b{alias}\.", condition)}
    for alias in list(used):
        used |= _NEEDS.get(alias, set())
    return "from transcript_segments s " + " ".join(join for alias, join in _JOINS if alias in used)


async def reviewer_teams(conn: asyncpg.Connection, viewer: Viewer) -> list[int]:
    if viewer.role in ("admin", "agent"):
        return []
    return [r["team_id"] for r in await conn.fetch(
        "select team_id from reviewer_teams where reviewer_id = $1", viewer.user_id
    )]


def access_condition(sql: _Sql, viewer: Viewer, teams: list[int]) -> None:
    """Restrict sql to the calls viewer may see (the rule of issue #6, point 5); teams: reviewer_teams()."""
    if viewer.role == "agent":
        sql.add(f"c.agent_id = {sql.arg(viewer.user_id)}")
    elif viewer.role != "admin" and teams:
        # qa and supervisors: their assigned teams; every team when none are assigned
        sql.add(f"ag.team_id = any({sql.arg(teams)}::bigint[])")


def _filter_conditions(sql: _Sql, f: Filters) -> None:
    simple = (
        ("c.created_at >= {}", f.since),
        ("c.created_at < {}", f.until),
        ("c.agent_id = {}", f.agent_id),
        ("ag.team_id = {}", f.team_id),
        ("c.campaign_id = {}", f.campaign_id),
        ("coalesce(c.disposition, cd.code) = {}", f.disposition),
        ("coalesce(rv.score, r.score) >= {}", f.score_min),
        ("coalesce(rv.score, r.score) <= {}", f.score_max),
        ("s.speaker = {}", f.speaker),
        ("r.duration_seconds >= {}", f.min_duration),
        ("r.duration_seconds <= {}", f.max_duration),
    )
    for template, value in simple:
        if value is not None:
            sql.add(template.format(sql.arg(value)))
    if f.failed_check is not None:
        check = sql.arg(f.failed_check)
        sql.add(f"coalesce(rv.checks, r.checks) @> jsonb_build_array(jsonb_build_object('id', {check}::text, "
                "'passed', false))")


def _like_pattern(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def query_grams(norm: str) -> list[str]:
    """The Chinese bigrams (one-grams for a lone character) every segment containing norm must have."""
    grams: set[str] = set()
    for run in _CJK_RUN.findall(norm):
        grams.update([run] if len(run) == 1 else (run[i : i + 2] for i in range(len(run) - 1)))
    return sorted(grams)


async def candidate_grams(conn: asyncpg.Connection, grams: list[str]) -> tuple[list[str], float | None]:
    """The grams worth looking up in the bigram index: those rarer than any the statistics track, else the
    least frequent one. The substring condition checks the rest anyway; and the pairs of one word occur
    together, so the planner, multiplying their frequencies, would take "信用卡" (信用 and 用卡, 8% of
    segments each) for a rare word and read 80,000 rows to find a page. Also returns the share of segments
    that hold the gram kept when the statistics track it (None: rarer than any they track)."""
    if not grams:
        return grams, None
    tracked = dict(await conn.fetch(
        """select e, f from pg_stats st,
                  unnest(st.most_common_elems::text::text[], st.most_common_elem_freqs) u(e, f)
           where st.tablename = 'transcript_segments' and st.attname = 'grams' and u.e = any($1::text[])""",
        grams,
    ))
    rare = [g for g in grams if g not in tracked]
    if rare:
        return rare, None
    least = min(grams, key=lambda g: tracked[g])
    return [least], tracked[least]


async def word_shares(conn: asyncpg.Connection, words: list[str]) -> dict[str, float]:
    """The share of segments whose English full text holds each word's stem, from the planner's statistics of
    the tsv column: 0 for a stem rarer than any they track, 1 for a stop word (no stem; in most texts)."""
    if not words:
        return {}
    rows = await conn.fetch(
        """select w, x.lexeme,
                  (select u.f from pg_stats st,
                          unnest(st.most_common_elems::text::text[], st.most_common_elem_freqs) u(e, f)
                   where st.tablename = 'transcript_segments' and st.attname = 'tsv' and u.e = x.lexeme) as share
           from unnest($1::text[]) w,
                lateral (select (tsvector_to_array(to_tsvector('english', w)))[1] as lexeme) x""",
        sorted(set(words)),
    )
    return {r["w"]: 1.0 if r["lexeme"] is None else float(r["share"] or 0.0) for r in rows}


def english_word(shares: dict[str, float]) -> str | None:
    """The word of the query (three letters or more) whose trigrams the index should look up: the rarest,
    the longest of equally rare ones. The trigram index intersects the posting lists of every trigram it is
    given, and a phrase's short common words ("my", "for") have lists of a tenth of the table: looking up
    one rare word and checking the phrase on its few rows reads a fraction of the index."""
    words = [w for w in shares if len(w) >= 3]
    return min(words, key=lambda w: (shares[w], -len(w), w)) if words else None


_SEARCH_SYNTAX = re.compile(r'"|(^|\s)-|\bor\b', re.IGNORECASE)  # websearch_to_tsquery's phrase, not, or


def _frequent_words(q: str, shares: dict[str, float]) -> bool:
    """Whether every stem of q is frequent (FREQUENT_GRAM or more of the segments, by the statistics)."""
    stems = [share for share in shares.values() if share < 1.0]
    return bool(stems) and min(stems) >= FREQUENT_GRAM and not _SEARCH_SYNTAX.search(q)


async def _full_text_count(conn: asyncpg.Connection, viewer: Viewer, teams: list[int], q: str, f: Filters,
                           count_max: int) -> int:
    """How many segments the viewer may see and the filters pass match q's English full text, to count_max."""
    sql = _Sql()
    sql.add(f"s.tsv @@ websearch_to_tsquery('english', {sql.arg(q)})")
    access_condition(sql, viewer, teams)
    _filter_conditions(sql, f)
    return await conn.fetchval(f"""select count(*) from (select 1 {_candidates_from(sql.condition)}
                                   where {sql.condition} limit {int(count_max)}) m""", *sql.args)


def _keyword_match(sql: _Sql, q: str, grams: list[str] | None = None, word: str | None = None) -> tuple[str, str]:
    """(match condition, rank expression) for q; grams: the bigrams to look up (default: all of them); word:
    the one word of q whose trigrams the index looks up (default: all of q's, see english_word())."""
    norm = normalize(q)
    if word and word != norm:
        # Only the word's trigrams go to the index; position() (not indexable, the same test as the
        # LIKE) checks the whole phrase on the rows it finds.
        contains = f"position({sql.arg(norm)} in s.norm) > 0"
        substring = f"(s.norm like {sql.arg(_like_pattern(word))} and {contains})"
    else:
        contains = substring = f"s.norm like {sql.arg(_like_pattern(norm))}"
    grams = query_grams(norm) if grams is None else grams
    if grams:
        substring = f"({substring} and s.grams @> {sql.arg(grams)}::text[])"
    if not _LATIN_WORD.search(q):
        # Every match is an exact substring: equal rank, so newest first is the whole order, and the
        # planner may walk the primary key backwards for a frequent word instead of ranking all its matches.
        return substring, "1::real"
    tsq = f"websearch_to_tsquery('english', {sql.arg(q)})"
    # An exact substring outranks a stemmed match; ts_rank_cd orders within each.
    return f"({substring} or s.tsv @@ {tsq})", f"(({contains})::int + ts_rank_cd(s.tsv, {tsq}))::real"


def keyword_sql(
    viewer: Viewer,
    teams: list[int],
    q: str,
    f: Filters,
    *,
    limit: int,
    offset: int,
    ranked: bool = True,
    count_max: int = COUNT_MAX,
    grams: list[str] | None = None,
    word: str | None = None,
):
    """(query, args) of one page of a keyword search; each row also carries `total` (matches, up to count_max).

    ranked: the first count_max matches are counted and ranked, best first,
    ties newest segment first (ids grow with time), in one index scan.
    Unranked: newest first over all matches, which lets the planner walk
    the primary key backwards and stop after one page: the order for a word
    so frequent (count_max matches or more) that ranking all its matches
    would cost seconds and tell a reviewer little. Either way the page is
    joined to its calls only after it is cut, unless a filter needs them.
    """
    sql = _Sql()
    match, rank = _keyword_match(sql, q, grams, word)
    sql.add(match)
    access_condition(sql, viewer, teams)
    _filter_conditions(sql, f)
    source = _candidates_from(sql.condition)
    columns = _FROM.split("from transcript_segments s", 1)[1]
    reached = pages = rows = "null::bigint"
    if ranked:
        hits = f"""matched as materialized (select s.id, s.ctid, {rank} as rank {source} where {sql.condition}
                                           limit {count_max}),
                   hits as (select id, rank from matched order by rank desc, id desc
                            limit {sql.arg(limit)} offset {sql.arg(offset)})"""
        total = "(select count(*) from matched)"
        # How far into the table the first count_max matches reached, in pages: what tells a word just
        # past count_max matches from one in every tenth segment. Pages, not ids: the first pass reads in
        # page order (bitmap or sequential scan), and a row's page follows its id only roughly (an
        # insert fills space left on older pages, an embedding update moves the row).
        reached = "(select max((ctid::text::point)[0])::bigint + 1 from matched)"
        pages = "(pg_relation_size('transcript_segments') / current_setting('block_size')::bigint)"
        rows = "(select reltuples::bigint from pg_class where oid = 'transcript_segments'::regclass)"
    else:
        hits = f"""hits as (select s.id, 0::real as rank {source} where {sql.condition}
                            order by s.id desc limit {sql.arg(limit)} offset {sql.arg(offset)})"""
        total = str(count_max)
    query = f"""with {hits}
                select {_COLUMNS}, h.rank, t0.total, t0.reached, t0.pages, t0.table_rows
                from (select {total} as total, {reached} as reached, {pages} as pages, {rows} as table_rows) t0
                    left join (hits h join transcript_segments s on s.id = h.id {columns}) on true
                order by h.rank desc, s.id desc"""
    return query, sql.args


async def keyword_search(
    conn: asyncpg.Connection, viewer: Viewer, q: str, f: Filters, *, limit: int, offset: int, count_max: int = COUNT_MAX
) -> tuple[list[asyncpg.Record], int]:
    """Matching segments, best first (newest first past count_max matches), and how many (counted to count_max)."""
    teams = await reviewer_teams(conn, viewer)
    grams, share = await candidate_grams(conn, query_grams(normalize(q)))
    shares = await word_shares(conn, _LATIN_WORD.findall(normalize(q))) if _LATIN_WORD.search(q) else {}
    word = english_word(shares)
    query, args = keyword_sql(viewer, teams, q, f, limit=limit, offset=offset, count_max=count_max, grams=grams,
                              word=word)
    async with conn.transaction(readonly=True):
        await _custom_plans(conn)
        if _frequent_words(q, shares) and await _full_text_count(conn, viewer, teams, q, f, count_max) >= count_max:
            # Its full-text matches alone reach count_max (they are matches: the substring is the other way to
            # match), so the page is the newest matches, a short walk back for a word this frequent. Ranking
            # first would collect every match through both indexes to keep count_max of them.
            await _walk_or_sort(conn, sort=False)
            query, args = keyword_sql(viewer, teams, q, f, limit=limit, offset=offset, ranked=False,
                                      count_max=count_max, grams=grams, word=word)
            rows = await conn.fetch(query, *args)
            return [r for r in rows if r["segment_id"] is not None], count_max
        if share is not None and share >= FREQUENT_GRAM:
            # Every segment with this gram is a likely match: reading the table in order meets count_max of
            # them within count_max / share rows; collecting all of them through the index reads them all.
            await conn.execute("set local enable_bitmapscan = off")
        rows = await conn.fetch(query, *args)
        await conn.execute("reset enable_bitmapscan")
        total = rows[0]["total"]
        if total >= count_max:
            # At least count_max matches: the page is the newest matches, by one of two plans.
            await _newest_first_plan(conn, rows[0], count_max, offset + limit)
            query, args = keyword_sql(viewer, teams, q, f, limit=limit, offset=offset, ranked=False,
                                      count_max=count_max, grams=grams, word=word)
            rows = await conn.fetch(query, *args)
    return [r for r in rows if r["segment_id"] is not None], total


async def _newest_first_plan(conn: asyncpg.Connection, first: asyncpg.Record, count_max: int, needed: int) -> None:
    """Steer the newest-first query of a word with count_max matches or more to the cheaper of two plans.

    Walking the primary key backwards checks about rows / matches x needed
    rows; collecting every match through the text indexes and sorting them
    checks about `matches` rows. The matches are estimated from how far (in
    pages, read in page order) the first pass went to find count_max: just
    past count_max (a rare word: the bench's 0.1%) sorts a thousand rows
    instead of walking twenty thousand; a word in every tenth segment walks a
    few hundred instead of sorting 100,000. The planner cannot tell them
    apart: it estimates a Chinese substring's matches by the pattern's length.
    """
    pages, reached = max(1, first["pages"] or 1), max(1, first["reached"] or 1)
    rows = max(1, first["table_rows"] or 1)
    matches = count_max * max(1.0, pages / reached)
    await _walk_or_sort(conn, sort=matches * matches * SORT_COST <= rows * needed)


async def _walk_or_sort(conn: asyncpg.Connection, *, sort: bool) -> None:
    if sort:
        await conn.execute("set local enable_indexscan = off")
    else:
        await conn.execute("set local enable_bitmapscan = off")
    await conn.execute("set local enable_seqscan = off")


async def _custom_plans(conn: asyncpg.Connection) -> None:
    # asyncpg prepares each statement; after five runs PostgreSQL may switch to a generic plan made
    # without the pattern, which cannot tell a rare Chinese word from a frequent one and scans the table.
    await conn.execute("set local plan_cache_mode = force_custom_plan")
    # A search reads a few thousand rows at most: starting parallel workers costs more than it saves,
    # and on a busy machine they wait for a core while the leader waits for them.
    await conn.execute("set local max_parallel_workers_per_gather = 0")
    # A sequential scan of a large table otherwise starts where the last one (any session's) stopped: the
    # first count_max matches would then say nothing of how far into the table they reached.
    await conn.execute("set local synchronize_seqscans = off")


async def semantic_search(
    conn: asyncpg.Connection,
    viewer: Viewer,
    vector: list[float],
    f: Filters,
    *,
    limit: int,
    min_similarity: float,
    probes: int = 0,
) -> list[asyncpg.Record]:
    """The segments nearest in meaning to the query's embedding, nearest first, above min_similarity.

    probes > 0: only the segments of the `probes` embedding lists nearest the
    query (crm/embedding_lists.py) are ranked, exactly; when they hold fewer
    than `limit` segments the viewer may see and the filters pass (an agent's
    own calls, a narrow filter), every segment is ranked instead, which such a
    filter keeps fast. A broad access rule or filter (a reviewer's teams, a
    speaker, a date range) is first checked on a shortlist of the lists'
    nearest only (_semantic_sql), the whole lists when too few of it pass.
    probes = 0, or no lists trained yet: every segment (or pgvector's HNSW
    index, where search.vector_index created it).
    """
    teams = await reviewer_teams(conn, viewer)
    vec = _vector_text(vector)
    async with conn.transaction(readonly=True):
        await _custom_plans(conn)
        if probes > 0 and await conn.fetchval("select exists (select 1 from embedding_lists)"):
            filtered = bool(teams) or any(getattr(f, name) is not None for name in FILTER_NAMES)
            shortlist = SHORTLIST * limit if filtered and _broad(viewer, f) else 0
            for short in (shortlist, 0) if shortlist else (0,):
                rows = await conn.fetch(*_semantic_sql(viewer, teams, vec, f, limit, probes, short))
                if len(rows) >= limit:
                    return [r for r in rows if r["rank"] >= min_similarity]
        # With an HNSW index and filters, the scan goes on until enough rows pass them (pgvector 0.8).
        await conn.execute("set local hnsw.iterative_scan = relaxed_order")
        await conn.execute("set local hnsw.ef_search = 100")
        rows = await conn.fetch(*_semantic_sql(viewer, teams, vec, f, limit, 0))
        return [r for r in rows if r["rank"] >= min_similarity]


def _broad(viewer: Viewer, f: Filters) -> bool:
    """Whether most of the lists' segments are likely to pass the access rule and filters: anything but one
    agent's calls or a call-level filter a few calls pass."""
    narrow = (f.agent_id, f.team_id, f.campaign_id, f.failed_check)
    return viewer.role != "agent" and all(value is None for value in narrow)


def _semantic_sql(viewer: Viewer, teams: list[int], vec: str, f: Filters, limit: int, probes: int,
                  shortlist: int = 0) -> tuple:
    """(query, *args): the `limit` nearest segments the viewer may see and the filters pass, nearest
    first, with their rank (cosine similarity). probes > 0: only those in the nearest lists (and in
    list -1, not filed yet). shortlist > 0 (with probes and an access rule or filter): only the
    `shortlist` nearest of those lists, ranked from their copies, are joined to their segments and
    calls to be checked; when `limit` of them pass they are the nearest that pass in the whole lists
    (any other is farther than all of them), else the caller asks again without a shortlist."""
    sql = _Sql()
    q = sql.arg(vec)
    access_condition(sql, viewer, teams)
    _filter_conditions(sql, f)
    if probes > 0 and not sql.where:
        # Every segment the viewer may see: the probed lists' own copies of the embeddings, read by an
        # index-only scan of their run of pages in segment_lists_vectors (migration 0015).
        embedding, candidate, source = "sl.embedding", "sl.segment_id", "from segment_lists sl"
    else:
        # An access rule or a filter joins the segments anyway: their own embedding, as the exact scan.
        embedding, candidate = "s.embedding", "s.id"
        sql.add("s.embedding is not null")
        source = _candidates_from(sql.condition)
        if probes > 0:
            source = source.replace("from transcript_segments s", """from segment_lists sl
                join transcript_segments s on s.id = sl.segment_id""", 1)
    if probes > 0:
        lists = f"""array(select id from embedding_lists order by centroid <=> {q}::halfvec
                          limit {sql.arg(probes)}) || -1"""
        if shortlist > 0 and embedding == "s.embedding":
            # The shortlist from the covering index (as for all calls); the join checks only its rows.
            short = f"""(select segment_id from segment_lists where list_id = any({lists})
                         order by embedding <=> {q}::halfvec limit {sql.arg(shortlist)})"""
            sql.add(f"sl.segment_id = any(array{short})")
        else:
            sql.add(f"sl.list_id = any({lists})")
    query = f"""with nearest as materialized (
                    select {candidate} as id, 1 - ({embedding} <=> {q}::halfvec) as rank {source}
                    where {sql.condition}
                    order by {embedding} <=> {q}::halfvec
                    limit {sql.arg(limit)})
                select {_COLUMNS}, h.rank from nearest h join transcript_segments s on s.id = h.id
                    {_FROM.split("from transcript_segments s", 1)[1]}
                order by h.rank desc"""
    return (query, *sql.args)


def _vector_text(vector) -> str:
    return "[" + ",".join(f"{float(v):.6f}" for v in vector) + "]"


def fuse(keyword: list[asyncpg.Record], semantic: list[asyncpg.Record]) -> list[tuple[dict, str]]:
    """Reciprocal rank fusion of two rankings: (row, how it matched), best first."""
    scores: dict[int, float] = {}
    rows: dict[int, dict] = {}
    how: dict[int, str] = {}
    for name, ranking in (("keyword", keyword), ("semantic", semantic)):
        for position, row in enumerate(ranking):
            key = row["segment_id"]
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + position + 1)
            rows.setdefault(key, dict(row.items()))
            how[key] = "both" if key in how and how[key] != name else name
    order = sorted(scores, key=lambda k: -scores[k])
    return [(rows[k] | {"rank": round(scores[k], 6)}, how[k]) for k in order]


def _highlight_spans(text: str, q: str) -> list[tuple[int, int]]:
    """Where q (or, for English, a stem of one of its words) occurs in text."""
    norm = normalize(text)
    if len(norm) != len(text):  # NFKC changed lengths: offsets would not line up; use lower case only
        norm = text.lower()
    needles = [normalize(q)]
    needles += [w[: max(4, len(w) - 2)] for w in _LATIN_WORD.findall(normalize(q))]
    spans: list[tuple[int, int]] = []
    for needle in needles:
        if not needle:
            continue
        start = norm.find(needle)
        while start >= 0:
            spans.append((start, start + len(needle)))
            start = norm.find(needle, start + len(needle))
        if spans:
            break  # the whole phrase found: do not also mark its words
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def snippet(text: str, q: str) -> tuple[str, str]:
    """(plain snippet, HTML snippet with <mark>ed matches), cut to about SNIPPET_CHARS around the first match."""
    spans = _highlight_spans(text, q)
    lo = 0
    if len(text) > SNIPPET_CHARS and spans:
        lo = max(0, spans[0][0] - SNIPPET_CHARS // 3)
    hi = min(len(text), lo + SNIPPET_CHARS)
    out, cursor = [], lo
    for a, b in spans:
        a, b = max(a, lo), min(b, hi)
        if a >= b:
            continue
        out.append(html.escape(text[cursor:a]) + "<mark>" + html.escape(text[a:b]) + "</mark>")
        cursor = b
    out.append(html.escape(text[cursor:hi]))
    prefix, suffix = ("…" if lo > 0 else ""), ("…" if hi < len(text) else "")
    return prefix + text[lo:hi] + suffix, prefix + "".join(out) + suffix


def result_item(row: dict, q: str, matched: str) -> dict:
    plain, marked = snippet(row["text"], q)
    item = {k: v for k, v in row.items() if k != "norm"}
    item |= {
        "snippet": plain,
        "snippet_html": marked,
        "matched": matched,
        "review_url": f"/review/{row['call_id']}?t={round(float(row['start_s']), 2)}",
    }
    return item


# --- saved searches ----------------------------------------------------------


def check_saved_query(query) -> dict:
    """A saved search's parameters: a JSON object of search parameters (strings), checked like a search."""
    if not isinstance(query, dict):
        raise InvalidValue("query must be a JSON object of search parameters", fields=["query"])
    unknown = sorted(set(query) - set(PARAMS))
    if unknown:
        raise InvalidValue(f"unknown search parameters: {', '.join(unknown)}", fields=["query"], allowed=list(PARAMS))
    text = {k: "" if v is None else str(v) for k, v in query.items()}
    parse_query(text)
    parse_filters(text)
    return {k: v for k, v in text.items() if v != ""}


async def save_search(conn: asyncpg.Connection, user_id: int, name, query) -> asyncpg.Record:
    """Save (or replace, by name) one of the user's searches."""
    name = check_text(name, "name", max_len=100, required=True)
    query = check_saved_query(query)
    return await conn.fetchrow(
        """insert into saved_searches (user_id, name, query) values ($1, $2, $3)
           on conflict (user_id, name) do update set query = excluded.query, created_at = now()
           returning id, name, query, created_at""",
        user_id,
        name,
        query,
    )


async def saved_searches(conn: asyncpg.Connection, user_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select id, name, query, created_at from saved_searches where user_id = $1 order by name", user_id
    )


async def delete_saved_search(conn: asyncpg.Connection, user_id: int, search_id: int) -> None:
    status = await conn.execute("delete from saved_searches where id = $1 and user_id = $2", search_id, user_id)
    if status != "DELETE 1":
        raise NotFound(f"no saved search {search_id}")
