//! Who is calling: the user's bearer token (an HS256 JSON Web Token signed with the
//! `jwt_secret` variable) read into typed claims.
//!
//! Only what this service issues is accepted: a compact JWS with `alg` `HS256`, a `sub`
//! that is a valid user id and an `exp`. Everything else (`alg: none`, RSA or EC
//! algorithms, JWE, unknown critical headers, tokens without expiry) is refused, so a
//! token cannot choose how it is checked. The signature is checked in constant time
//! before anything in the payload is read.
//!
//! Errors carry a fixed, client-safe message: they never echo the token or say which
//! byte was wrong.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::ids::UserRef;
use crate::problem::{Problem, BEARER_CHALLENGE, INVALID_TOKEN_CHALLENGE};

/// How far past `exp` a token is still accepted, in seconds. The issuer's clock and the
/// clocks of the hosts running this service are not the same clock; 30 s absorbs the skew
/// of NTP-synced machines without meaningfully extending a token's life.
pub const LEEWAY_SECS: u64 = 30;

/// Longer tokens are refused before any decoding: ours are a few hundred bytes, and a
/// bound keeps a hostile header from costing more than a few microseconds.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The only algorithm accepted.
const ALGORITHM: &str = "HS256";

type HmacSha256 = Hmac<Sha256>;

/// What a verified token says. Other claims (`iat`, `iss`, ...) are not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user the token was issued to.
    pub sub: UserRef,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Why a request is not authenticated. Every variant answers 401; the message is safe
/// to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or an empty one.
    #[error("missing bearer token")]
    Missing,
    /// Not `Bearer <token>`, or not a compact JWS with a JSON header and payload, or no
    /// numeric `exp`.
    #[error("malformed bearer token")]
    Malformed,
    /// The signature does not match the secret.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` is more than [`LEEWAY_SECS`] in the past.
    #[error("token has expired")]
    Expired,
    /// `nbf` is more than [`LEEWAY_SECS`] in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// Signed with anything but HS256, `none` included.
    #[error("token must be signed with HS256")]
    WrongAlgorithm,
    /// `sub` is missing or not a valid user id.
    #[error("token subject is not a valid user id")]
    BadSubject,
}

impl AuthError {
    /// The `WWW-Authenticate` value to answer with (RFC 6750 §3): the bare scheme when
    /// no token came, `invalid_token` when one came and was refused.
    pub fn challenge(self) -> &'static str {
        match self {
            AuthError::Missing => BEARER_CHALLENGE,
            _ => INVALID_TOKEN_CHALLENGE,
        }
    }
}

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Problem {
        let mut problem = Problem::from_status(401).with_detail(error.to_string());
        problem.challenge = Some(error.challenge());
        problem
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is matched without
/// regard to case (RFC 9110 §11.1); the token must be one whitespace-free word.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    let (scheme, token) = value.split_once([' ', '\t']).ok_or(AuthError::Malformed)?;
    let token = token.trim_start_matches([' ', '\t']);
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(|c: char| c.is_whitespace())
    {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Verifies a compact HS256 JWT and returns its claims.
///
/// Checks, in order: shape, header (`alg` must be `HS256`; `crit` is refused since no
/// extension is understood), signature (constant time), then the payload's `exp` (with
/// [`LEEWAY_SECS`]) and `sub`. An empty `secret` verifies nothing: a deployment that
/// forgot its secret refuses every token rather than accepting ones signed with "".
pub fn verify(token: &str, secret: &[u8], now_unix: u64) -> Result<Claims, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    // Exactly three segments: header, payload, signature. The signature covers the text
    // of the first two as sent, dot included.
    let (signing_input, signature) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(AuthError::Malformed)?;
    if payload.contains('.') {
        return Err(AuthError::Malformed);
    }

    let header = decode_object(header)?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == ALGORITHM => {}
        Some(_) => return Err(AuthError::WrongAlgorithm),
        None => return Err(AuthError::Malformed),
    }
    if header.contains_key("crit") {
        return Err(AuthError::Malformed);
    }

    if secret.is_empty() {
        return Err(AuthError::BadSignature);
    }
    // A signature that is not canonical base64url cannot be the one we made.
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| AuthError::BadSignature)?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| AuthError::BadSignature)?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| AuthError::BadSignature)?;

    let claims = decode_object(payload)?;
    let exp = match claims.get("exp") {
        Some(Value::Number(exp)) => numeric_date(exp).ok_or(AuthError::Malformed)?,
        _ => return Err(AuthError::Malformed),
    };
    if now_unix >= exp.saturating_add(LEEWAY_SECS) {
        return Err(AuthError::Expired);
    }
    match claims.get("nbf") {
        None => {}
        Some(Value::Number(nbf)) => {
            let nbf = numeric_date(nbf).ok_or(AuthError::Malformed)?;
            if now_unix.saturating_add(LEEWAY_SECS) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        Some(_) => return Err(AuthError::Malformed),
    }
    let sub = match claims.get("sub") {
        Some(Value::String(sub)) => UserRef::parse(sub).map_err(|_| AuthError::BadSubject)?,
        _ => return Err(AuthError::BadSubject),
    };
    Ok(Claims { sub, exp })
}

