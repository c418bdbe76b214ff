//! The allocator's background work. jemalloc (lb's allocator) returns freed memory to the system
//! from background threads; a fork does not carry threads over, so a daemon (`lb -d`, forked by
//! Pingora after start-up) restarts them.

/// Restarts jemalloc's background threads, in the process that serves.
pub fn restart_background_threads() {
    #[cfg(feature = "jemalloc")]
    for on in [false, true] {
        let mut value = on;
        // SAFETY: `background_thread` takes a bool, passed by pointer with its size.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"background_thread".as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                (&raw mut value).cast(),
                std::mem::size_of::<bool>(),
            )
        };
        if rc != 0 {
            log::warn!("freed memory may stay with lb: jemalloc's background threads did not start ({rc})");
            return;
        }
    }
}
