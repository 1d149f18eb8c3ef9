//! taskpod host library (in progress).
