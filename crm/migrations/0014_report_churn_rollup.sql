-- Reports at ten million calls: a churn rollup so "customers active at the
-- start of the period" no longer counts every customer who ever ordered.
--
-- Per customer and group (an agent, a team, a campaign, a lead source, or everyone)
-- two events: it starts on the day of the customer's first order in that
-- group and stops on the day the customer churned (if it churned after that
-- first order; a customer who churned before never counts as active there).
-- Active at the start of day S = starts - stops on the days before S, read
-- from whole months (report_churn_monthly) plus the days of S's own month.
-- Churned in a range is read from the few customers who churned in it
-- (report_customers_ended). crm/report_rollup.py keeps both tables.
create table report_churn_daily (
    dim text not null check (dim in ('agent', 'team', 'campaign', 'source', 'total')),
    day date not null,
    key text not null,       -- agent, team or campaign id ('0': none), source ('': none), '' for total
    starts integer not null,
    stops integer not null,
    primary key (dim, day, key)
);
create table report_churn_monthly (like report_churn_daily including all);
alter table report_churn_monthly rename column day to month;

create index report_customers_ended on report_customers (ended) where ended is not null;
create index report_customer_keys_first on report_customer_keys (first_order_at);

-- Days whose churn rows must be recomputed: the old and new days of a
-- customer whose rows report_customers_refresh() rewrites.
create table report_churn_dirty_days (day date primary key);

-- false: the churn rollup was never built (an existing database); the next
-- refresh builds it once.
alter table report_rollup_state add column churn_built boolean not null default false;

create function report_churn_mark(ids bigint[]) returns void language sql as $$
    insert into report_churn_dirty_days (day)
    select distinct (t.at at time zone s.time_zone)::date
    from (select k.first_order_at as at from report_customer_keys k where k.customer_id = any (ids)
          union all
          select r.ended from report_customers r where r.customer_id = any (ids) and r.ended is not null) t,
         report_rollup_state s
    on conflict do nothing
$$;

-- The same function as in 0004, with the days before and after the rewrite marked.
create or replace function report_customers_refresh(ids bigint[]) returns void language plpgsql as $$
begin
    if ids is not null then perform report_churn_mark(ids); end if;
    delete from report_customers where ids is null or customer_id = any (ids);
    delete from report_customer_keys where ids is null or customer_id = any (ids);
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
    if ids is not null then perform report_churn_mark(ids); end if;
end $$;

-- A late disposition recomputes one agent's calls of one day, not the whole
-- day's (thousands of calls, each looked up in four tables): the call
-- triggers mark (day, agent) here, 0 for no agent. Agent status changes mark
-- report_status_dirty_days, which recomputes status seconds only.
-- report_dirty_days (0004) still means "the whole day, calls and status".
create table report_dirty_agent_days (
    day date not null,
    agent_id bigint not null,
    primary key (day, agent_id)
);
create table report_status_dirty_days (day date primary key);

create function report_mark_agent_day(at timestamptz, agent bigint) returns void language sql as $$
    insert into report_dirty_agent_days (day, agent_id)
    select (at at time zone s.time_zone)::date, coalesce(agent, 0) from report_rollup_state s
    where at is not null
    on conflict do nothing
$$;

create or replace function report_calls_changed() returns trigger language plpgsql as $$
begin
    if tg_op <> 'INSERT' then perform report_mark_agent_day(old.created_at, old.agent_id); end if;
    if tg_op <> 'DELETE' then perform report_mark_agent_day(new.created_at, new.agent_id); end if;
    return null;
end $$;

create or replace function report_mark_call(call uuid) returns void language sql as $$
    select report_mark_agent_day(c.created_at, c.agent_id) from calls c where c.id = call
$$;

create or replace function report_lead_source_changed() returns trigger language plpgsql as $$
begin
    insert into report_dirty_agent_days (day, agent_id)
    select distinct (c.created_at at time zone s.time_zone)::date, coalesce(c.agent_id, 0)
    from calls c, report_rollup_state s where c.lead_id = new.id
    on conflict do nothing;
    return null;
end $$;

create or replace function report_status_changed() returns trigger language plpgsql as $$
begin
    if tg_op <> 'INSERT' and old.ended_at is not null then
        insert into report_status_dirty_days (day)
        select generate_series((old.started_at at time zone s.time_zone)::date,
                               (old.ended_at at time zone s.time_zone)::date, interval '1 day')::date
        from report_rollup_state s on conflict do nothing;
    end if;
    if tg_op <> 'DELETE' and new.ended_at is not null then
        insert into report_status_dirty_days (day)
        select generate_series((new.started_at at time zone s.time_zone)::date,
                               (new.ended_at at time zone s.time_zone)::date, interval '1 day')::date
        from report_rollup_state s on conflict do nothing;
    end if;
    return null;
end $$;

-- The call sums per day and agent only (and per month): the agent, team, day,
-- week, month and total groupings read these, about 100 times fewer rows than
-- report_call_daily (agent x campaign x source) on a busy day. Derived from
-- report_call_daily whenever its rows change (crm/report_rollup.py).
create table report_call_agent_daily (
    day date not null,
    agent_id bigint not null,
    dials integer not null,
    connects integer not null,
    effective integer not null,
    intents integer not null,
    sales integer not null,
    revenue numeric(18, 2) not null,
    handled integer not null,
    talk_seconds numeric(14, 3) not null,
    wrap_seconds numeric(14, 3) not null,
    primary key (day, agent_id)
);
create table report_call_agent_monthly (like report_call_agent_daily including all);
alter table report_call_agent_monthly rename column day to month;

insert into report_call_agent_daily
select day, agent_id, sum(dials), sum(connects), sum(effective), sum(intents), sum(sales), sum(revenue),
       sum(handled), sum(talk_seconds), sum(wrap_seconds)
from report_call_daily group by 1, 2;
insert into report_call_agent_monthly
select month, agent_id, sum(dials), sum(connects), sum(effective), sum(intents), sum(sales), sum(revenue),
       sum(handled), sum(talk_seconds), sum(wrap_seconds)
from report_call_monthly group by 1, 2;

-- A customer's team is their agents' team now: moving an agent to another
-- team rebuilds the churn rollup once (at the next report).
create function report_team_changed() returns trigger language plpgsql as $$
begin
    update report_rollup_state set churn_built = false;
    return null;
end $$;

create trigger report_team_changed after update of team_id on users
    for each row when (old.team_id is distinct from new.team_id)
    execute function report_team_changed();
