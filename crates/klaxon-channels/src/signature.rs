//! The webhook signing scheme, for senders and receivers.
//!
//! Every webhook request carries:
//!
//! - `X-Klaxon-Timestamp: <t>`: Unix time in whole seconds (decimal) when
//!   the attempt was made. It changes between retries.
//! - `X-Klaxon-Signature: sha256=<hex>`: lowercase hex of
//!   `HMAC-SHA256(key = secret, message = "<t>" + "." + <raw request body>)`,
//!   where `<t>` is the timestamp header's exact text and the body is the
//!   exact bytes received (verify before parsing JSON).
//! - `Idempotency-Key: <key>`: the notification's key, the same on every
//!   retry; receivers deduplicate on it.
//!
//! A receiver recomputes the HMAC with [`verify_signature`] (a constant-time
//! comparison), then rejects timestamps too far from its own clock (five
//! minutes is usual) to limit replays; `verify_signature` itself reads no
//! clock. The secret is the bytes of the environment variable named by the
//! channel's `secret_env`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the notification's idempotency key, identical on every retry.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// Header carrying the attempt's Unix time in seconds, covered by the signature.
pub const TIMESTAMP_HEADER: &str = "X-Klaxon-Timestamp";
/// Header carrying `sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Klaxon-Signature";

const PREFIX: &str = "sha256=";

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Klaxon-Signature` value for `body` sent at `timestamp` (the exact
/// text of the `X-Klaxon-Timestamp` header): `sha256=` and 64 lowercase hex digits.
pub fn signature_header(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    let mut out = String::with_capacity(PREFIX.len() + tag.len() * 2);
    out.push_str(PREFIX);
    for byte in tag {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// Whether `header` (an `X-Klaxon-Signature` value) is the signature of
/// `body` sent at `timestamp` under `secret`.
///
/// Accepts upper- or lowercase hex; anything malformed is `false`. The
/// comparison is constant-time. It does not check the timestamp's age: do that
/// against your own clock.
pub fn verify_signature(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix(PREFIX) else {
        return false;
    };
    let Some(tag) = decode_hex_32(hex) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&tag).is_ok()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn decode_hex_32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
