//! Payload transport (placeholder, completed by the SDK work).

/// Largest gzip+base64 payload, in characters, that travels inline (as Druid).
pub const MAX_INLINE_PAYLOAD: usize = 130_048;
