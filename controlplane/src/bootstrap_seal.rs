//! The cluster's bootstrap data (its CAs and critical settings) as kept in the store, sealed
//! with a key derived from the token's secret.
//!
//! Every server writes it under [`bootstrap_key`] once it serves, so the data travels with
//! the store: a snapshot restored onto a new machine gives the cluster its certificates back
//! (given the same token). Sealing: PBKDF2-HMAC-SHA256 over the secret with a random 16-byte
//! salt derives an AES-256-GCM key; a random 12-byte nonce; the envelope is JSON naming the
//! algorithm and holding salt, nonce and ciphertext in base64. Opening with another secret, or
//! an altered envelope, fails authentication and says so; nothing is ever half-read.

use std::num::NonZeroU32;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::supervisor::BootstrapData;

/// The envelope's format name; a different one is refused.
const FORMAT: &str = "k3rs-bootstrap-v1";
const KDF: &str = "pbkdf2-hmac-sha256";
const CIPHER: &str = "aes-256-gcm";
const SALT_LEN: usize = 16;
/// PBKDF2 rounds: about 0.1 s on a small ARM board, paid once per start.
const ITERATIONS: u32 = 100_000;

/// The prefix of every bootstrap key.
pub const BOOTSTRAP_PREFIX: &str = "/bootstrap/";

/// The store key of the bootstrap data sealed with `secret`: `/bootstrap/` and the first 12
/// hex digits of the secret's SHA-256 (as k3s names its bootstrap key).
pub fn bootstrap_key(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{BOOTSTRAP_PREFIX}{}", &hex[..12])
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    format: String,
    kdf: String,
    iterations: u32,
    cipher: String,
    salt: String,
    nonce: String,
    ciphertext: String,
}

/// `data` sealed with `secret`.
pub fn seal(secret: &str, data: &BootstrapData) -> Result<Vec<u8>> {
    let random = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    random
        .fill(&mut salt)
        .and_then(|()| random.fill(&mut nonce))
        .map_err(|_| anyhow!("the system random source failed"))?;
    let key = derive_key(secret, &salt, ITERATIONS)?;
    let mut sealed = serde_json::to_vec(data).context("encoding the bootstrap data")?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(FORMAT.as_bytes()),
        &mut sealed,
    )
    .map_err(|_| anyhow!("sealing the bootstrap data failed"))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let envelope = Envelope {
        format: FORMAT.to_string(),
        kdf: KDF.to_string(),
        iterations: ITERATIONS,
        cipher: CIPHER.to_string(),
        salt: b64.encode(salt),
        nonce: b64.encode(nonce),
        ciphertext: b64.encode(sealed),
    };
    serde_json::to_vec(&envelope).context("encoding the bootstrap envelope")
}

/// The bootstrap data in `sealed`, opened with `secret`.
pub fn open(secret: &str, sealed: &[u8]) -> Result<BootstrapData> {
    let envelope: Envelope =
        serde_json::from_slice(sealed).context("the stored bootstrap data is not an envelope")?;
    if envelope.format != FORMAT || envelope.kdf != KDF || envelope.cipher != CIPHER {
        bail!(
            "the stored bootstrap data is in format {} ({}, {}), which this k3rs does not read",
            envelope.format,
            envelope.kdf,
            envelope.cipher
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |field: &str, text: &str| {
        b64.decode(text)
            .with_context(|| format!("the stored bootstrap data's {field} is not base64"))
    };
    let salt = decode("salt", &envelope.salt)?;
    let nonce: [u8; NONCE_LEN] = decode("nonce", &envelope.nonce)?
        .try_into()
        .map_err(|_| anyhow!("the stored bootstrap data's nonce is not {NONCE_LEN} bytes"))?;
    let mut ciphertext = decode("ciphertext", &envelope.ciphertext)?;
    let key = derive_key(secret, &salt, envelope.iterations)?;
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(FORMAT.as_bytes()),
            &mut ciphertext,
        )
        .map_err(|_| {
            anyhow!(
                "the stored bootstrap data does not open with this token's secret: the token \
                 is not the one of the cluster that wrote it (or the data was altered)"
            )
        })?;
    serde_json::from_slice(plain).context("the opened bootstrap data does not decode")
}

fn derive_key(secret: &str, salt: &[u8], iterations: u32) -> Result<LessSafeKey> {
    let rounds = NonZeroU32::new(iterations)
        .ok_or_else(|| anyhow!("the stored bootstrap data names zero key-derivation rounds"))?;
    let mut key = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        secret.as_bytes(),
        &mut key,
    );
    let key = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| anyhow!("bad AES key length"))?;
    Ok(LessSafeKey::new(key))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::supervisor::{CriticalSettings, PemPair};

    fn data() -> BootstrapData {
        let mut cas = BTreeMap::new();
        cas.insert(
            "server-ca".to_string(),
            PemPair {
                cert: "-----BEGIN CERTIFICATE-----\nx\n".to_string(),
                key: "-----BEGIN PRIVATE KEY-----\ny\n".to_string(),
            },
        );
        BootstrapData {
            cas,
            critical: CriticalSettings {
                heartbeat_interval_ms: 100,
                election_timeout_ms: 1000,
                max_request_bytes: 1 << 20,
                max_txn_ops: 128,
            },
        }
    }

    #[test]
    fn sealed_data_opens_only_with_its_secret_and_unaltered() {
        let sealed = seal("the-secret", &data()).expect("seal");
        let text = String::from_utf8(sealed.clone()).expect("json");
        assert!(
            !text.contains("PRIVATE KEY"),
            "the keys must not be readable: {text}"
        );
        assert_eq!(open("the-secret", &sealed).expect("open"), data());

        let err = open("another-secret", &sealed).expect_err("wrong secret");
        assert!(err
            .to_string()
            .contains("does not open with this token's secret"));

        let mut envelope: serde_json::Value = serde_json::from_slice(&sealed).expect("json");
        let ciphertext = envelope["ciphertext"].as_str().expect("text").to_string();
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(ciphertext)
            .expect("b64");
        raw[0] ^= 1;
        envelope["ciphertext"] =
            serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(raw));
        let altered = serde_json::to_vec(&envelope).expect("json");
        assert!(
            open("the-secret", &altered).is_err(),
            "an altered envelope must not open"
        );
    }

    #[test]
    fn two_seals_differ_and_the_key_names_only_a_hash_of_the_secret() {
        let first = seal("s", &data()).expect("seal");
        let second = seal("s", &data()).expect("seal");
        assert_ne!(first, second, "fresh salt and nonce each time");
        let key = bootstrap_key("s");
        assert!(key.starts_with("/bootstrap/") && key.len() == "/bootstrap/".len() + 12);
        assert_eq!(key, bootstrap_key("s"));
        assert_ne!(key, bootstrap_key("t"));
    }
}
