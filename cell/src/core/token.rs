//! Handle tokens: the bytes a client holds for an open handle. They carry everything needed
//! to recreate the handle after a failover ([`warren_proto::pb::HandleBody`]) and check
//! digits — a keyed BLAKE3 MAC under the cell's secret — so that handles cannot be forged,
//! altered or guessed.

use prost::Message;
use warren_proto::pb::{HandleBody, HandleToken};
use warren_proto::WarrenError;

/// Mints and verifies handle tokens for one cell.
#[derive(Clone)]
pub struct TokenKey {
    key: [u8; 32],
}

impl TokenKey {
    pub fn new(key: [u8; 32]) -> Self {
        TokenKey { key }
    }

    pub fn mint(&self, body: &HandleBody) -> Vec<u8> {
        let body = body.encode_to_vec();
        let mac = blake3::keyed_hash(&self.key, &body);
        HandleToken {
            body,
            mac: mac.as_bytes().to_vec(),
        }
        .encode_to_vec()
    }

    /// The cell a token says made it, without authenticating it (to pick the key that
    /// verifies it: a cell that received slots in a reshard verifies the tokens of the
    /// cell they came from).
    pub fn claimed_cell(token: &[u8]) -> Option<String> {
        let t = HandleToken::decode(token).ok()?;
        HandleBody::decode(t.body.as_slice()).ok().map(|b| b.cell)
    }

    /// Decodes and authenticates a token. Any failure is `HANDLE_INVALID` with the reason.
    pub fn verify(&self, token: &[u8]) -> Result<HandleBody, WarrenError> {
        if token.is_empty() {
            return Err(WarrenError::handle_invalid("no handle was given"));
        }
        let t = HandleToken::decode(token).map_err(|_| {
            WarrenError::handle_invalid(
                "the handle bytes are not a Warren handle (truncated or corrupted)",
            )
        })?;
        let mac: [u8; 32] = t.mac.as_slice().try_into().map_err(|_| {
            WarrenError::handle_invalid("the handle's check digits are missing or truncated")
        })?;
        // blake3::Hash compares in constant time.
        if blake3::keyed_hash(&self.key, &t.body) != blake3::Hash::from(mac) {
            return Err(WarrenError::handle_invalid(
                "the handle's check digits do not match: it was forged, altered, or made by another cell",
            ));
        }
        HandleBody::decode(t.body.as_slice())
            .map_err(|_| WarrenError::handle_invalid("the handle body does not decode"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> HandleBody {
        HandleBody {
            cell: "c0".into(),
            epoch: 3,
            number: 42,
            path: "/ls/local/a".into(),
            instance: 7,
            intent: 3,
            events: 1,
            lock_delay_ms: 0,
            session_id: vec![1; 16],
        }
    }

    #[test]
    fn round_trip() {
        let k = TokenKey::new([9; 32]);
        let t = k.mint(&body());
        assert_eq!(k.verify(&t).unwrap(), body());
    }

    #[test]
    fn rejects_forgeries() {
        let k = TokenKey::new([9; 32]);
        let t = k.mint(&body());
        // Another key.
        assert!(TokenKey::new([8; 32]).verify(&t).is_err());
        // Every single-byte flip and every truncation is caught.
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x01;
            assert!(k.verify(&bad).is_err(), "flip at {i}");
            assert!(k.verify(&t[..i]).is_err(), "truncated to {i}");
        }
        // An altered body with the old MAC.
        let mut b = body();
        b.number = 43;
        let forged = HandleToken {
            body: b.encode_to_vec(),
            mac: HandleToken::decode(t.as_slice()).unwrap().mac,
        }
        .encode_to_vec();
        assert!(k.verify(&forged).is_err());
    }
}
