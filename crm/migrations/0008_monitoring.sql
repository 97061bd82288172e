-- Supervisor monitoring of live calls: one row per stretch of one mode (listen, whisper, barge)
-- by one supervisor on one call. The audit log has the same facts (monitor_start / monitor_end);
-- this table marks them on the call, so a call's page and the agent desk can ask "who is on it now".

create table call_monitoring (
    id bigserial primary key,
    call_id uuid not null references calls,
    supervisor_id bigint not null references users,
    mode text not null check (mode in ('listen', 'whisper', 'barge')),
    started_at timestamptz not null default now(),
    ended_at timestamptz,
    -- why it ended: the supervisor left or changed mode, the call ended, the service stopped
    end_reason text check (end_reason in ('left', 'mode_change', 'call_ended', 'service_stopped')),
    check (ended_at is null or ended_at >= started_at)
);
create index call_monitoring_call on call_monitoring (call_id, started_at);
-- The open sessions (the agent desk's "you are monitored" asks for these).
create index call_monitoring_open on call_monitoring (call_id) where ended_at is null;
