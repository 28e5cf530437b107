//! Kernel-visible memory an op needs besides its own buffers, at an address that never moves.

use std::cell::UnsafeCell;
use std::ptr::NonNull;

/// Memory the kernel reads or writes while a request is in flight, at a fixed address until
/// this value is dropped (a raw allocation, so moving the owner never retags or moves it).
pub(super) struct KernelMem<T>(NonNull<UnsafeCell<T>>);

impl<T> KernelMem<T> {
    pub(super) fn new(value: T) -> KernelMem<T> {
        KernelMem(NonNull::from(Box::leak(Box::new(UnsafeCell::new(value)))))
    }

    pub(super) fn ptr(&self) -> *mut T {
        // SAFETY: the allocation is live until drop; `get` only makes a raw pointer.
        unsafe { self.0.as_ref() }.get()
    }
}

impl<T> Drop for KernelMem<T> {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box::leak` in `new` and freed only here, once.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}
