-- The supervisor wallboard (telesales/floor_feed.py) hears of floor changes
-- through NOTIFY on channel 'floor_events', sent by these triggers when a row
-- that the board shows is written: an agent's status stretch, a call, a
-- disposition, a user. Whoever writes (the desk, the seats' event task, the
-- progressive dialer, another service process, psql) is heard alike, and the
-- notice goes out at commit, so the board never shows uncommitted state.
--
-- Statement-level triggers with transition tables: a bulk insert of history
-- (a benchmark, a migration of old calls) sends at most one small notice per
-- statement, and rows that cannot change the live board (stretches that
-- ended, calls from before yesterday) are left out. Payload:
--   {"type": "floor", "agents": [user ids], "campaigns": [campaign ids]}
-- or {"type": "floor", "all": true} when more than 200 agents are touched
-- (NOTIFY payloads are limited to 8000 bytes).
-- Other producers may NOTIFY 'floor_events' too, e.g. an inbound queue:
--   {"type": "queue", "queue": NAME, "waiting": N, "longest_wait_since": ISO time or null}

create function floor_notify(agents bigint[], campaigns bigint[]) returns void
language plpgsql as $$
begin
    if coalesce(cardinality(agents), 0) = 0 and coalesce(cardinality(campaigns), 0) = 0 then
        return;
    end if;
    if cardinality(agents) > 200 or cardinality(campaigns) > 200 then
        perform pg_notify('floor_events', '{"type": "floor", "all": true}');
    else
        perform pg_notify('floor_events', json_build_object(
            'type', 'floor', 'agents', coalesce(agents, '{}'), 'campaigns', coalesce(campaigns, '{}'))::text);
    end if;
end $$;

create function floor_status_changed() returns trigger
language plpgsql as $$
begin
    perform floor_notify(
        (select array_agg(distinct user_id) from new_rows
         where ended_at is null or ended_at > now() - interval '1 minute'),
        null);
    return null;
end $$;

create function floor_calls_changed() returns trigger
language plpgsql as $$
begin
    perform floor_notify(
        (select array_agg(distinct agent_id) from new_rows
         where agent_id is not null and (ended_at is null or created_at > now() - interval '2 days')),
        (select array_agg(distinct campaign_id) from new_rows
         where campaign_id is not null and (ended_at is null or created_at > now() - interval '2 days')));
    return null;
end $$;

create function floor_dispositions_changed() returns trigger
language plpgsql as $$
begin
    perform floor_notify(
        (select array_agg(distinct agent_id) from new_rows
         where agent_id is not null and created_at > now() - interval '2 days'),
        null);
    return null;
end $$;

create function floor_users_changed() returns trigger
language plpgsql as $$
begin
    perform floor_notify((select array_agg(id) from new_rows), null);
    return null;
end $$;

-- A trigger with transition tables may name one event only, hence two per table.
create trigger floor_status_insert after insert on agent_status_log
    referencing new table as new_rows for each statement execute function floor_status_changed();
create trigger floor_status_update after update on agent_status_log
    referencing new table as new_rows for each statement execute function floor_status_changed();
create trigger floor_calls_insert after insert on calls
    referencing new table as new_rows for each statement execute function floor_calls_changed();
create trigger floor_calls_update after update on calls
    referencing new table as new_rows for each statement execute function floor_calls_changed();
create trigger floor_dispositions_insert after insert on call_dispositions
    referencing new table as new_rows for each statement execute function floor_dispositions_changed();
create trigger floor_users_insert after insert on users
    referencing new table as new_rows for each statement execute function floor_users_changed();
create trigger floor_users_update after update on users
    referencing new table as new_rows for each statement execute function floor_users_changed();
