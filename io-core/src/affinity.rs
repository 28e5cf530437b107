//! Pinning the calling thread to one CPU: what a thread-per-core run does for each of its cores.
//! The one system call here with no safe wrapper in std (`sched_setaffinity`), fenced in one
//! function; anywhere the OS does not offer it, pinning is refused, never an error that stops a
//! run.

use std::io;

/// Pins the calling thread to CPU `cpu` (Linux: `sched_setaffinity`). Fails where the OS refuses
/// (the CPU is outside this process's allowed set, a container's cgroup, another OS); callers
/// treat that as "run unpinned".
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
