//! The cache's two compare-on-token scripts, run by the platform crate with `EVALSHA`.
//! Both keys of a script share the entry's hash tag (see `keys::cache_entry`).

/// KEYS: entry, lock. ARGV: token, value, ttl in ms. Stores the value and releases the
/// lock only while the lock holds the token; returns 1 when stored, 0 when refused.
pub const STORE_IF_LOCKED_SCRIPT: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
"#;
pub const STORE_IF_LOCKED_SHA1: &str = "7d3082191ce7aea298bdc7c07b5409ef3cceb234";

/// KEYS: lock. ARGV: token. Deletes the lock only while it holds the token.
pub const UNLOCK_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;
pub const UNLOCK_SHA1: &str = "f4f23e4b63559980e4fd8dd1b2bf8e156fe4c29f";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_the_scripts() {
        for (script, digest) in [
            (STORE_IF_LOCKED_SCRIPT, STORE_IF_LOCKED_SHA1),
            (UNLOCK_SCRIPT, UNLOCK_SHA1),
        ] {
            assert_eq!(sha1_smol::Sha1::from(script).digest().to_string(), digest);
        }
    }
}
