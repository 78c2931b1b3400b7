-- What the scheduled jobs need from the database: an index that finds rows by time, and
-- the partition maintenance steps as functions.
--
-- Each maintenance step is one function so that it runs as one statement, and so as one
-- transaction, on whatever pooled connection the job gets: a job never holds a
-- transaction open across calls, and a job that dies half-way leaves nothing half-done.
-- Table names cannot be bound as parameters, so the functions take them as text, check
-- them against the naming rule and the catalogue, and quote them with format('%I').

-- A block-range index on created_at: a few pages per partition, nearly free to maintain
-- for rows that arrive in time order. It lets the cleanup find the expired rows of the
-- boundary partition, and the cache warm-up find the last day's rows, without reading
-- whole partitions.
create index chat_history_created_at_brin on chat_history using brin (created_at);

-- Whether p_name is one of chat_history's partitions: a month partition named
-- chat_history_yYYYYmMM or the default partition.
create function chat_history_is_partition(p_name text) returns boolean
language sql stable as $$
    select (p_name ~ '^chat_history_y[0-9]{4}m(0[1-9]|1[0-2])$' or p_name = 'chat_history_default')
       and exists (
           select 1 from pg_inherits
           where inhparent = 'chat_history'::regclass
             and inhrelid = to_regclass(format('%I', p_name))
       )
$$;

-- Creates the month partition p_name for [p_from, p_to) and moves into it the rows that
-- landed in the default partition for that range; returns how many rows moved. A no-op
-- (0) when the partition exists.
--
-- CREATE TABLE ... PARTITION OF would fail while the default partition holds rows of the
-- range (and would lock the whole table), so the table is created on its own, the rows
-- are moved into it, and then it is attached: ATTACH takes only a SHARE UPDATE EXCLUSIVE
-- lock on chat_history (reads and writes go on), and an ACCESS EXCLUSIVE lock on the
-- default partition while it checks that no row of the range is left there. A row that
-- lands in the default partition in between makes the ATTACH fail, and everything rolls
-- back. Waiting for locks is bounded by p_lock_timeout_ms: on timeout the call fails with
-- SQLSTATE 55P03 and the next run tries again.
create function chat_history_attach_month(
    p_name text, p_from timestamptz, p_to timestamptz, p_lock_timeout_ms int
) returns bigint
language plpgsql as $$
declare
    moved bigint;
begin
    if p_name !~ '^chat_history_y[0-9]{4}m(0[1-9]|1[0-2])$' or p_to <= p_from then
        raise exception 'not a month partition: % [%, %)', p_name, p_from, p_to
            using errcode = 'invalid_parameter_value';
    end if;
    if to_regclass(format('%I', p_name)) is not null then
        if chat_history_is_partition(p_name) then
            return 0;
        end if;
        raise exception 'table % exists but is not a partition of chat_history', p_name
            using errcode = 'duplicate_table';
    end if;
    perform set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    -- Without INCLUDING IDENTITY: rows keep the ids the parent's sequence gave them.
    execute format(
        'create table %I (like chat_history including defaults including constraints)', p_name);
    execute format(
        'with moved as (
             delete from chat_history_default where created_at >= $1 and created_at < $2
             returning *)
         insert into %I select * from moved', p_name)
        using p_from, p_to;
    get diagnostics moved = row_count;
    execute format(
        'alter table chat_history attach partition %I for values from (%L) to (%L)',
        p_name, p_from, p_to);
    return moved;
end
$$;

-- Detaches and drops the month partition p_name; returns the planner's estimate of its
-- rows (counting them would hold the lock for the time of a scan; -1 when the table was
-- never analysed), or null when there is no such partition. A plain DETACH: DETACH ... CONCURRENTLY is refused while a default
-- partition exists. It takes an ACCESS EXCLUSIVE lock on chat_history, and every chat
-- query queues behind a waiting DETACH, so the wait is bounded by p_lock_timeout_ms
-- (SQLSTATE 55P03 on timeout; the next run tries again).
create function chat_history_drop_month(p_name text, p_lock_timeout_ms int) returns bigint
language plpgsql as $$
declare
    estimate bigint;
begin
    if p_name !~ '^chat_history_y[0-9]{4}m(0[1-9]|1[0-2])$' then
        raise exception 'not a month partition: %', p_name
            using errcode = 'invalid_parameter_value';
    end if;
    if not chat_history_is_partition(p_name) then
        return null;
    end if;
    select reltuples::bigint into estimate
    from pg_class where oid = to_regclass(format('%I', p_name));
    perform set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    execute format('alter table chat_history detach partition %I', p_name);
    execute format('drop table %I', p_name);
    return estimate;
end
$$;

-- Deletes at most p_limit rows older than p_cutoff from one partition (the month that
-- contains the cut-off, or the default partition); returns how many. Small batches keep
-- each transaction short, so the cleanup can stop at its time budget and resume on the
-- next run. Row locks only: chat traffic is not blocked.
create function chat_history_delete_before(p_name text, p_cutoff timestamptz, p_limit int)
returns bigint
language plpgsql as $$
declare
    deleted bigint;
begin
    if not chat_history_is_partition(p_name) then
        raise exception 'not a partition of chat_history: %', p_name
            using errcode = 'invalid_parameter_value';
    end if;
    execute format(
        'delete from %I where ctid = any (array(
             select ctid from %I where created_at < $1 limit $2))', p_name, p_name)
        using p_cutoff, p_limit;
    get diagnostics deleted = row_count;
    return deleted;
end
$$;
