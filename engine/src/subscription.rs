//! `subscribe(after)`: catch up from the store, then follow it live.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::watch;
use witness_schemas::{Cursor, RecordedEvent};

use crate::{EventStore, StoreError};

/// How many events a subscription reads per query.
const BATCH: usize = 1_000;

/// How often a live subscription re-reads when it was not woken. Appends by
/// this process wake it at once; this bounds the delay for appends by other
/// processes (and, on PostgreSQL, for events held back behind a transaction
/// that was still running at the last read).
const POLL: Duration = Duration::from_millis(100);

/// An ordered, gap-free feed of events. Each event is delivered once, in the
/// store's global order; [`Subscription::cursor`] is the checkpoint to resume from.
#[derive(Debug)]
pub struct Subscription {
    store: EventStore,
    cursor: Cursor,
    buffer: VecDeque<RecordedEvent>,
    appended: watch::Receiver<u64>,
}

impl Subscription {
    pub(crate) fn new(store: EventStore, after: Cursor, appended: watch::Receiver<u64>) -> Self {
        Self { store, cursor: after, buffer: VecDeque::new(), appended }
    }

    /// The cursor of the last event returned by [`Subscription::next`].
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The next event, waiting for one if the subscription has caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.cursor = event.cursor();
                return Ok(event);
            }
            // Mark the current append count as seen before reading, so an
            // append that lands after the read still wakes us.
            self.appended.borrow_and_update();
            let batch = self.store.read_all(self.cursor, BATCH).await?;
            if batch.is_empty() {
                let _ = tokio::time::timeout(POLL, self.appended.changed()).await;
            }
            self.buffer.extend(batch);
        }
    }
}
