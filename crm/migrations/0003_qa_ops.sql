-- QA operations: re-scoring without transcribing again, and tokens for remote workers.

-- First and last speech on any channel (voice activity), which the scorecard's
-- time windows count from; kept so a result can be re-scored from the stored
-- transcript and metrics alone. Null on results stored before this column.
alter table qa_results add column speech_start_s numeric(10, 3);
alter table qa_results add column speech_end_s numeric(10, 3);
create index qa_results_scorecard on qa_results (scorecard, created_at);

-- Worker tokens: a QA worker on another machine fetches recordings from the
-- service's API with one. Only the sha256 of the token is stored.
create table qa_worker_tokens (
    id bigserial primary key,
    name text not null unique,
    token_sha256 text not null unique,
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
