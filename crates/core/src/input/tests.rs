//! Unit tests of every input rule.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::history::MAX_CURSOR_MICROS;
use super::*;
use serde_json::json;

const MAX: usize = 4000;

fn chat(body: &str) -> Result<ChatRequest, InputError> {
    ChatRequest::parse(body.as_bytes(), MAX)
}

fn detail(result: Result<impl fmt::Debug, InputError>) -> String {
    match result {
        Err(InputError::Invalid(detail)) => detail,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_chat_message_is_trimmed_and_normalised() {
    assert_eq!(
        chat(r#"{"message": "  Привет!\r\nКак дела?\t "}"#).unwrap(),
        ChatRequest {
            message: "Привет!\nКак дела?".into()
        }
    );
    assert_eq!(chat("\u{feff}{\"message\":\"hi\"}").unwrap().message, "hi");
    assert_eq!(chat(r#"{"message":"a\rb"}"#).unwrap().message, "a\nb");
}

#[test]
fn oversized_bodies_are_413() {
    let body = format!(r#"{{"message":"{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    let error = ChatRequest::parse(body.as_bytes(), usize::MAX).unwrap_err();
    assert_eq!(
        error,
        InputError::PayloadTooLarge {
            limit: MAX_BODY_BYTES
        }
    );
    assert_eq!(error.status(), 413);
    let problem = Problem::from(error);
    assert_eq!(problem.status, 413);

    // Exactly at the limit is still read.
    let filler = MAX_BODY_BYTES - r#"{"message":""}"#.len();
    let body = format!(r#"{{"message":"{}"}}"#, "a".repeat(filler));
    assert_eq!(body.len(), MAX_BODY_BYTES);
    assert!(ChatRequest::parse(body.as_bytes(), usize::MAX).is_ok());
}

#[test]
fn bad_utf8_is_400() {
    let error = ChatRequest::parse(b"{\"message\":\"\xff\xfe\"}", MAX).unwrap_err();
    assert_eq!(error, InputError::BadUtf8);
    assert_eq!(Problem::from(error).status, 400);
}

#[test]
fn malformed_json_says_where() {
    for body in [
        r#"{"message": "hi""#,
        r#"{"message": "hi",}"#,
        r#"{"message": "hi"} trailing"#,
        r#"{message: "hi"}"#,
        r#"{"message": "\ud800"}"#,
        "{",
    ] {
        match chat(body) {
            Err(InputError::BadJson(detail)) => {
                assert!(detail.contains("line 1 column"), "{body}: {detail}")
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    let deep = format!("{{\"message\":{}{}}}", "[".repeat(5_000), "]".repeat(5_000));
    assert!(matches!(chat(&deep), Err(InputError::BadJson(_))));
}

#[test]
fn a_body_that_is_not_an_object_is_400() {
    assert_eq!(
        detail(chat("")),
        "request body is empty; expected a JSON object"
    );
    assert_eq!(
        detail(chat("  \n")),
        "request body is empty; expected a JSON object"
    );
    for body in ["[]", "\"hi\"", "42", "null", "true"] {
        assert_eq!(
            detail(chat(body)),
            "request body must be a JSON object",
            "{body}"
        );
    }
}

#[test]
fn message_must_be_present_and_a_string() {
    assert_eq!(detail(chat("{}")), "`message` is required");
    assert_eq!(
        detail(chat(r#"{"message": 5}"#)),
        "`message` must be a string, not a number"
    );
    assert_eq!(
        detail(chat(r#"{"message": null}"#)),
        "`message` must be a string, not null"
    );
    assert_eq!(
        detail(chat(r#"{"message": ["hi"]}"#)),
        "`message` must be a string, not an array"
    );
}

#[test]
fn unknown_and_duplicate_fields_are_refused() {
    assert_eq!(
        detail(chat(r#"{"message": "hi", "user_id": 7}"#)),
        "unknown field \"user_id\"; allowed: `message`"
    );
    let long_name = "x".repeat(500);
    let text = detail(chat(&format!(r#"{{"message":"hi","{long_name}":1}}"#)));
    assert!(text.len() < 120, "{text}");
    let text = detail(chat(r#"{"message": "a", "message": "b"}"#));
    assert!(
        text.starts_with("field \"message\" appears twice"),
        "{text}"
    );
}

#[test]
fn empty_and_blank_messages_are_refused() {
    for body in [r#"{"message": ""}"#, r#"{"message": "   \n\t "}"#] {
        assert_eq!(detail(chat(body)), "`message` must not be empty");
    }
}

#[test]
fn the_limit_counts_characters_not_bytes() {
    let at_limit = "я".repeat(10);
    let body = format!(r#"{{"message":"{at_limit}"}}"#);
    assert_eq!(
        ChatRequest::parse(body.as_bytes(), 10).unwrap().message,
        at_limit
    );
    let body = format!(r#"{{"message":"{}"}}"#, "я".repeat(11));
    assert_eq!(
        detail(ChatRequest::parse(body.as_bytes(), 10)),
        "`message` is 11 characters long; the limit is 10"
    );
    // Surrounding whitespace does not count.
    let body = format!(r#"{{"message":"   {at_limit}   "}}"#);
    assert!(ChatRequest::parse(body.as_bytes(), 10).is_ok());
}

#[test]
fn control_characters_are_refused() {
    for escape in ["\\u0000", "\\u0007", "\\u001b", "\\u007f", "\\u0085"] {
        let body = format!(r#"{{"message":"a{escape}b"}}"#);
        let text = detail(chat(&body));
        assert!(
            text.starts_with("`message` contains a control character"),
            "{text}"
        );
    }
    assert!(detail(chat(r#"{"message":"a\u0000"}"#)).ends_with("(U+0000)"));
    // Emoji with joiners and non-Latin scripts are text, not control characters.
    assert!(chat(r#"{"message":"👩‍👩‍👧 مرحبا"}"#).is_ok());
}

#[test]
fn input_errors_become_problems() {
    let problem = Problem::from(chat("{}").unwrap_err());
    assert_eq!(problem.status, 400);
    assert_eq!(problem.detail.as_deref(), Some("`message` is required"));
    let problem = Problem::from(chat("{").unwrap_err());
    assert!(problem
        .detail
        .unwrap()
        .starts_with("request body is not valid JSON: "));
    assert_eq!(Problem::from(InputError::UnsupportedMediaType).status, 415);
}

#[test]
fn content_type_must_be_json_when_given() {
    for value in [
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/merge-patch+json"),
    ] {
        assert_eq!(require_json(value), Ok(()), "{value:?}");
    }
    for value in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
        "json",
    ] {
        assert_eq!(
            require_json(Some(value)),
            Err(InputError::UnsupportedMediaType),
            "{value:?}"
        );
    }
}

fn patch(body: Value) -> Result<ProfilePatch, InputError> {
    ProfilePatch::parse(body.to_string().as_bytes())
}

#[test]
fn a_profile_patch_sets_and_removes_fields() {
    let update = patch(json!({
        "name": "  Аня ",
        "age": 27,
        "gender": "female",
        "language": "ru-RU",
        "timezone": "Europe/Moscow",
        "interests": ["music", " travel "],
        "bio": "line one\r\nline two",
        "companion_name": "Evo",
    }))
    .unwrap();
    let stored = json!({"name": "Old", "bio": "old", "memory_hint": 1});
    assert_eq!(
        update.apply(&stored),
        json!({
            "name": "Аня",
            "age": 27,
            "gender": "female",
            "language": "ru-RU",
            "timezone": "Europe/Moscow",
            "interests": ["music", "travel"],
            "bio": "line one\nline two",
            "companion_name": "Evo",
            "memory_hint": 1,
        })
    );

    let update = patch(json!({"bio": null, "age": 30})).unwrap();
    assert_eq!(
        update.changes().collect::<Vec<_>>(),
        vec![
            (ProfileField::Age, Some(&json!(30))),
            (ProfileField::Bio, None),
        ]
    );
    assert_eq!(
        update.apply(&json!({"name": "A", "bio": "x"})),
        json!({"name": "A", "age": 30})
    );
    // Removing what is not there, onto data that is not an object.
    assert_eq!(
        patch(json!({"bio": null})).unwrap().apply(&Value::Null),
        json!({})
    );
    // An empty bio is allowed; an empty name is not.
    assert_eq!(
        patch(json!({"bio": ""})).unwrap().apply(&json!({})),
        json!({"bio": ""})
    );
}

#[test]
fn a_profile_patch_refuses_empty_and_unknown() {
    assert!(detail(patch(json!({})))
        .starts_with("nothing to update; send at least one of: `name`, `age`"));
    let text = detail(patch(json!({"name": "A", "plan": "premium"})));
    assert!(
        text.starts_with("unknown field \"plan\"; allowed: `name`"),
        "{text}"
    );
    assert_eq!(
        detail(ProfilePatch::parse(b"[1]")),
        "request body must be a JSON object"
    );
}

#[test]
fn profile_values_are_checked_by_type_and_range() {
    let refused = [
        (
            json!({"name": ""}),
            "`name` must be 1 to 100 characters long",
        ),
        (
            json!({"name": "   "}),
            "`name` must be 1 to 100 characters long",
        ),
        (json!({"name": "x".repeat(101)}), "`name` must be 1 to 100"),
        (json!({"name": 5}), "`name` must be a string, not a number"),
        (json!({"name": "a\nb"}), "`name` contains a line break"),
        (
            json!({"age": 12}),
            "`age` must be an integer from 13 to 120",
        ),
        (json!({"age": 121}), "`age` must be an integer"),
        (json!({"age": 30.5}), "`age` must be an integer"),
        (json!({"age": "30"}), "`age` must be an integer"),
        (json!({"age": -1}), "`age` must be an integer"),
        (json!({"gender": "Female"}), "`gender` must be one of"),
        (json!({"gender": 1}), "`gender` must be one of"),
        (
            json!({"language": "r"}),
            "`language` must be a language tag",
        ),
        (
            json!({"language": "en_US"}),
            "`language` must be a language tag",
        ),
        (
            json!({"language": "en-"}),
            "`language` must be a language tag",
        ),
        (json!({"language": "x".repeat(17)}), "`language` must be"),
        (json!({"timezone": "Europe//Moscow"}), "`timezone` must be"),
        (json!({"timezone": "/etc/passwd"}), "`timezone` must be"),
        (json!({"timezone": "../x"}), "`timezone` must be"),
        (json!({"timezone": "A".repeat(65)}), "`timezone` must be"),
        (
            json!({"interests": "music"}),
            "`interests` must be an array of strings, not a string",
        ),
        (
            json!({"interests": vec!["a"; 21]}),
            "`interests` has 21 entries",
        ),
        (json!({"interests": [""]}), "`interests[0]` must be 1 to 50"),
        (
            json!({"interests": ["ok", 3]}),
            "`interests[1]` must be a string",
        ),
        (
            json!({"interests": ["x".repeat(51)]}),
            "`interests[0]` must be 1 to 50",
        ),
        (
            json!({"interests": ["Music", "music "]}),
            "`interests` lists \"music\" more than once",
        ),
        (
            json!({"bio": "x".repeat(1001)}),
            "`bio` must be at most 1000 characters",
        ),
        (
            json!({"bio": "a\u{0}b"}),
            "`bio` contains a control character",
        ),
        (
            json!({"companion_name": ""}),
            "`companion_name` must be 1 to 50",
        ),
    ];
    for (body, expected) in refused {
        let text = detail(patch(body.clone()));
        assert!(text.starts_with(expected), "{body}: {text}");
    }
    let accepted = [
        json!({"age": 13}),
        json!({"age": 120}),
        json!({"language": "zh-Hant-TW"}),
        json!({"language": "en"}),
        json!({"timezone": "UTC"}),
        json!({"timezone": "America/Argentina/Buenos_Aires"}),
        json!({"timezone": "Etc/GMT+3"}),
        json!({"interests": []}),
        json!({"interests": vec!["x"; 1]}),
        json!({"bio": "x".repeat(1000)}),
        json!({"name": "ñ".repeat(100)}),
    ];
    for body in accepted {
        assert!(patch(body.clone()).is_ok(), "{body}");
    }
}

#[test]
fn cursors_round_trip_and_refuse_anything_else() {
    let cursor = Cursor {
        created_at_micros: 1_750_000_000_123_456,
        id: 42,
    };
    let text = cursor.encode();
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(Cursor::decode(&text), Ok(cursor));
    let last = Cursor {
        created_at_micros: MAX_CURSOR_MICROS,
        id: i64::MAX,
    };
    assert_eq!(Cursor::decode(&last.encode()), Ok(last));
    // Positions no page hands out, which PostgreSQL could not turn into a time.
    for (created_at_micros, id) in [
        (i64::MAX, i64::MAX),
        (i64::MIN, i64::MIN),
        (-1, 1),
        (MAX_CURSOR_MICROS + 1, 1),
        (0, 0),
        (0, -1),
    ] {
        let cursor = Cursor {
            created_at_micros,
            id,
        };
        assert!(Cursor::decode(&cursor.encode()).is_err(), "{cursor:?}");
    }

    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    for bad in [
        String::new(),
        "!!".into(),
        b64("12345"),
        b64("a:1"),
        b64("1:b"),
        b64("1:2:3"),
        b64("+1:2"),
        b64("01:2"),
        b64("99999999999999999999:1"),
        format!("{text}="),
        "A".repeat(100),
    ] {
        assert!(Cursor::decode(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn history_query_defaults_and_bounds() {
    let default = HistoryQuery {
        limit: DEFAULT_HISTORY_LIMIT,
        before: None,
    };
    assert_eq!(HistoryQuery::parse(""), Ok(default));
    assert_eq!(HistoryQuery::parse("?"), Ok(default));
    assert_eq!(HistoryQuery::parse("limit=&before="), Ok(default));
    assert_eq!(HistoryQuery::parse("utm_source=x&foo"), Ok(default));
    assert_eq!(HistoryQuery::parse("?limit=1").unwrap().limit, 1);
    assert_eq!(HistoryQuery::parse("limit=100").unwrap().limit, 100);
    assert_eq!(HistoryQuery::parse("limit=%35%30").unwrap().limit, 50);

    let cursor = Cursor {
        created_at_micros: 1_700_000_000_000_000,
        id: 7,
    };
    let query = format!("before={}&limit=5", cursor.encode());
    assert_eq!(
        HistoryQuery::parse(&query),
        Ok(HistoryQuery {
            limit: 5,
            before: Some(cursor)
        })
    );

    for bad in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=+5",
        "limit=ten",
        "limit=1.5",
        "limit=99999999999",
    ] {
        assert_eq!(
            detail(HistoryQuery::parse(bad)),
            "`limit` must be an integer from 1 to 100",
            "{bad}"
        );
    }
    assert!(
        detail(HistoryQuery::parse("before=nope")).starts_with("`before` is not a valid cursor")
    );
    assert_eq!(
        detail(HistoryQuery::parse("limit=5&limit=6")),
        "`limit` is given more than once"
    );
    assert_eq!(
        detail(HistoryQuery::parse("limit=%zz")),
        "`limit` is not valid percent-encoding"
    );
    assert_eq!(
        detail(HistoryQuery::parse("limit=%")),
        "`limit` is not valid percent-encoding"
    );
}

#[test]
fn a_bad_idempotency_key_is_a_400() {
    let error: InputError = crate::ids::IdempotencyKey::parse("a b").unwrap_err().into();
    assert_eq!(error.status(), 400);
}
