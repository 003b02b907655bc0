//! Join tokens as k3s writes them: `K10<sha256 hex of the cluster CA>::server:<secret>`.
//!
//! Guarantees: a full token pins the CA a joining server must see at `/cacerts`; a bare
//! secret is accepted but pins nothing, which [`Token::parse`]'s caller must say in a
//! warning. Secrets are never logged: `Debug` shows only the CA hash and the user.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of a full token (k3s's token format version 1).
const PREFIX: &str = "K10";
/// The user a server authenticates as.
pub const SERVER_USER: &str = "server";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The sha256 (hex) of the cluster CA bundle, when the token pins it.
    pub ca_hash: Option<String>,
    pub user: String,
    pub secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("ca_hash", &self.ca_hash)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Reads a full token (`K10<hash>::<user>:<secret>`) or a bare secret.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            bail!("the token is empty");
        }
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Ok(Self {
                ca_hash: None,
                user: SERVER_USER.to_string(),
                secret: text.to_string(),
            });
        };
        let Some((hash, credentials)) = rest.split_once("::") else {
            bail!("the token starts with {PREFIX} but has no `::` after the CA hash");
        };
        let is_sha256_hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_sha256_hex {
            bail!("the token's CA hash is not a sha256 in hex (64 characters): {hash:?}");
        }
        let Some((user, secret)) = credentials.split_once(':') else {
            bail!("the token has no `<user>:<secret>` after its CA hash");
        };
        if user.is_empty() || secret.is_empty() {
            bail!("the token's user or secret is empty");
        }
        Ok(Self {
            ca_hash: Some(hash.to_ascii_lowercase()),
            user: user.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The full token for `secret` pinning `ca_bundle`.
    pub fn pinned(ca_bundle: &[u8], secret: &str) -> Self {
        Self {
            ca_hash: Some(ca_hash(ca_bundle)),
            user: SERVER_USER.to_string(),
            secret: secret.to_string(),
        }
    }

    /// The token as users paste it.
    pub fn to_text(&self) -> String {
        match &self.ca_hash {
            Some(hash) => format!("{PREFIX}{hash}::{}:{}", self.user, self.secret),
            None => self.secret.clone(),
        }
    }

    /// Refuses `ca_bundle` unless it is the CA this token pins (a bare secret pins nothing).
    pub fn check_ca(&self, ca_bundle: &[u8], server: &str) -> Result<()> {
        let Some(expected) = &self.ca_hash else {
            return Ok(());
        };
        let actual = ca_hash(ca_bundle);
        if &actual != expected {
            bail!(
                "the CA at {server} does not match the token: the token pins a CA with sha256 \
                 {expected}, the server presents {actual} — is this token for another cluster?"
            );
        }
        Ok(())
    }
}

/// sha256 of the CA bundle, in lower-case hex.
pub fn ca_hash(ca_bundle: &[u8]) -> String {
    hex(&Sha256::digest(ca_bundle))
}

/// A new random secret: 16 bytes from the OS, in hex (as k3s makes them).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// Reads a token from `path`.
pub fn read_token_file(path: &Path) -> Result<Token> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    Token::parse(&text).with_context(|| format!("reading the token in {}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_full_token_round_trips_and_pins_its_ca() {
        let token = Token::pinned(CA, "s3cret");
        let text = token.to_text();
        assert!(text.starts_with("K10"), "{text}");
        assert!(text.ends_with("::server:s3cret"), "{text}");
        assert_eq!(text.len(), 3 + 64 + "::server:s3cret".len());
        let parsed = Token::parse(&format!("  {text}\n")).expect("parses");
        assert_eq!(parsed, token);
        parsed.check_ca(CA, "https://a:6443").expect("same CA");
        let error = parsed
            .check_ca(b"another CA", "https://a:6443")
            .expect_err("another CA");
        assert!(error.to_string().contains("https://a:6443"), "{error}");
        assert!(error.to_string().contains(&ca_hash(CA)), "{error}");
    }

    #[test]
    fn a_bare_secret_pins_nothing() {
        let token = Token::parse("just-a-password").expect("parses");
        assert_eq!(token.ca_hash, None);
        assert_eq!(token.secret, "just-a-password");
        assert_eq!(token.user, SERVER_USER);
        token
            .check_ca(b"any CA", "https://a:6443")
            .expect("nothing pinned");
        assert_eq!(token.to_text(), "just-a-password");
    }

    #[test]
    fn malformed_tokens_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("K10abc::server:x", "sha256"),
            (&format!("K10{}", "a".repeat(64)), "`::`"),
            (&format!("K10{}::server", "a".repeat(64)), "<user>:<secret>"),
            (&format!("K10{}::server:", "a".repeat(64)), "empty"),
        ] {
            let error = Token::parse(text).expect_err(text);
            assert!(error.to_string().contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn secrets_are_random_hex_and_never_printed() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|byte| byte.is_ascii_hexdigit()));
        let shown = format!("{:?}", Token::pinned(CA, &a));
        assert!(!shown.contains(&a), "{shown}");
    }
}
