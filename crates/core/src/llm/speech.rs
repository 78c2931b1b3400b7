//! Speech for voice messages: the `generateContent` request a TTS model takes, its
//! audio answer, and the WAV file the audio is stored as.
//!
//! Gemini's speech models answer with raw PCM (`audio/L16;codec=pcm;rate=24000`: 16-bit
//! little-endian mono samples). A WAV header around those samples makes a file every
//! browser and phone plays, without an encoder.

use base64::Engine as _;
use serde_json::json;

use super::retry::CallError;
use super::wire::{parse_candidate, Content, ContentRole, GenerateRequest, GenerationConfig, Part};

/// The stored audio's content type.
pub const WAV_CONTENT_TYPE: &str = "audio/wav";

/// Longest text sent for speech: a chat reply is bounded well below this.
pub const MAX_SPEECH_CHARS: usize = 5_000;

/// Largest audio accepted from the model (about 10 minutes of 24 kHz speech).
pub const MAX_PCM_BYTES: usize = 32 * 1024 * 1024;

/// The request for speaking `text` in `voice`.
pub fn speech_request(text: &str, voice: &str) -> GenerateRequest {
    let text: String = text.chars().take(MAX_SPEECH_CHARS).collect();
    GenerateRequest {
        contents: vec![Content {
            role: Some(ContentRole::User),
            parts: vec![Part::text(text)],
        }],
        system_instruction: None,
        generation_config: Some(GenerationConfig {
            response_modalities: Some(vec!["AUDIO".to_owned()]),
            speech_config: Some(json!({
                "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}
            })),
            ..GenerationConfig::default()
        }),
    }
}

/// PCM samples and their rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    pub sample_rate: u32,
    pub samples: Vec<u8>,
}

/// Reads a speech answer: the first part with inline `audio/L16` data.
pub fn parse_speech(status: u16, body: &[u8]) -> Result<Pcm, CallError> {
    let (_, candidate) = parse_candidate(status, body)?;
    let data = candidate
        .content
        .iter()
        .flat_map(|content| &content.parts)
        .find_map(|part| part.inline_data.as_ref())
        .ok_or_else(|| CallError::BadResponse("no audio in the answer".to_owned()))?;
    let sample_rate = pcm_rate(&data.mime_type).ok_or_else(|| {
        CallError::BadResponse(format!("audio of an unexpected type {:?}", data.mime_type))
    })?;
    if data.data.len() / 4 * 3 > MAX_PCM_BYTES {
        return Err(CallError::BadResponse("audio too long".to_owned()));
    }
    let samples = base64::engine::general_purpose::STANDARD
        .decode(data.data.as_bytes())
        .map_err(|_| CallError::BadResponse("audio is not base64".to_owned()))?;
    if samples.is_empty() || samples.len() % 2 != 0 {
        return Err(CallError::BadResponse(
            "audio of no whole samples".to_owned(),
        ));
    }
    Ok(Pcm {
        sample_rate,
        samples,
    })
}

/// The rate of `audio/L16;codec=pcm;rate=24000` (24 kHz when the type names none).
fn pcm_rate(mime: &str) -> Option<u32> {
    let mut parts = mime.split(';').map(str::trim);
    let kind = parts.next()?.to_ascii_lowercase();
    if kind != "audio/l16" && kind != "audio/pcm" {
        return None;
    }
    let rate = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("rate"))
        .map(|(_, v)| v.parse().ok())
        .unwrap_or(Some(24_000))?;
    (8_000..=192_000).contains(&rate).then_some(rate)
}

/// The entity tag of stored audio: its SHA-256, shortened; quoted as HTTP wants it.
pub fn etag(audio: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(audio);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// A WAV file (RIFF, PCM, 16-bit mono) holding `pcm`.
pub fn wav(pcm: &Pcm) -> Vec<u8> {
    let data_len = pcm.samples.len() as u32;
    let mut out = Vec::with_capacity(44 + pcm.samples.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&pcm.sample_rate.to_le_bytes());
    out.extend_from_slice(&(pcm.sample_rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // bytes per frame
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&pcm.samples);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_asks_for_audio_in_the_voice() {
        let body = serde_json::to_value(speech_request("Привет", "Kore")).unwrap();
        assert_eq!(
            body["generationConfig"]["responseModalities"],
            json!(["AUDIO"])
        );
        assert_eq!(
            body["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]
                ["voiceName"],
            "Kore"
        );
        assert_eq!(body["contents"][0]["parts"][0]["text"], "Привет");
    }

    #[test]
    fn an_audio_answer_becomes_a_wav_file() {
        let samples: Vec<u8> = (0..480u16).flat_map(|s| s.to_le_bytes()).collect();
        let data = base64::engine::general_purpose::STANDARD.encode(&samples);
        let body = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"inlineData": {"mimeType": "audio/L16;codec=pcm;rate=24000", "data": data}}
        ]}}]});
        let pcm = parse_speech(200, body.to_string().as_bytes()).unwrap();
        assert_eq!(pcm.sample_rate, 24_000);
        assert_eq!(pcm.samples, samples);
        let file = wav(&pcm);
        assert_eq!(&file[..4], b"RIFF");
        assert_eq!(&file[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes(file[24..28].try_into().unwrap()), 24_000);
        assert_eq!(u32::from_le_bytes(file[40..44].try_into().unwrap()), 960);
        assert_eq!(file.len(), 44 + 960);
    }

    #[test]
    fn answers_without_usable_audio_are_errors() {
        let text = json!({"candidates": [{"content": {"parts": [{"text": "hi"}]}}]});
        assert!(parse_speech(200, text.to_string().as_bytes()).is_err());
        let odd = json!({"candidates": [{"content": {"parts": [
            {"inlineData": {"mimeType": "audio/L16;rate=24000", "data": "AA=="}}
        ]}}]});
        assert!(parse_speech(200, odd.to_string().as_bytes()).is_err());
        let mp3 = json!({"candidates": [{"content": {"parts": [
            {"inlineData": {"mimeType": "audio/mpeg", "data": "AAAA"}}
        ]}}]});
        assert!(parse_speech(200, mp3.to_string().as_bytes()).is_err());
        assert!(matches!(
            parse_speech(503, b"{}"),
            Err(CallError::Status { code: 503, .. })
        ));
    }
}
