//! Logging from inside an adapter.
//!
//! In a component (`wasm32`), each call goes to the world's one import, `log`, and the host
//! records the message with the adapter's name and the task id attached (it may drop messages
//! beyond a per-call budget). Compiled natively — in unit tests and in the host's native
//! benchmark baseline — messages are appended to a thread-local buffer instead (the newest
//! 10 000 are kept), which tests read with [`take`]; nothing is printed.

/// Severity of a log message (the WIT `level` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the adapter worked around.
    Warn,
    /// Something failed.
    Error,
}

/// Records `message` at `level`.
pub fn log(level: Level, message: &str) {
    imp::log(level, message);
}

/// Records a trace message.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Records a debug message.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Records an informational message.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Records a warning.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Records an error.
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Returns and clears the messages recorded on this thread (native builds only; a component's
/// messages go to the host).
#[cfg(not(target_arch = "wasm32"))]
pub fn take() -> Vec<(Level, String)> {
    imp::BUFFER.with(|b| b.borrow_mut().drain(..).collect())
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::Level;

    /// Most messages kept per thread; the oldest are dropped first, so that a long native
    /// benchmark neither grows without bound nor slows down.
    pub(super) const MAX_BUFFERED: usize = 10_000;

    thread_local! {
        pub(super) static BUFFER: RefCell<VecDeque<(Level, String)>> = const { RefCell::new(VecDeque::new()) };
    }

    pub(super) fn log(level: Level, message: &str) {
        BUFFER.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() >= MAX_BUFFERED {
                b.pop_front();
            }
            b.push_back((level, message.to_owned()));
        });
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::__guest::bindings::taskpod::adapter::log::{Level as WitLevel, log as host_log};

    pub(super) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => WitLevel::Trace,
            Level::Debug => WitLevel::Debug,
            Level::Info => WitLevel::Info,
            Level::Warn => WitLevel::Warn,
            Level::Error => WitLevel::Error,
        };
        host_log(level, message);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn native_messages_are_buffered() {
        let _ = take();
        info("hello");
        warn("careful");
        assert_eq!(
            take(),
            vec![
                (Level::Info, "hello".to_owned()),
                (Level::Warn, "careful".to_owned())
            ]
        );
        assert!(take().is_empty());
    }

    #[test]
    fn buffer_keeps_the_newest_messages() {
        let _ = take();
        for i in 0..imp::MAX_BUFFERED + 5 {
            debug(&i.to_string());
        }
        let kept = take();
        assert_eq!(kept.len(), imp::MAX_BUFFERED);
        assert_eq!(kept[0].1, "5");
    }
}
