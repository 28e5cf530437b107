//! Why io_uring could not be used, by cause.

/// Why a [`UringIo`](crate::UringIo) could not be built. Each cause says what to do next; the
/// facade's `ioswap::run` falls back to the blocking backend on any of them unless io_uring was
/// asked for by name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UringError {
    /// The kernel has no io_uring (`ENOSYS`: built without it, or older than 5.1).
    #[error("this kernel does not implement io_uring (ENOSYS); use IOSWAP_BACKEND=blocking")]
    NotImplemented,
    /// io_uring exists but this process may not use it (`EPERM`): the
    /// `kernel.io_uring_disabled` sysctl, a seccomp filter, or a container policy forbids it.
    #[error("io_uring is disabled for this process (EPERM): check the kernel.io_uring_disabled sysctl or the container's seccomp policy, or use IOSWAP_BACKEND=blocking")]
    Disabled,
    /// Not enough locked memory for the rings (`ENOMEM`; kernels before 5.12 charge the rings to
    /// `RLIMIT_MEMLOCK`).
    #[error("not enough locked memory for the io_uring rings (ENOMEM): raise RLIMIT_MEMLOCK (ulimit -l) or ask for fewer entries")]
    MemlockLimit,
    /// The kernel's io_uring lacks a feature this backend relies on.
    #[error("this kernel's io_uring lacks {feature} (Linux {since} or later is needed)")]
    MissingFeature {
        /// The feature, as the kernel names it.
        feature: &'static str,
        /// The first Linux release that has it.
        since: &'static str,
    },
    /// Setting up the ring (or its wakeup eventfd) failed for another reason.
    #[error("io_uring setup failed: {message} (errno {errno})")]
    Setup {
        /// The `errno` the kernel returned.
        errno: i32,
        /// Its description.
        message: String,
    },
}

impl UringError {
    /// The error for a failed setup call, by its `errno`.
    ///
    /// ```
    /// use io_uring_backend::UringError;
    /// assert_eq!(UringError::from_errno(libc::ENOSYS), UringError::NotImplemented);
    /// assert_eq!(UringError::from_errno(libc::EPERM), UringError::Disabled);
    /// assert_eq!(UringError::from_errno(libc::ENOMEM), UringError::MemlockLimit);
    /// assert!(matches!(UringError::from_errno(libc::EINVAL), UringError::Setup { errno, .. } if errno == libc::EINVAL));
    /// ```
    pub fn from_errno(errno: i32) -> UringError {
        match errno {
            libc::ENOSYS => UringError::NotImplemented,
            libc::EPERM => UringError::Disabled,
            libc::ENOMEM => UringError::MemlockLimit,
            errno => UringError::Setup {
                errno,
                message: std::io::Error::from_raw_os_error(errno).to_string(),
            },
        }
    }

    pub(crate) fn from_io(err: &std::io::Error) -> UringError {
        match err.raw_os_error() {
            Some(errno) => UringError::from_errno(errno),
            None => UringError::Setup {
                errno: 0,
                message: err.to_string(),
            },
        }
    }
}
