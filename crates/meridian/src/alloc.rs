//! The global allocator, and the one setting Meridian gives it.
//!
//! mimalloc instead of the system allocator: measured with `../shared/peers`
//! (README, Performance), it takes a share of the CPU per request that
//! glibc's malloc spent on the request path's many short-lived allocations.
//! `--features system-allocator` builds with glibc's, for heap profilers.
//!
//! mimalloc returns the memory of pages it no longer uses to the OS only
//! `purge_delay` milliseconds after they empty (1,000 by default). A
//! gateway holding thousands of streams frees and takes pages all the time,
//! so a second's worth of emptied pages stays resident: in the streams
//! bench (5,000 streams) the peak RSS was 216.9 MB with the default and
//! 205.8 MB with 0, at the same CPU per event (README, Performance).
//! Meridian starts with 0 unless the operator set `MIMALLOC_PURGE_DELAY`
//! (mimalloc reads its `MIMALLOC_*` variables when the process loads; an
//! operator's value is left as it is).

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (libmimalloc-sys
/// exports no constant for it); a unit test checks that the option at this
/// index has purge_delay's default, 1,000 ms.
#[cfg(not(feature = "system-allocator"))]
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Purges emptied pages at once, unless `MIMALLOC_PURGE_DELAY` is set. Call
/// first thing in `main`, before any other thread starts: mimalloc's option
/// setter is not thread-safe.
pub fn tune() {
    #[cfg(not(feature = "system-allocator"))]
    if operator_set().is_none() {
        set(PURGE_DELAY, 0);
    }
}

/// `MIMALLOC_PURGE_DELAY`, when the operator set it.
#[cfg(not(feature = "system-allocator"))]
fn operator_set() -> Option<String> {
    use meridian_catalog::env::{EnvSource, ProcessEnv};
    EnvSource::non_empty(&ProcessEnv, "MIMALLOC_PURGE_DELAY")
}

#[cfg(not(feature = "system-allocator"))]
#[allow(unsafe_code)] // the workspace's one allowed use (tests/unsafe_code.rs)
fn set(option: libmimalloc_sys::mi_option_t, value: std::ffi::c_long) {
    // SAFETY: `mi_option_set` takes two integers and no pointer, and any
    // value is valid for purge_delay (-1 never purges, 0 at once, N after N
    // ms). It writes a plain static that mimalloc's threads read without a
    // lock; `tune`'s caller runs it before starting any thread.
    unsafe { libmimalloc_sys::mi_option_set(option, value) }
}

#[cfg(all(test, not(feature = "system-allocator")))]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn the_index_is_purge_delays() {
        if super::operator_set().is_some() {
            return; // an operator's value: the default cannot be read
        }
        // SAFETY: a read of an option by index, no pointer; the index is
        // below `_mi_option_last`.
        let value = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(
            value,
            1000,
            "option {} is not purge_delay (default 1000 ms) in this mimalloc",
            super::PURGE_DELAY
        );
    }
}
