//! Speech generation, as Gemini's TTS models answer `generateContent`: one `inlineData`
//! part holding base64 of raw PCM (signed 16-bit little-endian, mono, 24 kHz).
//!
//! The audio is a 440 Hz tone rather than speech: what a test can check is that the
//! bytes are well-formed PCM, non-silent, and longer for longer text, which is what the
//! app has to get right (decoding, wrapping in WAV, storing) without a real voice.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use std::f64::consts::TAU;

/// Gemini's TTS output rate; the MIME type below names it, and a client that trusts one
/// and not the other would be caught.
const SAMPLE_RATE: usize = 24_000;
const MIME_TYPE: &str = "audio/L16;codec=pcm;rate=24000";

const TONE_HZ: f64 = 440.0;
/// A quarter of full scale: clearly not silence, far from clipping.
const AMPLITUDE: f64 = 0.25 * i16::MAX as f64;

/// 20 ms of audio per character of text, as a sample count, so that longer text gives
/// longer audio but a long prompt does not make a large body.
const SAMPLES_PER_CHAR: usize = SAMPLE_RATE / 50;
const MIN_SAMPLES: usize = SAMPLE_RATE / 5;
const MAX_SAMPLES: usize = SAMPLE_RATE * 3;

/// 5 ms fades at both ends, so that playing the answer by hand does not click.
const FADE_SAMPLES: usize = SAMPLE_RATE / 200;

/// Gemini counts 32 tokens a second of audio.
const TOKENS_PER_SECOND: usize = 32;

/// True when `generationConfig.responseModalities` holds `"AUDIO"`. Case is ignored so
/// that a client spelling `"audio"` is not mistaken for a text request.
pub(crate) fn wants_audio(request: &Value) -> bool {
    request["generationConfig"]["responseModalities"]
        .as_array()
        .is_some_and(|modalities| {
            modalities
                .iter()
                .any(|m| m.as_str().is_some_and(|m| m.eq_ignore_ascii_case("AUDIO")))
        })
}

/// The single-speaker voice asked for, if any.
pub(crate) fn voice_of(request: &Value) -> Option<String> {
    request["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"]
        .as_str()
        .map(str::to_owned)
}

/// The answer to a speech request: the tone for all the text in `contents`.
pub(crate) fn reply_to(request: &Value) -> Value {
    let contents = request["contents"].as_array().map(Vec::as_slice);
    let chars: usize = contents
        .unwrap_or_default()
        .iter()
        .flat_map(crate::texts_of)
        .map(|text| text.chars().count())
        .sum();
    let samples = samples_for(chars);
    let prompt_tokens = crate::prompt_chars(request).div_ceil(4);
    let audio_tokens = (samples * TOKENS_PER_SECOND).div_ceil(SAMPLE_RATE);
    let usage = json!({
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": audio_tokens,
        "totalTokenCount": prompt_tokens + audio_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": audio_tokens}]
    });
    let part = json!({
        "inlineData": {"mimeType": MIME_TYPE, "data": STANDARD.encode(tone(samples))}
    });
    crate::answer_with(json!([part]), usage)
}

/// How many samples of audio `chars` characters of text become.
fn samples_for(chars: usize) -> usize {
    chars
        .saturating_mul(SAMPLES_PER_CHAR)
        .clamp(MIN_SAMPLES, MAX_SAMPLES)
}

/// `samples` of the tone as s16le bytes.
fn tone(samples: usize) -> Vec<u8> {
    let mut pcm = Vec::with_capacity(samples * 2);
    for i in 0..samples {
        let fade = i.min(samples - 1 - i).min(FADE_SAMPLES) as f64 / FADE_SAMPLES as f64;
        let phase = TAU * TONE_HZ * i as f64 / SAMPLE_RATE as f64;
        let sample = (AMPLITUDE * fade * phase.sin()).round() as i16;
        pcm.extend_from_slice(&sample.to_le_bytes());
    }
    pcm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_follows_the_text_within_bounds() {
        assert_eq!(samples_for(0), 4_800);
        assert_eq!(samples_for(10), 4_800);
        assert_eq!(samples_for(50), 24_000);
        assert_eq!(samples_for(150), 72_000);
        assert_eq!(samples_for(usize::MAX), 72_000);
    }

    #[test]
    fn tone_is_loud_and_bounded() {
        let pcm = tone(4_800);
        assert_eq!(pcm.len(), 9_600);
        let samples: Vec<i16> = pcm
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((8_000..=8_192).contains(&peak), "peak {peak}");
        // Faded in and out: the ends are silent.
        assert_eq!((samples[0], samples[4_799]), (0, 0));
    }

    #[test]
    fn audio_modality_and_voice() {
        let request = json!({
            "contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {
                "responseModalities": ["audio"],
                "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}}
            }
        });
        assert!(wants_audio(&request));
        assert_eq!(voice_of(&request).as_deref(), Some("Kore"));
        assert!(!wants_audio(
            &json!({"generationConfig": {"responseModalities": ["TEXT"]}})
        ));
        assert!(!wants_audio(&json!({"contents": []})));
        assert_eq!(voice_of(&json!({})), None);
    }
}
