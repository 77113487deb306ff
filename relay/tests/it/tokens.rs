//! Share links: lifetimes within the relay's maximum, listed by id (never the token), revoked
//! with their sockets closed at once and the others untouched, revocations surviving a restart,
//! and a key rotation invalidating every token.

use std::time::Duration;

use inloop_sync::Role;
use serde_json::Value;

use crate::{Status, TestRelay, connect, ended, eventually, http_request};

async fn mint(relay: &TestRelay, doc: &str, body: &str) -> (u16, Value) {
    let (status, body) = http_request(
        relay.addr,
        "POST",
        &format!("/api/docs/{doc}/tokens"),
        Some(&relay.admin_token),
        body.as_bytes(),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn links(relay: &TestRelay, doc: &str, token: &str) -> (u16, String) {
    http_request(
        relay.addr,
        "GET",
        &format!("/api/docs/{doc}/tokens"),
        Some(token),
        b"",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetimes_names_and_documents_are_checked() {
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let max = inloop_relay::Limits::default().max_token_lifetime.as_secs();
    for expires_in in [
        u64::MAX.to_string(),
        (max + 1).to_string(),
        "0".into(),
        "-1".into(),
    ] {
        let (status, body) = mint(
            &relay,
            &doc,
            &format!(r#"{{"role": "edit", "expires_in": {expires_in}}}"#),
        )
        .await;
        // Out of range is 400; not a whole number of seconds at all, axum's 422.
        let expected = if expires_in == "-1" { 422 } else { 400 };
        assert_eq!(status, expected, "expires_in {expires_in}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, body) = mint(&relay, &doc, r#"{"role": "edit", "name": "a\u0007b"}"#).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = mint(&relay, "no-such-doc", r#"{"role": "edit"}"#).await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = mint(
        &relay,
        &doc,
        &format!(r#"{{"role": "edit", "expires_in": {max}, "name": "Ada"}}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert_eq!(body["name"], "Ada");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires_at = body["expires_at"].as_u64().unwrap();
    assert!(
        expires_at <= now + max + 1 && expires_at + 5 >= now + max,
        "{body}"
    );
    assert!(
        connect(&relay.ws_url(&doc, body["token"].as_str().unwrap()))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_link_is_cut_at_once_and_refused_after_a_restart() {
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let (_, shared) = mint(
        &relay,
        &doc,
        r#"{"role": "edit", "name": "shared with Bob"}"#,
    )
    .await;
    let (_, kept) = mint(&relay, &doc, r#"{"role": "read", "name": "kept"}"#).await;
    let token = shared["token"].as_str().unwrap().to_owned();
    let id = shared["id"].as_str().unwrap().to_owned();

    // The list: ids, roles, names and expiry; never a token; admins only.
    let (status, list) = links(&relay, &doc, &relay.admin_token).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        !list.contains("il1."),
        "a token leaked into the list: {list}"
    );
    let listed: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], shared["id"]);
    assert_eq!(listed[0]["role"], "edit");
    assert_eq!(listed[0]["name"], "shared with Bob");
    let (status, _) = links(&relay, &doc, &token).await;
    assert_eq!(status, 403, "an edit link cannot list links");

    // Bob is editing with the link; Carol with another.
    let bob = connect(&relay.ws_url(&doc, &token)).await.unwrap();
    let carol = connect(&relay.ws_url(&doc, kept["token"].as_str().unwrap()))
        .await
        .unwrap();
    let owner = connect(&relay.ws_url(&doc, &relay.admin_token))
        .await
        .unwrap();
    let cell = owner.notebook().cell_ids()[0].clone();

    let (status, body) = http_request(
        relay.addr,
        "DELETE",
        &format!("/api/docs/{doc}/tokens/{id}"),
        Some(&relay.admin_token),
        b"",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (code, reason) = ended(&bob).await;
    assert_eq!(code, Some(4401), "{reason}");
    assert!(reason.contains("revoked"), "{reason}");
    // Carol stays: a later edit reaches her on the same connection.
    owner
        .notebook()
        .set_source(&cell, "after the revocation")
        .unwrap();
    eventually("the edit reaches Carol", Duration::from_secs(5), || async {
        carol.notebook().source(&cell).unwrap() == "after the revocation"
    })
    .await;
    assert!(matches!(carol.status(), Status::Synced));

    // Refused from now on, at the handshake and over HTTP; gone from the list; once only.
    let refusal = connect(&relay.ws_url(&doc, &token)).await.unwrap_err();
    assert!(
        refusal.starts_with("4401: ") && refusal.contains("revoked"),
        "{refusal}"
    );
    let (status, _) = http_request(
        relay.addr,
        "GET",
        &format!("/api/docs/{doc}/ipynb"),
        Some(&token),
        b"",
    )
    .await;
    assert_eq!(status, 401);
    let (_, list) = links(&relay, &doc, &relay.admin_token).await;
    assert!(!list.contains(&id), "{list}");
    let (status, _) = http_request(
        relay.addr,
        "DELETE",
        &format!("/api/docs/{doc}/tokens/{id}"),
        Some(&relay.admin_token),
        b"",
    )
    .await;
    assert_eq!(status, 404);

    // After a restart too.
    let (addr, admin) = (relay.addr, relay.admin_token.clone());
    let data = relay.stop().await;
    let relay = TestRelay::resume(addr, data).await;
    let refusal = connect(&relay.ws_url(&doc, &token)).await.unwrap_err();
    assert!(refusal.contains("revoked"), "{refusal}");
    assert!(
        connect(&relay.ws_url(&doc, kept["token"].as_str().unwrap()))
            .await
            .is_ok()
    );
    assert!(
        connect(&relay.ws_url(&doc, &admin)).await.is_ok(),
        "the key is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_signing_key_invalidates_every_token() {
    let relay = TestRelay::start().await;
    let doc = relay.create_doc().await;
    let old = relay.token(&doc, Role::Edit);
    let old_admin = relay.admin_token.clone();
    let addr = relay.addr;
    let data = relay.stop().await;
    let relay = TestRelay::resume_with(addr, data, |config| config.rotate_key = true).await;
    for token in [&old, &old_admin] {
        let refusal = connect(&relay.ws_url(&doc, token)).await.unwrap_err();
        assert!(refusal.starts_with("4401: "), "{refusal}");
    }
    let fresh = connect(&relay.ws_url(&doc, &relay.admin_token))
        .await
        .unwrap();
    assert_eq!(fresh.notebook().cell_count(), 1, "the documents are kept");
}
