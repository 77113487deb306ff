//! Capability tokens: who may do what to which document, until when.
//!
//! A token is `il1.<claims>.<signature>`: the claims as base64url JSON, and an HMAC-SHA256 of
//! `il1.<claims>` under the relay's secret key, base64url. Nothing is stored server-side; a token
//! is valid while its signature checks and it has not expired.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{Error, Result};

const PREFIX: &str = "il1";

/// What a token lets its bearer do. Each role can do everything the roles before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Receive the document and its presence; export it.
    Read,
    /// Change the document.
    Edit,
    /// Ask for cells to run.
    Execute,
    /// Hold the runtime lease (server runtimes).
    Runtime,
    /// Everything, including minting tokens and replacing a document by import.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Read,
        Role::Edit,
        Role::Execute,
        Role::Runtime,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Edit => "edit",
            Role::Execute => "execute",
            Role::Runtime => "runtime",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do `action`.
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Read | Action::Export => true,
            Action::Edit => self >= Role::Edit,
            Action::Execute => self >= Role::Execute,
            // The lease is for runtimes only: an admin's browser must not start running the
            // server queue by accident.
            Action::HoldLease => self == Role::Runtime,
            Action::MintToken | Action::Import | Action::Create => self == Role::Admin,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| {
                Error::Token(format!(
                    "unknown role {s:?} (expected read, edit, execute, runtime or admin)"
                ))
            })
    }
}

/// What a peer may ask of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Edit,
    Execute,
    HoldLease,
    MintToken,
    Import,
    Export,
    Create,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Read => "read documents",
            Action::Edit => "change documents",
            Action::Execute => "run cells or register runtimes",
            Action::HoldLease => "hold the runtime lease",
            Action::MintToken => "mint tokens",
            Action::Import => "import notebooks",
            Action::Export => "export notebooks",
            Action::Create => "create documents",
        })
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The token's id: what a revocation names, and who a peer is when it writes (peers of one
    /// token are one writer). Tokens made before ids existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The document, or `None` for every document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    pub role: Role,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Who it was made for, shown to others (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Claims {
    /// Who the bearer of `token` (whose claims these are) is: the token's id, or for a token
    /// without one, its signature (distinct for every token).
    pub fn principal(&self, token: &str) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => format!("sig:{}", token.rsplit('.').next().unwrap_or_default()),
        }
    }

    /// Whether these claims cover `doc_id`.
    pub fn covers(&self, doc_id: &str) -> bool {
        self.doc.as_deref().is_none_or(|doc| doc == doc_id)
    }

    /// The claims' role if they cover `doc_id` and allow `action`.
    pub fn check(&self, doc_id: &str, action: Action) -> Result<Role> {
        if !self.covers(doc_id) {
            return Err(Error::Token("the token is for another document".into()));
        }
        if !self.role.allows(action) {
            return Err(Error::Forbidden {
                role: self.role,
                action,
            });
        }
        Ok(self.role)
    }
}

/// Signs and checks tokens with one secret key.
#[derive(Clone)]
pub struct TokenKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from secret bytes (at least 32 of them).
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < 32 {
            return Err(Error::Token(format!(
                "the secret key has {} bytes; it needs at least 32",
                secret.len()
            )));
        }
        Ok(Self {
            key: secret.to_vec(),
        })
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // Serializing a struct of strings and integers cannot fail.
        let claims = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signed = format!("{PREFIX}.{claims}");
        let signature = B64.encode(self.mac(signed.as_bytes()).finalize().into_bytes());
        format!("{signed}.{signature}")
    }

    /// The claims of a token this key signed that has not expired at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims> {
        let malformed = || Error::Token("malformed token".into());
        let mut parts = token.split('.');
        let (Some(PREFIX), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let signature = B64.decode(signature).map_err(|_| malformed())?;
        let signed_len = PREFIX.len() + 1 + claims.len();
        self.mac(&token.as_bytes()[..signed_len])
            .verify_slice(&signature)
            .map_err(|_| {
                Error::Token("bad signature: the token was not made by this relay".into())
            })?;
        let claims: Claims = B64
            .decode(claims)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(malformed)?;
        if claims.exp <= now {
            return Err(Error::Token("the token has expired".into()));
        }
        Ok(claims)
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(data);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(&[7; 32]).unwrap()
    }

    fn claims(role: Role) -> Claims {
        Claims {
            id: Some("t1".into()),
            doc: Some("doc-1".into()),
            role,
            exp: 1_000,
            name: None,
        }
    }

    #[test]
    fn signed_tokens_verify_until_they_expire() {
        let token = key().sign(&claims(Role::Edit));
        assert_eq!(key().verify(&token, 999).unwrap(), claims(Role::Edit));
        assert!(
            key()
                .verify(&token, 1_000)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
    }

    #[test]
    fn forged_and_mangled_tokens_are_refused() {
        let token = key().sign(&claims(Role::Read));
        let other = TokenKey::new(&[8; 32]).unwrap();
        assert!(
            other
                .verify(&token, 0)
                .unwrap_err()
                .to_string()
                .contains("bad signature")
        );
        // Claims swapped for an admin's, signature kept.
        let admin = key().sign(&claims(Role::Admin));
        let forged = format!(
            "{}.{}",
            admin.rsplit_once('.').unwrap().0,
            token.rsplit_once('.').unwrap().1
        );
        assert!(key().verify(&forged, 0).is_err());
        for bad in ["", "il1", "il1.a", "il1.a.b.c", "xx.a.b", &token[1..]] {
            assert!(key().verify(bad, 0).is_err(), "{bad}");
        }
        assert!(TokenKey::new(b"short").is_err());
    }

    #[test]
    fn roles_nest_except_the_lease() {
        assert!(Role::Read.allows(Action::Export) && !Role::Read.allows(Action::Edit));
        assert!(Role::Execute.allows(Action::Edit) && !Role::Execute.allows(Action::HoldLease));
        assert!(Role::Runtime.allows(Action::HoldLease) && !Role::Admin.allows(Action::HoldLease));
        assert!(Role::Admin.allows(Action::MintToken) && !Role::Runtime.allows(Action::MintToken));
        let c = claims(Role::Admin);
        assert!(c.check("doc-2", Action::Read).is_err());
        assert_eq!("runtime".parse::<Role>().unwrap(), Role::Runtime);
    }
}
