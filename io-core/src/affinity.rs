//! Pinning the calling thread to one CPU: what a thread-per-core run does for each of its cores,
//! choosing among the CPUs it is allowed. The two system calls here with no safe wrapper in std
//! (`sched_setaffinity`, `sched_getaffinity`), each fenced in one function; anywhere the OS does
//! not offer them, pinning is refused, never an error that stops a run.

use std::io;

/// Pins the calling thread to CPU `cpu` (Linux: `sched_setaffinity`). Fails where the OS refuses
/// (a CPU that does not exist or a container's cgroup forbids, another OS); callers treat that
/// as "run unpinned". The OS lets a thread *widen* its mask: pick `cpu` among
/// [`allowed_cpus`], or the thread leaves the set its process was confined to (`taskset`).
///
/// ```
/// // CPU 0 exists on every machine; a sandbox may still refuse the call.
/// let _ = io_core::pin_current_thread(0);
/// assert!(io_core::pin_current_thread(usize::MAX).is_err());
/// ```
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        set_affinity(cpu)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_affinity(cpu: usize) -> io::Result<()> {
    // `CPU_SET` indexes a fixed-size bit array: a CPU past it would write out of bounds.
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: `cpu_set_t` is a plain bit array, valid when zeroed; `CPU_SET` writes bit `cpu`,
    // which the check above keeps inside it; `sched_setaffinity(0, ..)` reads `size_of` bytes of
    // the set we own and changes only the calling thread's mask.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPUs the calling thread may run on, in increasing order (Linux: `sched_getaffinity`): for
/// a thread that has not narrowed its own mask, its process's allowed set (`taskset`, a cgroup's
/// cpuset), which the threads it starts inherit. Fails where the OS does not tell (another OS,
/// a machine with more CPUs than a `cpu_set_t` holds).
///
/// ```
/// # if cfg!(target_os = "linux") {
/// let cpus = io_core::allowed_cpus().unwrap();
/// assert!(!cpus.is_empty());
/// assert!(cpus.windows(2).all(|w| w[0] < w[1]));
/// # }
/// ```
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    #[cfg(target_os = "linux")]
    {
        get_affinity()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn get_affinity() -> io::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is a plain bit array, valid when zeroed; `sched_getaffinity(0, ..)`
    // writes at most `size_of` bytes into the set we own, the calling thread's mask.
    let (rc, set) = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (rc, set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `CPU_ISSET` reads bit `cpu` of the set, which the range keeps inside it.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}