/// Signs claims as a compact HS256 JWT, for tests and operator tools. The service itself
/// only verifies.
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims always serialize"));
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// A base64url segment holding a JSON object.
fn decode_object(segment: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(AuthError::Malformed),
    }
}

/// An RFC 7519 NumericDate: seconds, possibly fractional, not negative.
fn numeric_date(number: &serde_json::Number) -> Option<u64> {
    if let Some(seconds) = number.as_u64() {
        return Some(seconds);
    }
    let seconds = number.as_f64()?;
    (seconds.is_finite() && (0.0..1e18).contains(&seconds)).then_some(seconds as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MAX_USER_REF_LEN;
    use serde_json::json;

    const SECRET: &[u8] = b"test secret with enough entropy for hs256";
    const NOW: u64 = 1_750_000_000;

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: UserRef::parse(sub).unwrap(),
            exp,
        }
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with any header and payload, correctly signed with `SECRET`.
    fn forge(header: &Value, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    }

    #[test]
    fn a_signed_token_verifies() {
        let token = sign(&claims("tg:12345", NOW + 3600), SECRET);
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(
            verify(&token, SECRET, NOW).unwrap(),
            claims("tg:12345", NOW + 3600)
        );
    }

    #[test]
    fn not_before_is_honoured_with_the_same_leeway() {
        let at = |nbf: Value| {
            forge(
                &json!({"alg": "HS256"}),
                &json!({"sub": "alice", "exp": NOW + 7_200, "nbf": nbf}),
            )
        };
        assert_eq!(
            verify(&at(json!(NOW + 3_600)), SECRET, NOW),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            verify(&at(json!(NOW + LEEWAY_SECS + 1)), SECRET, NOW),
            Err(AuthError::NotYetValid)
        );
        assert!(verify(&at(json!(NOW + LEEWAY_SECS)), SECRET, NOW).is_ok());
        assert!(verify(&at(json!(NOW - 10)), SECRET, NOW).is_ok());
        assert_eq!(
            verify(&at(json!("soon")), SECRET, NOW),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn expiry_has_a_small_leeway() {
        let token = sign(&claims("alice", NOW), SECRET);
        assert!(verify(&token, SECRET, NOW - 1).is_ok());
        assert!(verify(&token, SECRET, NOW + LEEWAY_SECS - 1).is_ok());
        assert_eq!(
            verify(&token, SECRET, NOW + LEEWAY_SECS),
            Err(AuthError::Expired)
        );
        assert_eq!(
            verify(&token, SECRET, NOW + 86_400),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn a_fractional_exp_is_a_numeric_date() {
        let token = forge(
            &json!({"alg": "HS256"}),
            &json!({"sub": "alice", "exp": (NOW + 10) as f64 + 0.5}),
        );
        assert_eq!(verify(&token, SECRET, NOW).unwrap().exp, NOW + 10);
    }

    #[test]
    fn another_secret_is_a_bad_signature() {
        let token = sign(&claims("alice", NOW + 60), b"another secret");
        assert_eq!(verify(&token, SECRET, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let token = sign(&claims("alice", NOW + 60), b"");
        assert_eq!(verify(&token, b"", NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let token = sign(&claims("alice", NOW + 60), SECRET);

        // The last character of the text: either a different signature or a
        // non-canonical encoding; both are a bad signature.
        for replacement in ['A', 'B', 'Q', 'g', '_'] {
            let mut changed = token[..token.len() - 1].to_string();
            if token.ends_with(replacement) {
                continue;
            }
            changed.push(replacement);
            assert_eq!(
                verify(&changed, SECRET, NOW),
                Err(AuthError::BadSignature),
                "{changed}"
            );
        }

        // The last byte of the signature itself.
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        *bytes.last_mut().unwrap() ^= 0x01;
        let changed = format!("{input}.{}", b64(&bytes));
        assert_eq!(verify(&changed, SECRET, NOW), Err(AuthError::BadSignature));

        // A changed payload under the old signature (a different user).
        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let payload = b64(json!({"sub": "mallory", "exp": NOW + 60})
            .to_string()
            .as_bytes());
        let changed = format!("{header}.{payload}.{signature}");
        assert_eq!(verify(&changed, SECRET, NOW), Err(AuthError::BadSignature));

        // A truncated signature.
        assert_eq!(
            verify(&token[..token.len() - 4], SECRET, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let payload = json!({"sub": "alice", "exp": NOW + 60});
        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(payload.to_string().as_bytes())
        );
        assert_eq!(
            verify(&unsigned, SECRET, NOW),
            Err(AuthError::WrongAlgorithm)
        );
        for alg in ["None", "NONE", "HS384", "HS512", "RS256", "ES256", "hs256"] {
            let token = forge(&json!({"alg": alg}), &payload);
            assert_eq!(
                verify(&token, SECRET, NOW),
                Err(AuthError::WrongAlgorithm),
                "{alg}"
            );
        }
        let token = forge(&json!({"alg": 256}), &payload);
        assert_eq!(verify(&token, SECRET, NOW), Err(AuthError::WrongAlgorithm));
        let token = forge(&json!({"typ": "JWT"}), &payload);
        assert_eq!(verify(&token, SECRET, NOW), Err(AuthError::Malformed));
    }

    #[test]
    fn critical_header_extensions_are_refused() {
        let token = forge(
            &json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
            &json!({"sub": "alice", "exp": NOW + 60}),
        );
        assert_eq!(verify(&token, SECRET, NOW), Err(AuthError::Malformed));
    }

    #[test]
    fn malformed_segments_are_refused() {
        let good = sign(&claims("alice", NOW + 60), SECRET);
        let (header, rest) = good.split_once('.').unwrap();
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let cases = [
            String::new(),
            "abc".to_string(),
            "a.b".to_string(),
            format!("{good}.extra"),
            format!("{header}.{rest}.x.y"),
            format!("!!!.{rest}"),
            format!("{}.{rest}", b64(b"not json")),
            format!("{}.{rest}", b64(b"[1,2]")),
            format!("{header}=.{rest}"),
            long,
        ];
        for token in &cases {
            assert_eq!(
                verify(token, SECRET, NOW),
                Err(AuthError::Malformed),
                "{token:?}"
            );
        }
        // A payload that is not JSON, correctly signed.
        let input = format!("{header}.{}", b64(b"{not json"));
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_eq!(verify(&token, SECRET, NOW), Err(AuthError::Malformed));
    }

    #[test]
    fn exp_is_required_and_numeric() {
        let header = json!({"alg": "HS256", "typ": "JWT"});
        for payload in [
            json!({"sub": "alice"}),
            json!({"sub": "alice", "exp": "2030-01-01"}),
            json!({"sub": "alice", "exp": -5}),
            json!({"sub": "alice", "exp": null}),
        ] {
            let token = forge(&header, &payload);
            assert_eq!(
                verify(&token, SECRET, NOW),
                Err(AuthError::Malformed),
                "{payload}"
            );
        }
    }

    #[test]
    fn a_missing_or_invalid_subject_is_refused() {
        let header = json!({"alg": "HS256"});
        let exp = NOW + 60;
        for payload in [
            json!({"exp": exp}),
            json!({"sub": null, "exp": exp}),
            json!({"sub": 42, "exp": exp}),
            json!({"sub": "", "exp": exp}),
            json!({"sub": "alice smith", "exp": exp}),
            json!({"sub": "evil}{tag", "exp": exp}),
            json!({"sub": "user*", "exp": exp}),
            json!({"sub": "ünïcode", "exp": exp}),
            json!({"sub": "a".repeat(MAX_USER_REF_LEN + 1), "exp": exp}),
        ] {
            let token = forge(&header, &payload);
            assert_eq!(
                verify(&token, SECRET, NOW),
                Err(AuthError::BadSubject),
                "{payload}"
            );
        }
        let longest = "a".repeat(MAX_USER_REF_LEN);
        let token = forge(&header, &json!({"sub": longest, "exp": exp}));
        assert_eq!(verify(&token, SECRET, NOW).unwrap().sub.as_str(), longest);
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
        assert_eq!(bearer(Some("bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("BEARER   abc  ")), Ok("abc"));
        assert_eq!(bearer(Some("Bearer\tabc")), Ok("abc"));
        assert_eq!(bearer(None), Err(AuthError::Missing));
        assert_eq!(bearer(Some("")), Err(AuthError::Missing));
        assert_eq!(bearer(Some("   ")), Err(AuthError::Missing));
        for header in [
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearerabc",
            "Bearer a b",
            "abc.def.ghi",
        ] {
            assert_eq!(
                bearer(Some(header)),
                Err(AuthError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn errors_become_401_problems_without_the_token() {
        let token = sign(&claims("alice", NOW - 3600), SECRET);
        let error = verify(&token, SECRET, NOW).unwrap_err();
        let problem = Problem::from(error);
        assert_eq!(problem.status, 401);
        assert_eq!(problem.detail.as_deref(), Some("token has expired"));
        assert!(!problem.to_json().contains(&token));
        assert_eq!(
            problem.headers(),
            vec![(
                "www-authenticate",
                r#"Bearer error="invalid_token""#.to_string()
            )]
        );
        assert_eq!(
            Problem::from(AuthError::Missing).headers(),
            vec![("www-authenticate", "Bearer".to_string())]
        );
    }
}
