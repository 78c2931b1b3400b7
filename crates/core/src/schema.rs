//! The database schema this build expects.
//!
//! The SQL files in `migrations/` are compiled into the binary so that the migration
//! runner applies exactly what was reviewed, and so that `/ready` can tell an operator
//! when the database is behind (or ahead of) the code that is serving traffic.

/// One migration file, `migrations/NNNN_name.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The `NNNN` prefix of the file name; migrations are applied in ascending order.
    pub version: i32,
    /// The file name between the version and `.sql`.
    pub name: &'static str,
    /// The file's contents, run as one batch inside one transaction.
    pub sql: &'static str,
}

impl Migration {
    /// The checksum recorded in `schema_migrations` when this migration is applied.
    pub fn checksum(&self) -> String {
        checksum(self.sql)
    }

    /// The file name this migration was loaded from, e.g. `0001_initial.sql`.
    pub fn file_name(&self) -> String {
        format!("{:04}_{}.sql", self.version, self.name)
    }
}

/// Every migration, in the order it must be applied.
///
/// A unit test checks this list against the files in `migrations/`, so adding a file
/// without listing it here (or the reverse) fails the build's tests.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "jobs",
        sql: include_str!("../../../migrations/0002_jobs.sql"),
    },
    Migration {
        version: 3,
        name: "voice",
        sql: include_str!("../../../migrations/0003_voice.sql"),
    },
    Migration {
        version: 4,
        name: "memory_broadcasts",
        sql: include_str!("../../../migrations/0004_memory_broadcasts.sql"),
    },
];

/// The schema version this build needs: the version of the last migration.
pub const EXPECTED_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The migration with this version, if this build knows it.
pub fn find(version: i32) -> Option<&'static Migration> {
    MIGRATIONS.iter().find(|m| m.version == version)
}

/// A 64-bit FNV-1a hash of a migration's SQL, as `fnv1a64:` followed by 16 hex digits.
///
/// Its only job is to notice that an applied migration file was edited afterwards, so a
/// small dependency-free hash is enough; the algorithm is named in the value so a later
/// change of algorithm can be told apart from an edited file. Carriage returns are
/// skipped, so a checkout that converts line endings does not look like an edit.
pub fn checksum(sql: &str) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = sql
        .bytes()
        .filter(|&b| b != b'\r')
        .fold(OFFSET_BASIS, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        });
    format!("fnv1a64:{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Splits `0001_initial.sql` into `(1, "initial")`.
    fn parse_file_name(file_name: &str) -> Option<(i32, &str)> {
        let stem = file_name.strip_suffix(".sql")?;
        let (digits, name) = stem.split_once('_')?;
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
            return None;
        }
        Some((digits.parse().ok()?, name))
    }

    #[test]
    fn migration_list_matches_the_migrations_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut files: Vec<(i32, String, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .map(|path| {
                let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
                let (version, name) = parse_file_name(&file_name)
                    .unwrap_or_else(|| panic!("{file_name} is not named NNNN_name.sql"));
                let sql = std::fs::read_to_string(&path).expect("readable migration");
                (version, name.to_owned(), sql)
            })
            .collect();
        files.sort_by_key(|(version, _, _)| *version);

        let listed: Vec<(i32, String, String)> = MIGRATIONS
            .iter()
            .map(|m| (m.version, m.name.to_owned(), m.sql.to_owned()))
            .collect();
        assert_eq!(
            files, listed,
            "schema::MIGRATIONS must list every file in migrations/"
        );
    }

    #[test]
    fn versions_start_at_one_and_have_no_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                migration.version,
                index as i32 + 1,
                "{}",
                migration.file_name()
            );
        }
        assert_eq!(EXPECTED_VERSION, MIGRATIONS.len() as i32);
    }

    #[test]
    fn find_returns_known_versions_only() {
        assert_eq!(find(1).map(|m| m.name), Some("initial"));
        assert!(find(0).is_none());
        assert!(find(EXPECTED_VERSION + 1).is_none());
    }

    #[test]
    fn checksum_is_fnv1a_64() {
        // Reference values of the 64-bit FNV-1a hash.
        assert_eq!(checksum(""), "fnv1a64:cbf29ce484222325");
        assert_eq!(checksum("a"), "fnv1a64:af63dc4c8601ec8c");
        assert_eq!(checksum("foobar"), "fnv1a64:85944171f73967e8");
    }

    #[test]
    fn checksum_ignores_carriage_returns_but_not_edits() {
        let unix = "create table t (id int);\nselect 1;\n";
        let windows = "create table t (id int);\r\nselect 1;\r\n";
        assert_eq!(checksum(unix), checksum(windows));
        assert_ne!(
            checksum(unix),
            checksum("create table t (id bigint);\nselect 1;\n")
        );
    }

    #[test]
    fn file_name_round_trips() {
        assert_eq!(MIGRATIONS[0].file_name(), "0001_initial.sql");
        assert_eq!(
            parse_file_name("0042_add_things.sql"),
            Some((42, "add_things"))
        );
        assert_eq!(parse_file_name("42_short.sql"), None);
        assert_eq!(parse_file_name("0001_.sql"), None);
        assert_eq!(parse_file_name("0001_initial.txt"), None);
    }
}
