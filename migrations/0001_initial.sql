-- Users, their profiles, and the chat history partitioned by month.
--
-- Applied by evolve-migrate inside one transaction; the runner creates and fills
-- schema_migrations itself.

-- One row per person talking to the companion. `external_id` is the identity the user
-- arrives with (for example a messenger account id); `id` is what every other table uses.
create table users (
    id            bigint generated always as identity primary key,
    external_id   text unique,
    plan          text not null default 'free' check (plan in ('free', 'premium')),
    premium_until timestamptz,
    created_at    timestamptz not null default now()
);

-- The hourly subscription-expiry job looks only at premium users whose time has run out.
create index users_premium_until_idx on users (premium_until) where plan = 'premium';

-- Profile data the user gave, and the memory that dialog analysis extracts; both are
-- documents read and written whole, so jsonb rather than columns.
create table profiles (
    user_id    bigint primary key references users (id) on delete cascade,
    data       jsonb not null default '{}',
    memory     jsonb not null default '{}',
    updated_at timestamptz not null default now()
);

-- Every message of every conversation. Partitioned by month on created_at so that
-- retention drops whole partitions instead of deleting rows, and reads of recent history
-- touch only recent partitions.
--
-- The primary key must contain the partition key. Leading with (user_id, created_at)
-- makes it the index that serves the hot read, a user's newest messages first with
-- keyset pagination on (created_at, id), by a backward index scan; a second index in
-- descending order would only duplicate it and slow every insert.
create table chat_history (
    id         bigint generated always as identity,
    user_id    bigint not null references users (id) on delete cascade,
    role       text not null check (role in ('user', 'assistant', 'system')),
    content    text not null,
    -- true when the answer is the fallback reply given while the LLM was unavailable
    degraded   boolean not null default false,
    created_at timestamptz not null default now(),
    primary key (user_id, created_at, id)
) partition by range (created_at);

-- Partitions for the current and the next month (in UTC), named chat_history_yYYYYmMM;
-- the maintenance job keeps creating months ahead. Rows outside every month partition
-- land in the default partition rather than failing the insert.
do $$
declare
    month_start timestamp := date_trunc('month', now() at time zone 'UTC');
    first_day   timestamp;
begin
    for i in 0..1 loop
        first_day := month_start + make_interval(months => i);
        execute format(
            'create table %I partition of chat_history for values from (%L) to (%L)',
            'chat_history_y' || to_char(first_day, 'YYYY') || 'm' || to_char(first_day, 'MM'),
            first_day at time zone 'UTC',
            (first_day + interval '1 month') at time zone 'UTC'
        );
    end loop;
end
$$;

create table chat_history_default partition of chat_history default;
