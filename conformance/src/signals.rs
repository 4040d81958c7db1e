//! Stopping a run on SIGINT and SIGTERM, and telling those signals apart from ones a plugin's
//! processes send the runner. A CI job that is cancelled stops the run; a plugin that signals
//! its parent (`kill(getppid(), SIGTERM)`) breaks MEM-3 and is reported, while the run goes on.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// Process groups of the running workers (a worker leads its own, and what the plugin starts
/// stays in it); 0 marks a free slot. Read by the signal handler, so it is a fixed table of
/// atomics rather than a locked set.
static WORKER_GROUPS: [AtomicI32; 256] = [const { AtomicI32::new(0) }; 256];

/// Workers reaped last, in a ring: a signal sent just before a worker ended reaches the handler
/// when the worker may be gone already.
static ENDED: [AtomicI32; 256] = [const { AtomicI32::new(0) }; 256];
static ENDED_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Process groups of the profile's running shell commands (`setup`, `teardown`,
/// `change_command`): children of the runner too, but not the plugin's.
static SHELL_GROUPS: [AtomicI32; 32] = [const { AtomicI32::new(0) }; 32];

/// The first signal a plugin's process sent the runner, and that process's id.
static PLUGIN_SIGNAL: AtomicI32 = AtomicI32::new(0);
static PLUGIN_SENDER: AtomicI32 = AtomicI32::new(0);

/// The signal that asked the run to stop; 0 while none came.
static INTERRUPT: AtomicI32 = AtomicI32::new(0);

/// Track the process group of a worker that was just started.
pub(crate) fn add_worker(pid: u32) {
    replace(&WORKER_GROUPS, 0, pid as i32);
}

/// Track the process group of a shell command that was just started.
pub(crate) fn add_shell(pid: u32) {
    replace(&SHELL_GROUPS, 0, pid as i32);
}

/// Stop tracking a shell command's process group, once it is gone.
pub(crate) fn remove_shell(pid: u32) {
    replace(&SHELL_GROUPS, pid as i32, 0);
}

/// Stop tracking a worker that was reaped (it stays among those that ended lately).
pub(crate) fn remove_worker(pid: u32) {
    let i = ENDED_NEXT.fetch_add(1, Ordering::SeqCst) % ENDED.len();
    ENDED[i].store(pid as i32, Ordering::SeqCst);
    replace(&WORKER_GROUPS, pid as i32, 0);
}

/// Put `to` in the first slot of `table` that holds `from`.
fn replace(table: &[AtomicI32], from: i32, to: i32) {
    for slot in table {
        if slot
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

/// The signal a plugin's process sent the runner, and the sender, if one did.
pub(crate) fn plugin_signal() -> Option<(i32, i32)> {
    match PLUGIN_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some((sig, PLUGIN_SENDER.load(Ordering::SeqCst))),
    }
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let sender = unsafe { (*info).si_pid() };
    let group = if sender > 0 {
        // SAFETY: getpgid is a plain system call; a sender that is gone gives -1.
        unsafe { libc::getpgid(sender) }
    } else {
        -1
    };
    // A worker (or its process group) is ours when it is a child of this process, which holds
    // also before the runner noted it down, or one noted down, which holds also after it was
    // reaped.
    let shell = |pid: i32| SHELL_GROUPS.iter().any(|g| g.load(Ordering::SeqCst) == pid);
    let ours = |pid: i32| {
        pid > 0
            && !shell(pid)
            && (is_child(pid)
                || WORKER_GROUPS
                    .iter()
                    .chain(&ENDED)
                    .any(|g| g.load(Ordering::SeqCst) == pid))
    };
    if ours(group) || ours(sender) {
        if PLUGIN_SIGNAL
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            PLUGIN_SENDER.store(sender, Ordering::SeqCst);
        }
        return;
    }
    if INTERRUPT
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // A second one from outside: end at once, as the signal's default does.
        // SAFETY: signal and raise are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// Whether `pid` is a child of this process, running or ended but not reaped.
fn is_child(pid: i32) -> bool {
    // SAFETY: waitid with WNOHANG | WNOWAIT only asks; it reaps nothing and does not block. It
    // fails with ECHILD for a process that is not a child of the caller.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == 0
    }
}

/// Stop the run on SIGINT and SIGTERM from outside (a CI job cancelled or timed out); a second
/// one ends the process at once. Returns the flag the run watches ([`crate::RunOptions`]).
pub fn handle_signals() -> &'static AtomicI32 {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with an SA_SIGINFO handler that only uses atomics and
        // async-signal-safe calls; sa_mask is emptied before use.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    &INTERRUPT
}
