-- The inbound queue (telesales/inbound.py): which queue (service line) an inbound call waited in,
-- when it joined and left it, and how it left: answered by an agent, a callback requested
-- (a follow-up was created), or the caller hung up (abandoned).
alter table calls add column queue text;
alter table calls add column queued_at timestamptz;
alter table calls add column queue_left_at timestamptz;
alter table calls add column queue_outcome text check (queue_outcome in ('answered', 'callback', 'abandoned'));
create index calls_queue on calls (queue, queued_at) where queue is not null;
