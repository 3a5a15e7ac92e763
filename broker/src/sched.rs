//! Thread scheduling: a thread can ask to run only on CPU time nobody else
//! wants (ADR 0017).

/// Put the calling thread in Linux's `SCHED_IDLE` class: the kernel runs it
/// only when no ordinary thread is ready on that CPU, preempts it as soon as
/// one wakes, and treats a CPU running it as idle when placing woken threads.
/// Lowering one's own class needs no privilege. The change cannot be undone
/// without `CAP_SYS_NICE`, so callers use a thread of their own.
///
/// Returns whether the class was taken (never, off Linux).
pub fn run_only_when_idle() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid, initialised `sched_param` that outlives
        // the call; pid 0 names the calling thread; the call reads nothing else.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The calling thread's scheduling policy (Linux), for tests.
pub fn current_policy() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pid 0 names the calling thread; no memory is passed.
        let policy = unsafe { libc::sched_getscheduler(0) };
        (policy >= 0).then_some(policy)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_of_its_own_takes_the_idle_class() {
        let (took, policy) = std::thread::spawn(|| (run_only_when_idle(), current_policy()))
            .join()
            .unwrap();
        assert!(took);
        assert_eq!(policy, Some(libc::SCHED_IDLE));
        // The test's own thread is untouched.
        assert_ne!(current_policy(), Some(libc::SCHED_IDLE));
    }
}
