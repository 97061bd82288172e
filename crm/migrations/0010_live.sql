-- Live transcript and alerts (issue #7): what QA workers hear during a call.
--
-- A call becomes live when it is answered on a seat: the trigger below tells
-- listening QA workers at once (channel live_calls), and a worker claims it
-- here with a lease it renews while it transcribes; a worker that dies stops
-- renewing and another may take the call over. A call nobody claims loses
-- nothing: its recording is still transcribed and scored after hang-up.

create table live_calls (
    call_id uuid primary key references calls on delete cascade,
    worker_id text not null,
    lease_until timestamptz not null,
    claimed_at timestamptz not null default now(),
    finished_at timestamptz,
    -- why the worker stopped: 'ended' (the call ended), 'no_audio' (the service had no tap for it), ...
    outcome text
);

-- Segments as the live path transcribed them; times in seconds from the start of the worker's tap.
create table live_segments (
    id bigserial primary key,
    call_id uuid not null references calls on delete cascade,
    speaker text not null check (speaker in ('agent', 'customer')),
    start_s real not null,
    end_s real not null,
    text text not null,
    created_at timestamptz not null default now()
);
create index live_segments_call on live_segments (call_id, id);

create table live_alerts (
    id bigserial primary key,
    call_id uuid not null references calls on delete cascade,
    kind text not null check (kind in ('phrase', 'metric')),
    speaker text check (speaker in ('agent', 'customer')),
    name text not null,      -- the phrase matched, or the metric (long_silence, overtalk)
    text text not null,      -- the words said, or the measured value in words
    at timestamptz not null default now()
);
create index live_alerts_call on live_alerts (call_id, id);

-- Workers look for live calls nobody holds every live.poll_seconds: only the open calls are indexed.
create index calls_live_open on calls (answered_at) where ended_at is null;

-- Answered on a seat and not yet ended: QA workers listening on live_calls may claim it.
create function live_calls_notify() returns trigger language plpgsql as $$
begin
    if NEW.answered_at is not null and NEW.ended_at is null and NEW.seat is not null
       and (TG_OP = 'INSERT' or OLD.answered_at is null) then
        perform pg_notify('live_calls', NEW.id::text);
    end if;
    return NEW;
end $$;

create trigger calls_live_notify after insert or update of answered_at on calls
    for each row execute function live_calls_notify();
