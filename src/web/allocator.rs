//! The global allocator on wasm32: segregated free lists, a few hundred bytes of code where
//! std's dlmalloc is about 7 KB and talc about 1.6 KB. Every page view downloads it.
//!
//! A request is rounded up to a size class: multiples of 16 up to 128 bytes, then four
//! classes per power of two (160, 192, 224, 256, 320, ...), so at most a fifth of a block is
//! slack. Each class keeps a list of its freed blocks, threaded through the blocks themselves;
//! a request takes the head of its class's list, or else carves a new block from the end of
//! the heap, growing the wasm memory when that runs out. Both are constant time. Blocks are
//! never split or merged: the memory a class has once held stays with it, so memory peaks at
//! what each class needed at its busiest and then stays flat. That is the exporter's pattern:
//! the same few sizes (encoded events, batches, the queue's buffers) over and over.
//!
//! wasm32-unknown-unknown without the `atomics` target feature is single-threaded, so the state
//! needs no lock. Turned off with the crate's `allocator` feature, for a program that sets its
//! own allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr;

/// Every block's alignment, and the smallest class.
const GRANULE: usize = 16;
/// Classes: 8 multiples of 16 up to 128, then 4 per power of two up to 2^32.
const CLASSES: usize = 8 + 4 * 25;
const PAGE: usize = 65_536;

struct State {
    /// The head of each class's list of free blocks (0: empty); a free block holds the next.
    free: [usize; CLASSES],
    /// The unused end of the heap: `next..end` is ours, `end` the end of the wasm memory.
    next: usize,
    end: usize,
}

/// Segregated free lists for single-threaded wasm32.
struct Allocator(UnsafeCell<State>);

// SAFETY: wasm32 without atomics runs one thread; there is no other to share it with.
unsafe impl Sync for Allocator {}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator(UnsafeCell::new(State {
    free: [0; CLASSES],
    next: 0,
    end: 0,
}));

/// The class of a block of `size` bytes, and the block size of that class.
fn class(size: usize) -> (usize, usize) {
    if size <= 128 {
        let i = size.max(1).div_ceil(GRANULE);
        return (i - 1, i * GRANULE);
    }
    // 129..: the two bits below the highest of size - 1 pick one of four classes.
    let s = size - 1;
    let top = usize::BITS - 1 - s.leading_zeros(); // 7 or more
    let shift = top - 2;
    let m = s >> shift; // 4..=7
    ((top as usize - 7) * 4 + (m - 4) + 8, (m + 1) << shift)
}

impl State {
    /// A fresh block of `size` bytes aligned to `align`, carved from the end of the heap.
    fn carve(&mut self, size: usize, align: usize) -> *mut u8 {
        if self.end == 0 {
            // The heap starts where the memory the module was given ends: below it are the
            // stack and the static data.
            self.end = wasm32::memory_size(0) * PAGE;
            self.next = self.end;
        }
        let start = (self.next + align - 1) & !(align - 1);
        let Some(stop) = start.checked_add(size) else {
            return ptr::null_mut();
        };
        if stop > self.end {
            let pages = (stop - self.end).div_ceil(PAGE);
            if wasm32::memory_grow(0, pages) == usize::MAX {
                return ptr::null_mut();
            }
            self.end += pages * PAGE;
        }
        self.next = stop;
        start as *mut u8
    }
}

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded, and no caller re-enters the allocator while it runs.
        let state = unsafe { &mut *self.0.get() };
        if layout.size() > usize::MAX / 2 {
            return ptr::null_mut();
        }
        let (i, size) = class(layout.size());
        let head = state.free[i];
        // A freed block is GRANULE-aligned; a stricter alignment always gets a fresh block.
        if head != 0 && layout.align() <= GRANULE {
            // SAFETY: a block on a free list is ours, at least GRANULE bytes, and holds the
            // address of the next free block of its class.
            state.free[i] = unsafe { *(head as *const usize) };
            return head as *mut u8;
        }
        state.carve(size, layout.align().max(GRANULE))
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`; `block` came from `alloc` with this layout, so it is a block
        // of this class, now unused.
        let state = unsafe { &mut *self.0.get() };
        let (i, _) = class(layout.size());
        unsafe { *(block as *mut usize) = state.free[i] };
        state.free[i] = block as usize;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Within its class a block already has room.
        if class(new_size).0 == class(layout.size()).0 {
            return block;
        }
        // SAFETY: the contract of `GlobalAlloc::realloc`: `layout.align()` with `new_size`
        // is a valid layout, and `block` is a live block of `layout`.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            new
        }
    }
}
