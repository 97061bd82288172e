-- The live predictive dialer.

-- The compliance gate "recently_abandoned" (crm/compliance.py) looks up a
-- number's latest abandoned answer on every dial.
create index calls_abandoned_number on calls (to_number, answered_at) where disposition = 'DROP';
-- The pacer reads each predictive campaign's last 30 days (dials, answers,
-- abandons) every dialer.recompute_seconds.
create index calls_campaign_created on calls (campaign_id, created_at);
