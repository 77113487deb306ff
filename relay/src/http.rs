//! The HTTP API beside the WebSocket: documents, `.ipynb` in and out, share tokens, metrics.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inloop_doc::Notebook;
use inloop_sync::{Action, Role};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use crate::doc_id::DocId;
use crate::rooms::Command;
use crate::store::TokenRecord;
use crate::{AppState, Refusal};

/// Share tokens last a week unless asked otherwise.
const DEFAULT_TOKEN_LIFETIME: u64 = 7 * 24 * 3600;

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

/// The token from `Authorization: Bearer …` or `?token=`.
fn token<'a>(headers: &'a HeaderMap, query: &'a TokenQuery) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or(query.token.as_deref())
}

/// Checks a token allows `action` on every document (not one document only).
fn for_all_documents(
    state: &AppState,
    headers: &HeaderMap,
    query: &TokenQuery,
    action: Action,
) -> Result<(), Refusal> {
    let claims = state.claims(token(headers, query), action)?;
    if claims.doc.is_some() {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            format!("this token is for one document; to {action} you need one for all"),
        ));
    }
    Ok(())
}

/// `POST /api/docs`: a new document, blank or from the `.ipynb` in the body.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    body: Bytes,
) -> Result<Response, Refusal> {
    for_all_documents(&state, &headers, &query, Action::Create)?;
    let update = if body.is_empty() {
        Notebook::blank().encode_update_v1()
    } else {
        Notebook::ipynb_to_update_v1(&body)
            .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("not a notebook: {e}")))?
    };
    let id = new_doc_id().map_err(|e| Refusal::internal(&e))?;
    state.create(&id, &update).await?;
    let body = json!({ "id": id, "ws": format!("/api/docs/{id}/ws"), "page": format!("/n/{id}") });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/docs`: every document, newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, Refusal> {
    for_all_documents(&state, &headers, &query, Action::Read)?;
    let docs = state
        .0
        .storage
        .list()
        .await
        .map_err(|e| Refusal::internal(&e))?;
    Ok(Json(docs).into_response())
}

/// `GET /api/docs/{id}/ipynb`: the notebook as nbformat 4.5.
pub(crate) async fn export(
    DocId(doc_id): DocId,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, Refusal> {
    state.authorize(token(&headers, &query), &doc_id, Action::Export)?;
    let room = state.existing_room(&doc_id).await?;
    let (reply, answer) = oneshot::channel();
    room.send(Command::Export { reply })
        .await
        .map_err(|_| reloading())?;
    let ipynb = answer.await.map_err(|_| reloading())?;
    let disposition = format!("attachment; filename=\"{doc_id}.ipynb\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ipynb+json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        ipynb,
    )
        .into_response())
}

/// `PUT /api/docs/{id}/ipynb`: replaces the notebook, live, as one edit peers receive.
pub(crate) async fn import(
    DocId(doc_id): DocId,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    body: Bytes,
) -> Result<Response, Refusal> {
    state.authorize(token(&headers, &query), &doc_id, Action::Import)?;
    let room = state.existing_room(&doc_id).await?;
    let (reply, answer) = oneshot::channel();
    room.send(Command::Import { ipynb: body, reply })
        .await
        .map_err(|_| reloading())?;
    match answer.await.map_err(|_| reloading())? {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(crate::Error::Doc(error)) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("not a notebook: {error}"),
        )),
        Err(error) => Err(Refusal::internal(&error)),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct MintRequest {
    role: Role,
    /// Seconds the token is valid for.
    expires_in: Option<u64>,
    name: Option<String>,
}

/// The longest name a token may carry (it is shown to others beside the holder's edits).
const MAX_TOKEN_NAME: usize = 100;

/// `POST /api/docs/{id}/tokens`: a share token for this document, recorded (not the token, its
/// id) so that it can be listed and revoked.
pub(crate) async fn mint(
    DocId(doc_id): DocId,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    Json(request): Json<MintRequest>,
) -> Result<Response, Refusal> {
    state.authorize(token(&headers, &query), &doc_id, Action::MintToken)?;
    let max = state.config().limits.max_token_lifetime.as_secs();
    let seconds = request
        .expires_in
        .unwrap_or(DEFAULT_TOKEN_LIFETIME.min(max));
    if seconds == 0 || seconds > max {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("expires_in must be 1 to {max} seconds (this relay's longest token life)"),
        ));
    }
    let name = request
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > MAX_TOKEN_NAME || n.chars().any(char::is_control)) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "a link's name is at most {MAX_TOKEN_NAME} characters, with no control characters"
            ),
        ));
    }
    state.existing_room(&doc_id).await?;
    let (claims, token) = state.mint_claims(
        Some(&doc_id),
        request.role,
        Duration::from_secs(seconds),
        name,
    );
    let record = TokenRecord {
        id: claims.id.clone().unwrap_or_default(),
        doc_id: doc_id.clone(),
        role: request.role.to_string(),
        name: claims.name.clone(),
        created_at: crate::unix_now(),
        expires_at: claims.exp,
        revoked_at: None,
    };
    state
        .0
        .storage
        .record_token(record.clone())
        .await
        .map_err(|e| Refusal::internal(&e))?;
    let body = json!({
        "id": record.id,
        "token": token,
        "role": request.role,
        "name": record.name,
        "expires_at": record.expires_at,
        "page": format!("/n/{doc_id}?token={token}"),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/docs/{id}/tokens`: the document's live share links (never the tokens themselves).
pub(crate) async fn list_tokens(
    DocId(doc_id): DocId,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, Refusal> {
    state.authorize(token(&headers, &query), &doc_id, Action::MintToken)?;
    let tokens = state
        .0
        .storage
        .live_tokens(&doc_id, crate::unix_now())
        .await
        .map_err(|e| Refusal::internal(&e))?;
    Ok(Json(tokens).into_response())
}

/// `DELETE /api/docs/{id}/tokens/{token_id}`: revokes a share link; the sockets opened with it
/// close at once (4401).
pub(crate) async fn revoke_token(
    DocId(doc_id): DocId,
    Path((_, token_id)): Path<(String, String)>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, Refusal> {
    state.authorize(token(&headers, &query), &doc_id, Action::MintToken)?;
    match state.revoke(&doc_id, &token_id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(Refusal(
            StatusCode::NOT_FOUND,
            "no live link with this id on this notebook".into(),
        )),
        Err(error) => Err(Refusal::internal(&error)),
    }
}

/// `GET /metrics`, for Prometheus; open like `/healthz`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(),
    )
        .into_response()
}

fn reloading() -> Refusal {
    Refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "the document was reloading; try again".into(),
    )
}

/// 128 random bits, hex: ids are capabilities too, so they must not be guessable.
fn new_doc_id() -> crate::Result<String> {
    let bytes = crate::random_bytes::<16>()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
