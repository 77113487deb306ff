//! Capability tokens. `TokenKey::verify` on arbitrary strings (and on strings signed with the
//! key, so that arbitrary claims get past the signature) never panics, and what it accepts has
//! not expired; `sign` then `verify` gives back arbitrary claims until they expire.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use inloop_sync::{Claims, Role, TokenKey};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

#[global_allocator]
static ALLOCATOR: inloop_fuzz::FuzzAlloc = inloop_fuzz::FuzzAlloc;

#[derive(Debug, Arbitrary)]
enum Input {
    /// Any string as a token.
    Raw { token: String, now: u64 },
    /// `il1.<claims>.<a valid signature>` with `claims` as given (base64url of JSON, or not).
    Signed { claims: String, now: u64 },
    /// `il1.<base64url of json>.<a valid signature>`: arbitrary claims JSON, signed.
    SignedJson { json: Vec<u8>, now: u64 },
    /// Claims signed, then verified at `now`.
    RoundTrip {
        id: Option<String>,
        doc: Option<String>,
        role: u8,
        exp: u64,
        name: Option<String>,
        now: u64,
    },
}

const SECRET: [u8; 32] = [42; 32];

fn key() -> TokenKey {
    TokenKey::new(&SECRET).expect("32 bytes make a key")
}

/// `il1.<payload>.<signature>` with a valid HMAC-SHA256 signature under [`key`]'s secret, as
/// `TokenKey::sign` makes it (which only signs claims it serializes itself).
fn signed(payload: &str) -> String {
    let signed = format!("il1.{payload}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&SECRET).expect("any key length");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn check_accepted(token: &str, now: u64, claims: &Claims) {
    assert!(claims.exp > now, "an expired token was accepted: {token}");
    assert!(
        !claims.principal(token).is_empty(),
        "a token with no principal"
    );
    // What was accepted signs again into a token that verifies to the same claims.
    let again = key().sign(claims);
    assert_eq!(key().verify(&again, now).ok().as_ref(), Some(claims));
}

fuzz_target!(|input: Input| {
    inloop_fuzz::init();
    match input {
        Input::Raw { token, now } => {
            if let Ok(claims) = key().verify(&token, now) {
                check_accepted(&token, now, &claims);
            }
        }
        Input::Signed { claims, now } => {
            let token = signed(&claims);
            if let Ok(accepted) = key().verify(&token, now) {
                check_accepted(&token, now, &accepted);
            }
        }
        Input::SignedJson { json, now } => {
            let token = signed(&B64.encode(&json));
            if let Ok(accepted) = key().verify(&token, now) {
                check_accepted(&token, now, &accepted);
            }
        }
        Input::RoundTrip {
            id,
            doc,
            role,
            exp,
            name,
            now,
        } => {
            let claims = Claims {
                id,
                doc,
                role: Role::ALL[usize::from(role) % Role::ALL.len()],
                exp,
                name,
            };
            let token = key().sign(&claims);
            match key().verify(&token, now) {
                Ok(back) => {
                    assert!(exp > now, "an expired token was accepted");
                    assert_eq!(back, claims, "sign then verify changed the claims");
                }
                Err(error) => assert!(exp <= now, "a fresh token was refused: {error}"),
            }
            // A token signed by another key never verifies.
            let other = TokenKey::new(&[43; 32]).expect("32 bytes make a key");
            assert!(
                other.verify(&token, now).is_err(),
                "another key's token verified"
            );
        }
    }
});
