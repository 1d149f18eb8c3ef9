//! The guest's heap: small allocations bump through an arena.
//!
//! The host runs every call in a fresh instance that is thrown away afterwards, so memory a
//! call frees is never needed again by a later call. [`Arena`] serves allocations smaller than
//! [`LARGE`] by bumping a pointer through one [`ARENA`]-byte block taken from the system
//! allocator on first use: an allocation is an add and a compare, a free is a no-op (or gives
//! the space back when it was the latest allocation), and growing the latest allocation extends
//! it in place — the usual pattern of a `Vec` or `String` being built. Large allocations, and
//! every allocation once the arena is used up, go to the system allocator (wasi-libc's
//! `malloc`) as before, so a call that churns through memory is still bounded by what it holds
//! at once plus at most [`ARENA`] bytes.
//!
//! This cuts the time of the built-in adapters' calls in the sandbox by the share that
//! `malloc`/`free` bookkeeping had (about a tenth). It is the global allocator of `wasm32`
//! builds only (with the `arena` feature, on by default); natively (unit tests, the host's
//! native baseline) the platform allocator stays, and the type exists for its tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

/// Size of the bump arena, bytes.
pub const ARENA: usize = 1 << 20;
/// Allocations of at least this many bytes bypass the arena.
pub const LARGE: usize = 16 << 10;

/// The bump allocator (see the module documentation).
#[derive(Debug)]
pub struct Arena {
    /// Start of the arena; null until the first small allocation (or when it could not be had).
    base: Cell<*mut u8>,
    /// Bytes of the arena handed out (offset of the next free byte).
    used: Cell<usize>,
    /// Offset of the latest allocation (the only one that can grow in place or be given back).
    last: Cell<usize>,
    /// The arena is used up (or could not be had): every allocation goes to the system allocator.
    full: Cell<bool>,
}

impl Arena {
    /// An arena that takes its block on first use.
    pub const fn new() -> Arena {
        Arena {
            base: Cell::new(ptr::null_mut()),
            used: Cell::new(0),
            last: Cell::new(usize::MAX),
            full: Cell::new(false),
        }
    }

    /// Whether `ptr` points into the arena.
    fn owns(&self, ptr: *mut u8) -> bool {
        let base = self.base.get();
        !base.is_null() && (ptr as usize).wrapping_sub(base as usize) < ARENA
    }

