//! One summary per request, on every path. The pipeline finishes a request's
//! ledger when it answers or refuses it, or hands it to the end of a stream;
//! whatever it did not finish is finished when its [`Summary`] drops — the
//! client went away before an answer (the pipeline's future was dropped) or
//! the handler panicked (it unwinds) — so no request goes uncounted and none
//! is counted twice ([`account::finish`] counts the first call only).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::account::{self, Finished, Ledger};
use crate::execute::{OnEnd, Served, StreamEnd};
use crate::plan::{KeptPlacement, Placement};
use crate::state::AppState;

/// Status recorded for a request whose client left before it was answered
/// (nginx's convention; the client never sees it).
pub const CLIENT_GONE_STATUS: u16 = 499;
/// Error code recorded then.
pub use crate::execute::CLIENT_GONE;
/// Error code recorded for a request whose handler panicked.
pub const INTERNAL: &str = "InternalServerException";

/// A request's ledger, finished exactly once.
#[derive(Debug)]
pub struct Summary {
    state: Arc<AppState>,
    ledger: Ledger,
    armed: bool,
}

impl Summary {
    /// The summary of a request that just arrived.
    pub fn new(state: Arc<AppState>, ledger: Ledger) -> Summary {
        Summary {
            state,
            ledger,
            armed: true,
        }
    }

    /// The same request's summary for the end of its stream, which finishes
    /// it from now on; this one no longer does.
    pub fn hand_off(&mut self) -> Summary {
        self.armed = false;
        Summary::new(self.state.clone(), self.ledger.clone())
    }
}

impl Deref for Summary {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.ledger
    }
}

impl DerefMut for Summary {
    fn deref_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }
}

impl Drop for Summary {
    fn drop(&mut self) {
        if !self.armed || self.ledger.finished.load(Ordering::Acquire) {
            return;
        }
        let (status, code) = if std::thread::panicking() {
            (500, INTERNAL)
        } else {
            (CLIENT_GONE_STATUS, CLIENT_GONE)
        };
        account::finish(
            &self.state,
            &Finished::failed(&self.ledger, None, None, status, code),
        );
    }
}

/// Accounts for and logs an answered request, then settles its tenant's
/// claim with the tokens it used and what it cost.
pub fn finish_served(state: &AppState, done: &Finished<'_>, claim: crate::limits::Claim) {
    let cost = account::finish(state, done);
    claim.settle(crate::limits::Usage {
        requests: 1,
        input_tokens: done.usage.input,
        output_tokens: done.usage.output,
        cost_usd: cost.unwrap_or(0.0),
        unpriced_requests: u64::from(done.unpriced()),
    });
}

/// The account, log and settle stages of a stream, run when it ends.
/// `hold` (an admission permit) is released then too. Should the end never
/// come (the stream is dropped unfinished), the summary still finishes.
pub fn at_stream_end(
    mut summary: Summary,
    placement: Placement<'_>,
    claim: crate::limits::Claim,
    hold: impl Send + 'static,
) -> OnEnd {
    let kept = KeptPlacement::of(placement);
    Box::new(move |end: StreamEnd, served: &Served| {
        if let Some(g) = end.guard {
            summary.guard = g;
        }
        let mut done = Finished::served(
            &summary,
            kept.view(&summary.requested),
            served,
            end.usage,
            end.error.as_deref(),
        );
        done.ttft = Some(end.ttft);
        finish_served(&summary.state, &done, claim);
        drop(hold);
    })
}
