//! The task runner (in progress).
