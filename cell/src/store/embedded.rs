//! redb store (being written)
