-- The agent desk: dialing settings of campaigns, lead claims of the hopper,
-- and the agent status log.

-- Due callbacks owned by another agent: false = only their owner gets them
-- from the hopper (unowned "anyone" callbacks go to any agent); true = any
-- agent of the campaign may take them.
alter table campaigns add column callbacks_any_agent boolean not null default false;
-- allowed_prefixes (0001) are E.164 prefixes such as +86 or +8621.
alter table campaigns add constraint campaigns_allowed_prefixes_e164
    check (array_to_string(allowed_prefixes, ',') ~ '^(\+[0-9]{1,15}(,|$))*$');

-- The hopper's claim: a lead handed to an agent (shown in preview, being
-- dialled) is theirs until the claim expires or the wrap-up releases it; no
-- other agent is given it meanwhile.
alter table leads add column claimed_by bigint references users;
alter table leads add column claim_expires_at timestamptz;
create index leads_claimed_by on leads (claimed_by) where claimed_by is not null;
-- The hopper's tiers: new leads by priority, retries by priority, open callbacks per lead.
create index leads_hopper_new on leads (campaign_id, priority desc, id) where status = 'new' and not closed;
create index leads_hopper_retry on leads (campaign_id, priority desc, next_attempt_at, id)
    where status <> 'new' and not closed;
create index follow_ups_open_lead on follow_ups (lead_id) where status = 'open';

-- agent_status_log (the desk writes it) is created in 0004_reports.sql.
