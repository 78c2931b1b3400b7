-- Voice messages: the spoken audio of an assistant message, made by the work queue's
-- voice task and served by GET /api/chat/messages/{id}/voice.
--
-- One row per message (the primary key): a task that runs twice stores the audio once.
-- message_at is the message's own time, so voices follow chat-history retention (the
-- cleanup job deletes them with their messages). chat_history is partitioned by time, so
-- it cannot be referenced by a foreign key on its id alone; the user's key cascades.
create table voice_messages (
    message_id   bigint primary key,
    user_id      bigint not null references users (id) on delete cascade,
    message_at   timestamptz not null,
    content_type text not null,
    audio        bytea not null,
    etag         text not null,
    voice        text not null,
    created_at   timestamptz not null default now()
);

create index voice_messages_message_at_idx on voice_messages (message_at);
