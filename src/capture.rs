//! TODO: capture
