//! Handles whose node moved to another cell in a reshard (docs/design.md §12,
//! docs/proxy.md "After a reshard"): a bounded table from a handle's token to the cell it
//! lives in now, so that calls on it after the first go straight there instead of to the
//! cell named in the token (which answers `WRONG_CELL` and changes nothing).
//!
//! Plain data, no I/O: the service records a redirect when it follows one
//! ([`MovedHandles::moved`]), asks before routing a call on a handle
//! ([`MovedHandles::cell_of`]) and forgets the handle on `Close`
//! ([`MovedHandles::forget`]). The table is only a shortcut: a handle it lost (evicted, or
//! known to another proxy) still works, at the price of one `WRONG_CELL` round trip, since
//! the old cell names the new owner again.

use crate::core::CellIx;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How many redirects a proxy remembers by default. A token is about a hundred bytes, so
/// this bounds the table to a few MiB however many handles move.
pub const DEFAULT_CAPACITY: usize = 64 * 1024;

/// Handle token → the cell the handle lives in now, at most `capacity` entries; the one
/// recorded longest ago is evicted first.
#[derive(Debug)]
pub struct MovedHandles {
    capacity: usize,
    /// Token → (its cell now, the order stamp of its entry in `order`).
    cells: HashMap<Arc<[u8]>, (CellIx, u64)>,
    /// Order stamp → token: the eviction order (oldest first).
    order: BTreeMap<u64, Arc<[u8]>>,
    next: u64,
    /// Redirects evicted to stay within `capacity` (for `/status`).
    evicted: u64,
}

impl Default for MovedHandles {
    fn default() -> Self {
        MovedHandles::new(DEFAULT_CAPACITY)
    }
}

impl MovedHandles {
    /// A table holding at most `capacity` redirects (at least one).
    pub fn new(capacity: usize) -> Self {
        MovedHandles {
            capacity: capacity.max(1),
            cells: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            evicted: 0,
        }
    }

    /// The cell the handle `token` was last seen to live in, if it moved.
    pub fn cell_of(&self, token: &[u8]) -> Option<CellIx> {
        self.cells.get(token).map(|&(cell, _)| cell)
    }

    /// The handle `token` lives in `cell` now. A handle that moves again is updated (and
    /// counts as recorded now); `origin` is the cell named in the token: a handle back
    /// where it was made needs no entry.
    pub fn moved(&mut self, token: &[u8], cell: CellIx, origin: Option<CellIx>) {
        if origin == Some(cell) {
            self.forget(token);
            return;
        }
        let stamp = self.next;
        self.next += 1;
        if let Some((to, old)) = self.cells.get_mut(token) {
            *to = cell;
            let key = self
                .order
                .remove(old)
                .expect("every entry has its stamp in the order");
            *old = stamp;
            self.order.insert(stamp, key);
            return;
        }
        while self.cells.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.cells.remove(&oldest);
            self.evicted += 1;
        }
        let key: Arc<[u8]> = Arc::from(token);
        self.cells.insert(key.clone(), (cell, stamp));
        self.order.insert(stamp, key);
    }

    /// The handle was closed: its redirect is of no more use.
    pub fn forget(&mut self, token: &[u8]) {
        if let Some((_, stamp)) = self.cells.remove(token) {
            self.order.remove(&stamp);
        }
    }

    /// Redirects held.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Redirects evicted so far to stay within the capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(i: u32) -> Vec<u8> {
        format!("token-{i}").into_bytes()
    }

    #[test]
    fn a_recorded_redirect_is_found_until_the_handle_is_closed() {
        let mut m = MovedHandles::new(8);
        assert_eq!(m.cell_of(&token(1)), None);
        m.moved(&token(1), 2, Some(0));
        assert_eq!(m.cell_of(&token(1)), Some(2));
        assert_eq!(
            m.cell_of(&token(2)),
            None,
            "other handles are not redirected"
        );
        m.forget(&token(1));
        assert_eq!(m.cell_of(&token(1)), None);
        assert!(m.is_empty());
        // Forgetting what is not there is harmless.
        m.forget(&token(1));
        assert!(m.is_empty());
    }

    #[test]
    fn a_handle_that_moves_again_follows_its_latest_cell() {
        let mut m = MovedHandles::new(8);
        m.moved(&token(1), 2, Some(0));
        m.moved(&token(1), 3, Some(0));
        assert_eq!(m.cell_of(&token(1)), Some(3));
        assert_eq!(m.len(), 1);
        // Moved back to the cell that made it: no redirect needed any more.
        m.moved(&token(1), 0, Some(0));
        assert_eq!(m.cell_of(&token(1)), None);
        assert!(m.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest_redirect_first() {
        let mut m = MovedHandles::new(3);
        for i in 0..3 {
            m.moved(&token(i), 1, Some(0));
        }
        assert_eq!(m.len(), 3);
        // Token 0 moved again: it is now the newest, so token 1 is the oldest.
        m.moved(&token(0), 2, Some(0));
        m.moved(&token(3), 1, Some(0));
        assert_eq!(m.len(), 3);
        assert_eq!(m.evicted(), 1);
        assert_eq!(m.cell_of(&token(1)), None, "the oldest went");
        assert_eq!(m.cell_of(&token(0)), Some(2));
        assert_eq!(m.cell_of(&token(2)), Some(1));
        assert_eq!(m.cell_of(&token(3)), Some(1));
        // Many more: never more than the capacity, and the newest always kept.
        for i in 10..1000 {
            m.moved(&token(i), 1, Some(0));
            assert!(m.len() <= 3);
            assert_eq!(m.cell_of(&token(i)), Some(1));
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.order.len(), 3, "the order holds exactly the entries");
        assert_eq!(m.evicted(), 1 + 990);
    }

    #[test]
    fn a_close_frees_room_without_evicting_anyone() {
        let mut m = MovedHandles::new(2);
        m.moved(&token(1), 1, Some(0));
        m.moved(&token(2), 1, Some(0));
        m.forget(&token(1));
        m.moved(&token(3), 1, Some(0));
        assert_eq!(m.evicted(), 0);
        assert_eq!(m.cell_of(&token(2)), Some(1));
        assert_eq!(m.cell_of(&token(3)), Some(1));
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_latest_redirect() {
        let mut m = MovedHandles::new(0);
        m.moved(&token(1), 1, None);
        m.moved(&token(2), 1, None);
        assert_eq!(m.len(), 1);
        assert_eq!(m.cell_of(&token(2)), Some(1));
    }
}
