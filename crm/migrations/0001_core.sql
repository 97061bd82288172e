-- The CRM core: users, customers, campaigns, leads, calls, dispositions,
-- follow-ups, interactions, orders, complaints, surveys, do-not-call, audit.
-- Money is numeric, time is timestamptz, phone numbers are E.164 text.

create extension if not exists pg_trgm;

create table teams (
    id bigserial primary key,
    name text not null unique,
    created_at timestamptz not null default now()
);

create table users (
    id bigserial primary key,
    username text not null,
    display_name text not null default '',
    role text not null check (role in ('agent', 'qa', 'supervisor', 'admin')),
    password_hash text not null,
    team_id bigint references teams,
    -- the agent's own phone (desk phone or softphone), rung for the headset leg
    sip_uri text,
    skills text[] not null default '{}',
    active boolean not null default true,
    created_at timestamptz not null default now(),
    last_login_at timestamptz
);
create unique index users_username_key on users (lower(username));

create table customers (
    id bigserial primary key,
    name text not null default '',
    company text not null default '',
    email text,
    source_channel text,
    region text check (region ~ '^[A-Z]{2}$'),
    time_zone text,
    tags text[] not null default '{}',
    notes text not null default '',
    consent boolean not null default false,
    consent_at timestamptz,
    do_not_call boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index customers_name_trgm on customers using gin (name gin_trgm_ops);
create index customers_company_trgm on customers using gin (company gin_trgm_ops);

-- A number belongs to one customer: the store's duplicate rule.
create table customer_phones (
    e164 text primary key check (e164 ~ '^\+[1-9][0-9]{6,14}$'),
    customer_id bigint not null references customers on delete cascade,
    label text not null default 'phone',
    is_primary boolean not null default false,
    created_at timestamptz not null default now()
);
create index customer_phones_customer on customer_phones (customer_id);

create table campaigns (
    id bigserial primary key,
    name text not null unique,
    kind text not null default 'outbound_sales' check (kind in ('outbound_sales', 'inbound_service')),
    dialing_mode text not null default 'preview'
        check (dialing_mode in ('preview', 'progressive', 'predictive', 'inbound')),
    -- {name}, {company}, {agent} ... are replaced with the customer's fields
    script text not null default '',
    calling_window_start time not null default '09:00',
    calling_window_end time not null default '21:00',
    max_attempts_per_day integer not null default 3 check (max_attempts_per_day > 0),
    max_attempts_total integer not null default 10 check (max_attempts_total > 0),
    min_retry_minutes integer not null default 60 check (min_retry_minutes >= 0),
    scorecard text not null default 'default',
    recording_notice boolean not null default true,
    requires_consent boolean not null default false,
    -- E.164 prefixes outbound calls may go to; empty = the default region only
    allowed_prefixes text[] not null default '{}',
    active boolean not null default true,
    created_at timestamptz not null default now()
);

create table lead_imports (
    id bigserial primary key,
    campaign_id bigint not null references campaigns,
    file_name text not null,
    file_sha256 text not null,
    imported integer not null,
    duplicates integer not null,
    rejected integer not null,
    imported_by bigint references users,
    created_at timestamptz not null default now()
);

create table leads (
    id bigserial primary key,
    campaign_id bigint not null references campaigns,
    customer_id bigint not null references customers,
    phone text not null check (phone ~ '^\+[1-9][0-9]{6,14}$'),
    -- 'new' until the first disposition, then the last disposition code
    status text not null default 'new',
    -- true once a final disposition or the attempt limit closes the lead
    closed boolean not null default false,
    attempts_today integer not null default 0,
    attempts_day date,
    attempts_total integer not null default 0,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz,
    owner_agent_id bigint references users,
    priority integer not null default 0,
    source_channel text,
    import_id bigint references lead_imports,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (campaign_id, phone)
);
create index leads_customer on leads (customer_id);
create index leads_hopper on leads (campaign_id, closed, next_attempt_at, priority desc);

-- Disposition codes, synced from config/dispositions.toml at start.
create table dispositions (
    code text primary key,
    label text not null,
    human_answered boolean not null default false,
    contact boolean not null default false,
    intent boolean not null default false,
    sale boolean not null default false,
    callback boolean not null default false,
    dnc boolean not null default false,
    complaint boolean not null default false,
    not_interested boolean not null default false,
    unworkable boolean not null default false,
    final boolean not null default false,
    retry_after_minutes integer,
    max_attempts integer,
    active boolean not null default true
);

create table calls (
    id uuid primary key default gen_random_uuid(),
    direction text not null check (direction in ('outbound', 'inbound')),
    seat text,
    agent_id bigint references users,
    customer_id bigint references customers,
    lead_id bigint references leads,
    campaign_id bigint references campaigns,
    from_number text,
    to_number text,
    sip_call_id text,
    created_at timestamptz not null default now(),
    ringing_at timestamptz,
    answered_at timestamptz,
    ended_at timestamptz,
    sip_code integer,
    hangup_side text check (hangup_side in ('agent', 'customer', 'system')),
    hangup_cause text,
    recording_path text,
    recording_sha256 text,
    recording_state text not null default 'none'
        check (recording_state in ('none', 'recording', 'complete', 'repaired', 'failed_storage')),
    duration_seconds numeric(10, 3),
    disposition text references dispositions
);
create index calls_created on calls (created_at);
create index calls_agent on calls (agent_id, created_at);
create index calls_customer on calls (customer_id, created_at);
create index calls_lead on calls (lead_id);

-- One wrap-up per call (or per lead worked without a call).
create table call_dispositions (
    id bigserial primary key,
    call_id uuid unique references calls,
    lead_id bigint references leads,
    customer_id bigint not null references customers,
    agent_id bigint references users,
    code text not null references dispositions,
    note text not null default '',
    created_at timestamptz not null default now()
);
create index call_dispositions_lead on call_dispositions (lead_id);

-- Callbacks.
create table follow_ups (
    id bigserial primary key,
    customer_id bigint not null references customers,
    lead_id bigint references leads,
    call_id uuid references calls,
    -- null: any agent of the campaign may take it
    owner_agent_id bigint references users,
    due_at timestamptz not null,
    note text not null default '',
    status text not null default 'open' check (status in ('open', 'done', 'missed', 'cancelled')),
    created_by bigint references users,
    created_at timestamptz not null default now(),
    closed_at timestamptz
);
create index follow_ups_due on follow_ups (status, due_at);

-- The customer's communication record, in time order.
create table interactions (
    id bigserial primary key,
    customer_id bigint not null references customers,
    kind text not null check (kind in ('call', 'note', 'email', 'sms', 'survey', 'order', 'complaint')),
    occurred_at timestamptz not null default now(),
    user_id bigint references users,
    call_id uuid references calls,
    summary text not null default '',
    details jsonb not null default '{}'
);
create index interactions_customer on interactions (customer_id, occurred_at);

create table orders (
    id bigserial primary key,
    customer_id bigint not null references customers,
    call_id uuid references calls,
    lead_id bigint references leads,
    agent_id bigint references users,
    product text not null check (product <> ''),
    quantity numeric(12, 3) not null check (quantity > 0),
    unit_price numeric(14, 2) not null check (unit_price >= 0),
    currency char(3) not null,
    total numeric(16, 2) generated always as (round(quantity * unit_price, 2)) stored,
    delivery_date date not null,
    delivery_address text not null check (delivery_address <> ''),
    payment_method text not null,
    status text not null default 'confirmed' check (status in ('confirmed', 'delivered', 'cancelled')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index orders_customer on orders (customer_id);

create table complaints (
    id bigserial primary key,
    customer_id bigint not null references customers,
    call_id uuid references calls,
    received_at timestamptz not null default now(),
    complainant text not null,
    channel text not null check (channel in ('phone', 'email', 'web', 'sms', 'in_person', 'social_media', 'letter')),
    content text not null check (content <> ''),
    department text,
    owner_id bigint references users,
    state text not null default 'new'
        check (state in ('new', 'assigned', 'in_progress', 'resolved', 'confirmed_by_customer', 'reopened')),
    ack_due_at timestamptz not null,
    resolve_due_at timestamptz not null,
    acknowledged_at timestamptz,
    resolved_at timestamptz,
    closed_at timestamptz,
    resolution text not null default '',
    created_by bigint references users,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index complaints_state on complaints (state, resolve_due_at);
create index complaints_customer on complaints (customer_id);

-- Every state change of a complaint: who, when, from, to.
create table complaint_events (
    id bigserial primary key,
    complaint_id bigint not null references complaints on delete cascade,
    from_state text,
    to_state text not null,
    user_id bigint references users,
    note text not null default '',
    at timestamptz not null default now()
);
create index complaint_events_complaint on complaint_events (complaint_id, at);

-- Evidence files live under data_dir/evidence/<sha256>; the row holds what
-- is needed to find and check them.
create table complaint_evidence (
    id bigserial primary key,
    complaint_id bigint not null references complaints on delete cascade,
    file_name text not null,
    content_type text not null default 'application/octet-stream',
    size_bytes bigint not null,
    sha256 text not null,
    uploaded_by bigint references users,
    uploaded_at timestamptz not null default now()
);

create table survey_answers (
    id bigserial primary key,
    customer_id bigint not null references customers,
    call_id uuid references calls,
    campaign_id bigint references campaigns,
    survey text not null,
    question text not null,
    answer text not null default '',
    score smallint check (score between 0 and 10),
    answered_at timestamptz not null default now()
);
create index survey_answers_customer on survey_answers (customer_id);

create table do_not_call (
    e164 text primary key check (e164 ~ '^\+[1-9][0-9]{6,14}$'),
    reason text not null,
    source text not null default 'agent'
        check (source in ('customer_request', 'agent', 'regulator', 'import', 'complaint')),
    added_by bigint references users,
    added_at timestamptz not null default now()
);

create table audit_log (
    id bigserial primary key,
    at timestamptz not null default now(),
    user_id bigint references users,
    action text not null,
    entity text not null,
    entity_id text,
    details jsonb not null default '{}'
);
create index audit_log_entity on audit_log (entity, entity_id);
create index audit_log_at on audit_log (at);

-- Idempotency keys of state-changing API requests: the stored response is
-- replayed when a client retries with the same key.
create table idempotency_keys (
    user_id bigint not null references users,
    key text not null,
    request_sha256 text not null,
    response_status integer not null,
    response_body jsonb not null,
    created_at timestamptz not null default now(),
    primary key (user_id, key)
);

-- Login sessions of the web service; id is the sha256 of the cookie token.
create table web_sessions (
    id text primary key,
    user_id bigint references users on delete cascade,
    data jsonb not null,
    expires_at timestamptz not null
);
create index web_sessions_expires on web_sessions (expires_at);