    /// A small block from the arena, or null when it is used up.
    fn bump(&self, layout: Layout) -> *mut u8 {
        if self.full.get() {
            return ptr::null_mut();
        }
        let mut base = self.base.get();
        if base.is_null() {
            // SAFETY: the layout has a non-zero size and a valid alignment.
            base = unsafe { System.alloc(Layout::from_size_align(ARENA, 16).expect("valid")) };
            if base.is_null() {
                self.full.set(true);
                return ptr::null_mut();
            }
            self.base.set(base);
        }
        // Align the address, not the offset: the arena's own alignment is only 16.
        let addr = base as usize + self.used.get();
        let offset = addr.next_multiple_of(layout.align()) - base as usize;
        match offset.checked_add(layout.size()) {
            Some(end) if end <= ARENA => {
                self.used.set(end);
                self.last.set(offset);
                base.wrapping_add(offset)
            }
            _ => {
                self.full.set(true);
                ptr::null_mut()
            }
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let base = self.base.get();
        if !base.is_null() {
            // SAFETY: the block was allocated in `bump` with exactly this layout.
            unsafe { System.dealloc(base, Layout::from_size_align(ARENA, 16).expect("valid")) };
        }
    }
}

impl Default for Arena {
    fn default() -> Self {
        Arena::new()
    }
}

// SAFETY: a `wasm32-wasip2` component instance runs on one thread; the cells are never
// accessed concurrently. (Natively the type is not `Sync` and cannot be a global allocator.)
#[cfg(target_arch = "wasm32")]
unsafe impl Sync for Arena {}

// SAFETY: every block handed out is either a fresh, suitably aligned range of the arena that
// no other live block overlaps (`used` only moves back over the latest block when that block
// is freed or resized), or a block of the system allocator, which is also freed and resized
// there: blocks are told apart by address (`owns`), never by size.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() < LARGE && layout.align() <= 4096 {
            let p = self.bump(layout);
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            let offset = ptr as usize - self.base.get() as usize;
            if offset == self.last.get() {
                self.used.set(offset);
                self.last.set(usize::MAX);
            }
            return;
        }
        // SAFETY: not an arena block, so it came from the system allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.owns(ptr) {
            let offset = ptr as usize - self.base.get() as usize;
            if offset == self.last.get() && new_size < LARGE && offset + new_size <= ARENA {
                self.used.set(offset + new_size);
                return ptr;
            }
            // SAFETY: the caller guarantees `new_size` forms a valid layout with this alignment.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: as above.
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are live, distinct and at least this long.
                unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
                // SAFETY: `ptr` is a live arena block with this layout.
                unsafe { self.dealloc(ptr, layout) };
            }
            return new;
        }
        // SAFETY: a system block, resized by the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("valid layout")
    }

    #[test]
    fn small_blocks_bump_and_the_latest_grows_in_place() {
        let arena = Arena::new();
        // SAFETY (whole test): every block is used within its size and freed with its layout.
        unsafe {
            let a = arena.alloc(layout(24, 8));
            let b = arena.alloc(layout(7, 1));
            let c = arena.alloc(layout(64, 64));
            assert!(arena.owns(a) && arena.owns(b) && arena.owns(c));
            assert_eq!(b as usize, a as usize + 24, "blocks follow each other");
            assert_eq!(c as usize % 64, 0, "alignment is honoured");
            c.write_bytes(0xab, 64);
            let grown = arena.realloc(c, layout(64, 64), 1000);
            assert_eq!(grown, c, "the latest block grows in place");
            assert_eq!(*grown.add(63), 0xab);
            arena.dealloc(grown, layout(1000, 64));
            let again = arena.alloc(layout(64, 64));
            assert_eq!(again, c, "freeing the latest block gives its space back");
            // An older block moves when it grows, keeping its bytes.
            a.write_bytes(7, 24);
            let moved = arena.realloc(a, layout(24, 8), 48);
            assert_ne!(moved, a);
            assert!(arena.owns(moved));
            assert_eq!(std::slice::from_raw_parts(moved, 24), &[7u8; 24][..]);
        }
    }

    #[test]
    fn large_blocks_and_overflow_go_to_the_system_allocator() {
        let arena = Arena::new();
        // SAFETY (whole test): every block is used within its size and freed with its layout.
        unsafe {
            let small = arena.alloc(layout(100, 8));
            small.write_bytes(3, 100);
            let big = arena.realloc(small, layout(100, 8), LARGE * 2);
            assert!(
                !arena.owns(big),
                "a block that grows past LARGE leaves the arena"
            );
            assert_eq!(std::slice::from_raw_parts(big, 100), &[3u8; 100][..]);
            let big = arena.realloc(big, layout(LARGE * 2, 8), LARGE * 4);
            arena.dealloc(big, layout(LARGE * 4, 8));

            // Fill the arena; later small blocks still succeed, from the system allocator.
            let mut blocks = Vec::new();
            loop {
                let p = arena.alloc(layout(LARGE - 1, 1));
                assert!(!p.is_null());
                if !arena.owns(p) {
                    blocks.push(p);
                    break;
                }
            }
            assert!(arena.full.get());
            assert!(arena.used.get() <= ARENA);
            let p = arena.alloc(layout(16, 8));
            assert!(!p.is_null() && !arena.owns(p));
            p.write_bytes(1, 16);
            arena.dealloc(p, layout(16, 8));
            for p in blocks {
                arena.dealloc(p, layout(LARGE - 1, 1));
            }
        }
    }
}
