-- Reports (crm/reports.py): agent status time, lead cost per import, and the
-- daily call rollup that keeps the funnel fast on years of calls.

-- What an agent was doing and when: written by the agent desk on every status
-- change (ready, pause with a reason, talk, wrap-up, offline). An interval is
-- closed (ended_at set) when the next one starts; the reports count closed ones.
create table agent_status_log (
    id bigserial primary key,
    user_id bigint not null references users,
    status text not null check (status in ('ready', 'pause', 'talk', 'wrap_up', 'offline')),
    reason text not null default '',
    started_at timestamptz not null,
    ended_at timestamptz,
    check (ended_at is null or ended_at >= started_at)
);
create index agent_status_log_user on agent_status_log (user_id, started_at);
create index agent_status_log_started on agent_status_log (started_at);

-- What one lead of an import cost; null: the source channel's cost from
-- config (reports.lead_costs).
alter table lead_imports add column cost_per_lead numeric(12, 4) check (cost_per_lead >= 0);

create index leads_created on leads (created_at);
-- do-not-call entries are matched to leads by number (churn)
create index leads_phone on leads (phone);
create index orders_call on orders (call_id);
create index qa_results_call on qa_results (call_id);

-- One row per report day (in reports.time_zone), agent, campaign and lead
-- source channel: sums over the calls that started that day. 0 / '' stand
-- for "none" so the key can be a primary key.
create table report_call_daily (
    day date not null,
    agent_id bigint not null,
    campaign_id bigint not null,
    source text not null,
    dials integer not null,           -- outbound calls
    connects integer not null,        -- outbound calls answered by a person
    effective integer not null,       -- outbound calls where the customer spoke >= N s
    intents integer not null,
    sales integer not null,
    revenue numeric(18, 2) not null,  -- orders of those calls, not cancelled
    handled integer not null,         -- calls answered by a person, both directions
    talk_seconds numeric(14, 3) not null,   -- answer to hang-up, of the handled calls
    wrap_seconds numeric(14, 3) not null,   -- hang-up to disposition, of the handled calls
    primary key (day, agent_id, campaign_id, source)
);

-- Days whose rollup rows must be recomputed before they are read: triggers
-- on the raw tables add the day of every call whose figures may have changed
-- (a late disposition, a QA result, a cancelled order).
create table report_dirty_days (day date primary key);

-- The settings the rollup was computed with; when they differ from the
-- running ones (or stale is set) the whole rollup is rebuilt.
create table report_rollup_state (
    id boolean primary key default true check (id),
    time_zone text not null default 'UTC',
    effective_seconds numeric not null default 0,
    stale boolean not null default true
);
insert into report_rollup_state default values;

create function report_mark_day(at timestamptz) returns void language sql as $$
    insert into report_dirty_days (day)
    select (at at time zone s.time_zone)::date from report_rollup_state s
    where at is not null
    on conflict do nothing
$$;

create function report_mark_call(call uuid) returns void language sql as $$
    select report_mark_day((select created_at from calls where id = call))
$$;

create function report_calls_changed() returns trigger language plpgsql as $$
begin
    if tg_op <> 'INSERT' then perform report_mark_day(old.created_at); end if;
    if tg_op <> 'DELETE' then perform report_mark_day(new.created_at); end if;
    return null;
end $$;

create trigger report_calls_changed after insert or delete or update of
    created_at, direction, agent_id, campaign_id, lead_id, customer_id, answered_at, ended_at,
    duration_seconds, disposition
    on calls for each row execute function report_calls_changed();

-- Rows that hang off a call: the call's day is dirty.
create function report_call_child_changed() returns trigger language plpgsql as $$
begin
    if tg_op <> 'INSERT' and old.call_id is not null then perform report_mark_call(old.call_id); end if;
    if tg_op <> 'DELETE' and new.call_id is not null then perform report_mark_call(new.call_id); end if;
    return null;
end $$;

create trigger report_dispositions_changed after insert or update or delete on call_dispositions
    for each row execute function report_call_child_changed();
create trigger report_qa_results_changed after insert or update or delete on qa_results
    for each row execute function report_call_child_changed();
create trigger report_orders_changed after insert or update or delete on orders
    for each row execute function report_call_child_changed();

-- A lead's source channel is part of the key of its calls' rows.
create function report_lead_source_changed() returns trigger language plpgsql as $$
begin
    insert into report_dirty_days (day)
    select distinct (c.created_at at time zone s.time_zone)::date
    from calls c, report_rollup_state s where c.lead_id = new.id
    on conflict do nothing;
    return null;
end $$;

create trigger report_lead_source_changed after update of source_channel on leads
    for each row when (old.source_channel is distinct from new.source_channel)
    execute function report_lead_source_changed();

-- A disposition code whose flags change alters every day: rebuild.
create function report_codes_changed() returns trigger language plpgsql as $$
begin
    update report_rollup_state set stale = true;
    return null;
end $$;

create trigger report_codes_changed after update of human_answered, contact, intent, sale
    on dispositions for each row
    when ((old.human_answered, old.intent, old.sale) is distinct from (new.human_answered, new.intent, new.sale))
    execute function report_codes_changed();
