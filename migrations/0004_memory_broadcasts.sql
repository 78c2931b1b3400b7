-- Dialog analysis and broadcasts, both run by the work queue.
--
-- profiles.memory_watermark is the id of the last chat message a dialog analysis read.
-- An analysis reads the messages after it and writes the merged memory and the new
-- watermark in one UPDATE conditioned on the old one, so an analysis task that runs
-- twice changes the memory once.
alter table profiles add column memory_watermark bigint not null default 0;

-- A broadcast: one message from the operators to every user of a segment.
create table broadcasts (
    id          bigint generated always as identity primary key,
    message     text not null,
    segment     text not null check (segment in ('all', 'free', 'premium')),
    status      text not null default 'pending'
                check (status in ('pending', 'running', 'done', 'cancelled')),
    -- users of the segment when it was created; delivered counts the recipients so far
    total       bigint not null,
    delivered   bigint not null default 0,
    created_at  timestamptz not null default now(),
    started_at  timestamptz,
    finished_at timestamptz
);

-- One row per recipient: a page delivered twice (its task retried) inserts nobody twice.
create table broadcast_deliveries (
    broadcast_id bigint not null references broadcasts (id) on delete cascade,
    user_id      bigint not null references users (id) on delete cascade,
    primary key (broadcast_id, user_id)
);

-- A broadcast's message in a user's history is an assistant message marked with the
-- broadcast; chat prompts leave these out. On the partitioned table, the column reaches
-- every partition, and new partitions (created LIKE chat_history) get it too.
alter table chat_history add column broadcast_id bigint;

-- Delivers one keyset page of a broadcast and returns the page's last user id, its size
-- and how many it delivered. The page's users get a delivery row each (a user who has
-- one already is skipped), a history message and the counter, all in one statement, so a
-- page run twice (its task retried) delivers nobody twice. A function, so that it is one
-- statement however the caller wraps it.
create function broadcast_deliver_page(
    p_broadcast bigint, p_after bigint, p_limit bigint, p_message text, p_segment text
) returns table (last_user_id bigint, page_users bigint, delivered bigint)
language sql as $$
    with page as (
        select id from users
        where id > p_after and (p_segment = 'all' or plan = p_segment)
        order by id
        limit p_limit
    ), delivered as (
        insert into broadcast_deliveries (broadcast_id, user_id)
        select p_broadcast, id from page
        on conflict do nothing
        returning user_id
    ), messages as (
        insert into chat_history (user_id, role, content, broadcast_id, created_at)
        select user_id, 'assistant', p_message, p_broadcast, clock_timestamp() from delivered
        returning user_id
    ), counted as (
        update broadcasts set delivered = delivered + (select count(*) from messages)
        where id = p_broadcast
    )
    select (select max(id) from page),
           (select count(*) from page),
           (select count(*) from messages)
$$;
