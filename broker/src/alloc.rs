//! The broker's global allocator: the system allocator, except that requests
//! of 1 GiB or more are reserved lazily with `mmap(MAP_NORESERVE)`.
//!
//! Why (ADR 0003): the wire decoder sizes vectors from length fields before
//! reading their elements, so a 27-byte request that claims 2^32 array
//! elements asks for hundreds of GiB. The system allocator refuses and Rust
//! aborts the process. A lazy reservation costs only address space: the
//! decoder then fails on the missing bytes, the vector is freed, and the
//! request is refused like any other malformed one. Legitimate large buffers
//! work the same way; pages are committed when touched.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct LazyHugeAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

/// Reserve `size` bytes of zeroed, lazily committed memory.
unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no
    // preconditions; failure is reported as MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every pointer is handed back to the allocator that produced it:
// the choice between mmap and System depends only on the layout, which the
// caller passes unchanged to `dealloc`; `realloc` across the threshold copies.
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe {
                libc::munmap(p.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size, rounded to align, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(p, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                ptr::copy_nonoverlapping(p, new, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservations_are_lazy_and_usable() {
        let a = LazyHugeAlloc;
        // 512 GiB: far beyond this machine's memory, yet only address space.
        let layout = Layout::from_size_align(512 << 30, 8).unwrap();
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        unsafe {
            *p = 7;
            *p.add((512 << 30) - 1) = 9;
            assert_eq!(*p, 7);
            a.dealloc(p, layout);
        }
        // Small allocations and growth across the threshold keep their bytes.
        let small = Layout::from_size_align(64, 8).unwrap();
        let q = unsafe { a.alloc(small) };
        unsafe {
            *q = 42;
            let r = a.realloc(q, small, HUGE);
            assert_eq!(*r, 42);
            let s = a.realloc(r, Layout::from_size_align(HUGE, 8).unwrap(), 128);
            assert_eq!(*s, 42);
            a.dealloc(s, Layout::from_size_align(128, 8).unwrap());
        }
    }
}
