//! `notifications/progress` for tool calls that take a while, sent when the call asked for
//! them (its request's `_meta.progressToken`).

use std::future::Future;
use std::time::Duration;

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{Peer, RoleServer};
use tokio::sync::{mpsc, oneshot};

/// How often a long run of one cell is reported.
pub(crate) const LONG_RUN_NOTICE: Duration = Duration::from_secs(2);

enum Update {
    Report(ProgressNotificationParam),
    /// Answered once everything before it went out.
    Flush(oneshot::Sender<()>),
}

/// The progress of one tool call. Reports are synchronous (inloop-batch's observer calls them
/// from its tasks); one task sends them to the client in order. Without a progress token, it
/// does nothing.
pub(crate) struct Progress(Option<(ProgressToken, mpsc::UnboundedSender<Update>)>);

impl Progress {
    pub(crate) fn for_request(context: &RequestContext<RoleServer>) -> Self {
        let Some(token) = context.meta.get_progress_token() else {
            return Self(None);
        };
        let (updates, received) = mpsc::unbounded_channel();
        tokio::spawn(forward(context.peer.clone(), received));
        Self(Some((token, updates)))
    }

    /// `progress` must grow from one report to the next (the MCP spec asks it).
    pub(crate) fn report(&self, progress: f64, total: Option<f64>, message: String) {
        let Some((token, updates)) = &self.0 else {
            return;
        };
        let mut param =
            ProgressNotificationParam::new(token.clone(), progress).with_message(message);
        param.total = total;
        let _ = updates.send(Update::Report(param));
    }

    /// Waits until every report so far was sent, so that they reach the client before the
    /// tool's answer.
    pub(crate) async fn flush(&self) {
        let Some((_, updates)) = &self.0 else {
            return;
        };
        let (done, sent) = oneshot::channel();
        if updates.send(Update::Flush(done)).is_ok() {
            let _ = sent.await;
        }
    }

    /// Runs `work`, reporting every [`LONG_RUN_NOTICE`] while it goes on: the seconds it has
    /// taken, and `describe(seconds)`.
    pub(crate) async fn while_running<T>(
        &self,
        work: impl Future<Output = T>,
        describe: impl Fn(u64) -> String,
    ) -> T {
        if self.0.is_none() {
            return work.await;
        }
        tokio::pin!(work);
        let started = tokio::time::Instant::now();
        let mut notices = tokio::time::interval_at(started + LONG_RUN_NOTICE, LONG_RUN_NOTICE);
        loop {
            tokio::select! {
                output = &mut work => {
                    self.flush().await;
                    return output;
                }
                _ = notices.tick() => {
                    let elapsed = started.elapsed();
                    self.report(elapsed.as_secs_f64(), None, describe(elapsed.as_secs()));
                }
            }
        }
    }
}

async fn forward(peer: Peer<RoleServer>, mut received: mpsc::UnboundedReceiver<Update>) {
    while let Some(update) = received.recv().await {
        match update {
            Update::Report(param) => {
                // A client that went away misses its progress; the answer says how it ended.
                if let Err(error) = peer.notify_progress(param).await {
                    tracing::debug!(%error, "a progress notification was not sent");
                }
            }
            Update::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
