-- QA jobs (one per closed recording and scorecard) and their results.
-- PostgreSQL is the queue: workers claim with FOR UPDATE SKIP LOCKED and hold
-- a lease; a worker that dies stops renewing it and another claims the job.

create table qa_jobs (
    id bigserial primary key,
    call_id uuid not null references calls,
    recording_path text not null,  -- relative to the service's data_dir
    recording_sha256 text,
    scorecard text not null,
    state text not null default 'queued' check (state in ('queued', 'running', 'done', 'parked')),
    attempts integer not null default 0,  -- claims so far (a killed worker's claim counts)
    run_after timestamptz not null default now(),
    lease_until timestamptz,
    worker_id text,
    last_error text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (call_id, scorecard)
);
create index qa_jobs_ready on qa_jobs (run_after) where state = 'queued';
create index qa_jobs_leased on qa_jobs (lease_until) where state = 'running';
create index qa_jobs_parked on qa_jobs (updated_at) where state = 'parked';

-- One result per call and scorecard version: a worker killed after storing and
-- a second worker finishing the same job leave one row, not two.
create table qa_results (
    id bigserial primary key,
    call_id uuid not null references calls,
    recording_sha256 text,
    scorecard text not null,
    scorecard_version text not null,
    model text not null,
    duration_seconds numeric(10, 3) not null,
    transcript jsonb not null,
    metrics jsonb not null,
    checks jsonb not null,
    categories jsonb not null,
    score numeric(5, 2),  -- null: unscorable (no speech at all)
    timings jsonb not null,
    created_at timestamptz not null default now(),
    unique (call_id, scorecard, scorecard_version)
);
