//! Following a task as it changes — tailing its log, waiting for its end — driven by the
//! store's committed-change events rather than polling, for `GET /v1/tasks/{id}/log?follow`,
//! `taskpod logs -f` and `taskpod submit --wait`.
//!
//! Each follower subscribes before it reads, so a change committed between a read and the
//! wait is never missed; if it falls behind the event buffer it simply reads again.

use tokio::sync::broadcast::{self, error::RecvError};

use super::{LogSlice, Result, Store, StoreError, StoreEvent, TaskRecord};

/// Reads a task's log from an offset and keeps returning new output until the task has ended
/// and everything is read. Made by [`Store::follow_log`].
#[derive(Debug)]
pub struct LogFollower {
    store: Store,
    id: String,
    offset: u64,
    max_chunk: usize,
    events: broadcast::Receiver<StoreEvent>,
    done: bool,
}

impl LogFollower {
    /// The next piece of log, waiting for one if none is stored yet; `None` once the task is
    /// terminal and its whole log has been returned.
    pub async fn next_chunk(&mut self) -> Result<Option<LogSlice>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let slice = self
                .store
                .read_log(&self.id, self.offset, self.max_chunk)
                .await?;
            self.offset = slice.next_offset;
            self.done = slice.is_complete();
            if !slice.data.is_empty() {
                return Ok(Some(slice));
            }
            if self.done {
                return Ok(None);
            }
            wait_for_change(&mut self.events, &self.id).await?;
        }
    }

    /// Where the next read starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Waits for an event about `id` (or for having missed some, which calls for a re-read).
async fn wait_for_change(events: &mut broadcast::Receiver<StoreEvent>, id: &str) -> Result<()> {
    loop {
        match events.recv().await {
            Ok(StoreEvent::LogAppended { id: event_id, .. })
            | Ok(StoreEvent::Transitioned { id: event_id, .. })
                if event_id == id =>
            {
                return Ok(());
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return Ok(()),
            Err(RecvError::Closed) => return Err(StoreError::Closed),
        }
    }
}

impl Store {
    /// Follows a task's log from `offset`, returning at most `max_chunk` bytes per piece.
    pub fn follow_log(&self, id: &str, offset: u64, max_chunk: usize) -> LogFollower {
        LogFollower {
            events: self.subscribe(),
            store: self.clone(),
            id: id.to_string(),
            offset,
            max_chunk: max_chunk.max(1),
            done: false,
        }
    }

    /// Waits until the task is in a terminal state and returns it. Fails with
    /// [`StoreError::NotFound`] if there is no such task. Bound it with a timeout if needed.
    pub async fn wait_until_terminal(&self, id: &str) -> Result<TaskRecord> {
        let mut events = self.subscribe();
        loop {
            let task = self
                .get(id)
                .await?
                .ok_or_else(|| StoreError::NotFound { id: id.to_string() })?;
            if task.state.is_terminal() {
                return Ok(task);
            }
            wait_for_change(&mut events, id).await?;
        }
    }
}
