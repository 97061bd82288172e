-- Reports (crm/reports.py): agent status time, lead cost per import, and the
-- daily call rollup that keeps the funnel fast on years of calls.

-- What an agent was doing and when: one row per stretch of time in one
-- status, written by the agent desk (crm/agent_status.py) on every change;
-- the open stretch has ended_at null (at most one per user), logging out
-- closes it. The reports count closed stretches.
create table agent_status_log (
    id bigserial primary key,
    user_id bigint not null references users,
    status text not null check (status in ('ready', 'paused', 'on_call', 'wrap_up')),
    reason text,
    campaign_id bigint references campaigns,
    started_at timestamptz not null default now(),
    ended_at timestamptz,
    check (ended_at is null or ended_at >= started_at)
);
create unique index agent_status_log_open on agent_status_log (user_id) where ended_at is null;
create index agent_status_log_user on agent_status_log (user_id, started_at);
-- the intervals that overlap a day
create index agent_status_log_span on agent_status_log using gist (tstzrange(started_at, ended_at));

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

-- Churn: one row per customer who ever ordered, from their first order to
-- their first cancellation or do-not-call entry after it, and the agents,
-- campaigns and lead sources of their orders. Kept by triggers on orders and
-- do_not_call, so the churn figures never aggregate the orders table.
create table report_customers (
    customer_id bigint primary key,
    began timestamptz not null,
    ended timestamptz
);
create index report_customers_began on report_customers (began);

create table report_customer_keys (
    customer_id bigint not null,
    agent_id bigint not null,
    campaign_id bigint not null,
    source text not null,
    first_order_at timestamptz not null,
    primary key (customer_id, agent_id, campaign_id, source)
);

-- Recompute the rows of the given customers (null: all of them).
create function report_customers_refresh(ids bigint[]) returns void language sql as $$
    delete from report_customers where ids is null or customer_id = any (ids);
    delete from report_customer_keys where ids is null or customer_id = any (ids);
    -- The do-not-call entry may be on any number of theirs or of their leads; looked up from
    -- the customer's numbers, so a long regulator list is never scanned.
    insert into report_customers (customer_id, began, ended)
    select f.customer_id, f.began, least(f.cancelled, x.added_at)
    from (select o.customer_id, min(o.created_at) as began,
                 min(o.updated_at) filter (where o.status = 'cancelled') as cancelled
          from orders o where ids is null or o.customer_id = any (ids) group by 1) f
    left join lateral (
        select min(d.added_at) as added_at
        from (select cp.e164 from customer_phones cp where cp.customer_id = f.customer_id
              union
              select l.phone from leads l where l.customer_id = f.customer_id) p
        join do_not_call d on d.e164 = p.e164
        where d.added_at >= f.began
    ) x on true;
    insert into report_customer_keys (customer_id, agent_id, campaign_id, source, first_order_at)
    select o.customer_id, coalesce(o.agent_id, 0),
           coalesce(l.campaign_id, (select c.campaign_id from calls c where c.id = o.call_id), 0),
           coalesce(l.source_channel, cu.source_channel, ''), min(o.created_at)
    from orders o
    left join leads l on l.id = o.lead_id
    left join customers cu on cu.id = o.customer_id
    where ids is null or o.customer_id = any (ids)
    group by 1, 2, 3, 4;
$$;

create function report_customer_changed(customer bigint) returns void language plpgsql as $$
begin
    -- Two writers for one customer take turns, so neither inserts a row the other just did.
    perform pg_advisory_xact_lock(7250805, (customer % 2147483647)::integer);
    perform report_customers_refresh(array[customer]);
end $$;

create function report_orders_customer() returns trigger language plpgsql as $$
begin
    if tg_op <> 'INSERT' then perform report_customer_changed(old.customer_id); end if;
    if tg_op = 'INSERT' or (tg_op = 'UPDATE' and new.customer_id <> old.customer_id) then
        perform report_customer_changed(new.customer_id);
    end if;
    return null;
end $$;

create trigger report_orders_customer after insert or delete or update of
    customer_id, lead_id, call_id, agent_id, status, created_at, updated_at
    on orders for each row execute function report_orders_customer();

create function report_dnc_customer() returns trigger language plpgsql as $$
declare
    number text := case when tg_op = 'DELETE' then old.e164 else new.e164 end;
    customer bigint;
begin
    for customer in
        select cp.customer_id from customer_phones cp where cp.e164 = number
        union select l.customer_id from leads l where l.phone = number
    loop
        perform report_customer_changed(customer);
    end loop;
    return null;
end $$;

create trigger report_dnc_customer after insert or delete on do_not_call
    for each row execute function report_dnc_customer();

-- Agent status seconds per report day (closed intervals, cut at midnight),
-- recomputed with the call rows of a dirty day.
create table report_status_daily (
    day date not null,
    agent_id bigint not null,
    pause_seconds numeric(14, 3) not null,
    ready_seconds numeric(14, 3) not null,
    logged_in_seconds numeric(14, 3) not null,
    primary key (day, agent_id)
);

-- The same sums per calendar month: ranges of months and years read these
-- (the days at either end of the range that do not fill a month read the daily rows).
create table report_call_monthly (like report_call_daily including all);
alter table report_call_monthly rename column day to month;
create table report_status_monthly (like report_status_daily including all);
alter table report_status_monthly rename column day to month;

create function report_status_changed() returns trigger language plpgsql as $$
begin
    if tg_op <> 'INSERT' and old.ended_at is not null then
        insert into report_dirty_days (day)
        select generate_series((old.started_at at time zone s.time_zone)::date,
                               (old.ended_at at time zone s.time_zone)::date, interval '1 day')::date
        from report_rollup_state s on conflict do nothing;
    end if;
    if tg_op <> 'DELETE' and new.ended_at is not null then
        insert into report_dirty_days (day)
        select generate_series((new.started_at at time zone s.time_zone)::date,
                               (new.ended_at at time zone s.time_zone)::date, interval '1 day')::date
        from report_rollup_state s on conflict do nothing;
    end if;
    return null;
end $$;

create trigger report_status_changed after insert or update or delete on agent_status_log
    for each row execute function report_status_changed();
