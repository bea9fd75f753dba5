//! Thread scheduling priority (nice values, Linux): the serving thread answers
//! Postfix first; resolutions (`daemon::ResolverThreads`) and TLS-RPT's threads
//! (`tlsrpt::collector`, `tlsrpt::sender`) run at a lower priority, so that on a busy
//! machine a cached answer never waits behind them (SPEC 1.5; docs/BENCHMARKS.md).

/// The calling thread's nice value (on Linux the nice value is per thread).
pub fn current_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    unsafe {
        // SAFETY: plain syscalls on the calling thread; errno is thread-local.
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        // -1 is also a valid nice value: only errno tells a failure.
        (*libc::__errno_location() == 0).then_some(nice)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Sets the calling thread's nice value. Best effort: where it is not allowed (a
/// seccomp filter without `setpriority`) the thread keeps its priority. Raising the
/// value never needs a privilege.
pub fn set_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    unsafe {
        // SAFETY: a plain syscall on the calling thread, no memory passed.
        let _ = libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// How much lower than the serving thread the background threads run.
pub const BACKGROUND_NICE: i32 = 10;

/// Lower the calling thread's priority by `by` (at most to 19), from the nice
/// value it has now. Best effort, as [`set_nice`].
pub fn lower_priority(by: i32) {
    if let Some(nice) = current_nice() {
        set_nice((nice + by).min(19));
    }
}
