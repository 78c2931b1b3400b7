//! Every Lua script the application runs touches keys of one hash slot, as Redis Cluster
//! (and any proxy in front of one) requires of a script. Spin's Redis client speaks to one
//! endpoint and is not cluster-aware; keeping each script in one slot means the keys can
//! still be spread over a cluster behind a slot-routing proxy without changing a script.
//!
//! The slot is computed here as Redis computes it (CRC16/XMODEM of the hash tag, modulo
//! 16384), for the keys each script call site passes, with the separators ids may hold.

use std::collections::HashSet;
use std::time::Duration;

use evolve_core::ids::UserRef;
use evolve_core::jobs::Job;
use evolve_core::keys::{self, CachePrefix};
use evolve_core::queue::scripts::{self, Failure};
use evolve_core::queue::{Delivery, Kind, NewTask, Priority, Task};

const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The cluster slot of `key`.
fn slot(key: &str) -> u16 {
    CRC16.checksum(keys::hash_tag(key).as_bytes()) % 16_384
}

fn assert_one_slot(script: &str, keys: &[String]) {
    let slots: Vec<u16> = keys.iter().map(|k| slot(k)).collect();
    assert!(
        slots.windows(2).all(|w| w[0] == w[1]),
        "{script}: keys in slots {slots:?}: {keys:?}"
    );
}

fn users() -> Vec<UserRef> {
    // User ids may hold `:` `.` `@` `-` `_` (no braces: they are refused when parsed).
    ["alice", "tg:42", "x:lock", "a.b@c-d_e", "0"]
        .into_iter()
        .map(|u| UserRef::parse(u).unwrap())
        .collect()
}

#[test]
fn the_slot_is_the_one_redis_computes() {
    // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
    assert_eq!(CRC16.checksum(b"123456789"), 0x31c3);
    assert_eq!(slot("foo"), 12_182);
    assert_eq!(slot("somekey"), 11_058);
    assert_eq!(slot("{foo}mykey"), slot("foo"));
    assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
}

#[test]
fn each_queue_script_keeps_its_keys_in_the_queue_slot() {
    let delivery = Delivery {
        priority: Priority::High,
        entry: "1-0".into(),
        deliveries: 1,
        task: Task {
            id: "t".into(),
            kind: "voice".into(),
            payload: "{}".into(),
            attempt: 0,
            reference: "voice:1".into(),
            enqueued_ms: 1,
        },
    };
    let mut calls = Vec::new();
    for priority in Priority::ALL {
        for reference in ["voice:7", "a}b{c", ""] {
            let mut task = NewTask::new(Kind::Voice, "{}".into())
                .with_reference(reference.into(), Duration::from_secs(1));
            task.priority = priority;
            calls.push(scripts::enqueue(&task, "t", 1, "ch"));
            for user in users() {
                calls.push(scripts::enqueue_every(
                    &task,
                    &keys::analysis_turns(&user),
                    10,
                    Duration::from_secs(1),
                    "t",
                    1,
                    "ch",
                ));
            }
        }
    }
    calls.extend([
        scripts::claim("c", 1, Duration::from_secs(1), 3, 10),
        scripts::complete(&delivery, "{}", 5),
        scripts::fail(&delivery, "c", &Failure::Dead, "e", 1, 1),
        scripts::retry_dead("1-0", 1),
        scripts::delete_dead("1-0"),
        scripts::list_dead(10),
        scripts::stats(),
        scripts::finish("c", Duration::from_secs(1)),
    ]);
    let queue_slot = slot(&keys::queue_stream("default"));
    for call in &calls {
        assert_one_slot(call.script.source.trim(), &call.keys);
        assert!(
            call.keys.iter().all(|k| slot(k) == queue_slot),
            "{:?}",
            call.keys
        );
    }
}

#[test]
fn the_job_lease_scripts_keep_their_keys_in_one_slot() {
    for job in Job::ALL {
        // ACQUIRE takes the lease and slot keys; FINISH those and the record's.
        let name = job.name();
        let keys = [
            keys::job_lease(name),
            keys::job_slot(name),
            keys::job_last(name),
            keys::job_history(name),
            keys::job_skipped(name),
        ];
        assert_one_slot(name, &keys);
    }
}

#[test]
fn the_cache_store_script_keeps_an_entry_and_its_lock_in_one_slot() {
    for user in users() {
        let keys = [
            keys::cache_entry(CachePrefix::PROFILE, &user),
            keys::cache_lock(CachePrefix::PROFILE, &user),
        ];
        assert_one_slot("store if locked", &keys);
    }
}

#[test]
fn per_user_keys_spread_over_slots() {
    // The rate limit and idempotency scripts take one key each, a slot per user: a
    // cluster shares their load instead of piling it on one node.
    let slots: HashSet<u16> = users()
        .iter()
        .map(|user| slot(&keys::chat_rate_limit(user)))
        .collect();
    assert!(slots.len() > 1, "{slots:?}");
}
