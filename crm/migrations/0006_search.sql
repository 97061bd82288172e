-- Transcript search and QA review: one row per transcript segment with the
-- indexes that find it (substring, Chinese bigrams, English full text,
-- sentence embeddings), reviewer team assignments, saved searches and reviewer
-- overrides of automatic checks.

create extension if not exists vector;

-- Teams a QA reviewer (or supervisor) looks after; a reviewer with none sees every team.
create table reviewer_teams (
    reviewer_id bigint not null references users on delete cascade,
    team_id bigint not null references teams on delete cascade,
    primary key (reviewer_id, team_id)
);

-- The Chinese characters (one-grams) and character pairs (bigrams) of a text.
-- pg_trgm needs three characters to use its index, and a Chinese word is
-- often two ("退货", "投诉") with no spaces around it; an array of pairs with a
-- GIN index finds any Chinese substring of two or more characters, a single
-- character through its one-gram.
create function zh_grams(t text) returns text[]
language sql immutable strict parallel safe as $$
    select coalesce(array_agg(distinct substr(m.run, i, n)), '{}')
    from (select (regexp_matches(t, '[\u3400-\u9fff\uf900-\ufaff]+', 'g'))[1] as run) m,
         generate_series(1, length(m.run)) i,
         (values (1), (2)) w(n)
    where i + n - 1 <= length(m.run)
$$;

-- One segment of a call's transcript, from the call's latest QA result.
create table transcript_segments (
    id bigserial primary key,
    call_id uuid not null references calls,
    result_id bigint not null references qa_results on delete cascade,
    seq integer not null,
    speaker text not null,
    start_s real not null,
    end_s real not null,
    text text not null,
    -- what substring search looks in: lower case, traditional Chinese folded to simplified
    norm text not null,
    confidence real,
    grams text[] generated always as (zh_grams(norm)) stored,
    tsv tsvector generated always as (to_tsvector('english', text)) stored,
    -- all-MiniLM-L6-v2 sentence embedding, unit length; null until the worker computed it.
    -- halfvec: half the size of vector, and precise enough for ranking by cosine distance.
    embedding halfvec(384),
    unique (result_id, seq)
);
create index transcript_segments_call on transcript_segments (call_id, start_s);
create index transcript_segments_norm_trgm on transcript_segments using gin (norm gin_trgm_ops);
create index transcript_segments_grams on transcript_segments using gin (grams);
create index transcript_segments_tsv on transcript_segments using gin (tsv);
-- The HNSW index on embedding is created at start when search.vector_index is
-- on (crm/transcripts.py): the pgvector of the embedded server is built for
-- CPUs with AVX-512 and kills the server on others when it computes a distance
-- over full-precision vectors or builds any index.
create index transcript_segments_unembedded on transcript_segments (call_id) where embedding is null;

-- Results stored before this migration: the latest one of each call.
insert into transcript_segments (call_id, result_id, seq, speaker, start_s, end_s, text, norm, confidence)
select r.call_id, r.id, s.ord - 1, coalesce(s.seg ->> 'speaker', 'unknown'),
       (s.seg ->> 'start')::real, (s.seg ->> 'end')::real, s.seg ->> 'text', lower(s.seg ->> 'text'),
       (s.seg ->> 'confidence')::real
from (select distinct on (call_id) id, call_id, transcript from qa_results
      order by call_id, created_at desc, id desc) r,
     jsonb_array_elements(case when jsonb_typeof(r.transcript) = 'array' then r.transcript else '[]' end)
         with ordinality s(seg, ord);

create table saved_searches (
    id bigserial primary key,
    user_id bigint not null references users on delete cascade,
    name text not null check (name <> ''),
    query jsonb not null,  -- the search's parameters, as the API takes them
    created_at timestamptz not null default now(),
    unique (user_id, name)
);

-- The reviewed state of a QA result: its automatic checks with the
-- reviewer's overrides applied, and the score recomputed from them. The
-- automatic result in qa_results is never changed.
create table qa_reviews (
    result_id bigint primary key references qa_results on delete cascade,
    call_id uuid not null references calls,
    checks jsonb not null,
    categories jsonb not null,
    score numeric(5, 2),
    reviewer_id bigint references users,
    updated_at timestamptz not null default now()
);
create index qa_reviews_call on qa_reviews (call_id);

-- Every override a reviewer made, with the comment and the scores around it.
create table reviewer_overrides (
    id bigserial primary key,
    result_id bigint not null references qa_results on delete cascade,
    call_id uuid not null references calls,
    check_id text not null,
    automatic_passed boolean,  -- what the scorecard said
    passed boolean,            -- what the reviewer says; null: does not apply
    comment text not null check (comment <> ''),
    reviewer_id bigint not null references users,
    score_before numeric(5, 2),
    score_after numeric(5, 2),
    created_at timestamptz not null default now()
);
create index reviewer_overrides_result on reviewer_overrides (result_id, created_at);

-- A reviewer's claim on a call from the review queue, so two reviewers do not review it twice.
create table review_claims (
    call_id uuid primary key references calls,
    reviewer_id bigint not null references users on delete cascade,
    claimed_at timestamptz not null default now()
);
