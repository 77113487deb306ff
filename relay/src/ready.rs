//! `GET /readyz`: whether the relay can take writes. `/healthz` only says the process runs;
//! this probes storage with a real write (see [`crate::store::Store::probe`]), at most once a
//! second however many ask, so a flood of probes cannot load the disk.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::storage::Storage;
use crate::{AppState, Refusal};

/// How long one probe's answer is given to everyone who asks.
const FRESH: Duration = Duration::from_secs(1);

/// A probe that takes longer counts as a failure: storage that slow is not ready either.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The last probe's time and outcome (the message for clients; the cause is logged).
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    last: Mutex<Option<(Instant, Result<(), &'static str>)>>,
}

impl Readiness {
    pub(crate) async fn check(&self, storage: &Storage) -> Result<(), &'static str> {
        // One probe at a time; those who waited for it take its answer.
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = *last {
            if at.elapsed() < FRESH {
                return outcome;
            }
        }
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, storage.probe()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                tracing::error!(%error, "storage probe failed: not ready");
                Err("storage cannot write; the relay's log has the details")
            }
            Err(_) => {
                tracing::error!(?PROBE_TIMEOUT, "storage probe did not finish: not ready");
                Err("storage did not answer in time")
            }
        };
        *last = Some((Instant::now(), outcome));
        outcome
    }
}

/// `GET /readyz`: "ok", or 503 with the reason.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.0.ready.check(&state.0.storage).await {
        Ok(()) => "ok".into_response(),
        Err(reason) => Refusal(StatusCode::SERVICE_UNAVAILABLE, reason.into()).into_response(),
    }
}
