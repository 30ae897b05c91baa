//! The node agent (placeholder until implemented).
