//! Running as process 1 of a PID namespace: a container started without an init process
//! (`docker run` without `--init`, a pod without a shared process namespace) makes the program
//! its process 1, the parent of every orphan in the container. The guards of the workers'
//! process groups ([`crate::supervise::start_group_guard`]) are orphans by design, and a
//! plugin's helpers may be too: nothing would reap them, and each would hold a process id (and
//! a place under the container's process limit) until the program ends.

use std::io;

/// When this process is process 1 of its PID namespace, fork: the program goes on in the child
/// (this call returns there), and this process stays a minimal init. It reaps every process that
/// ends under it, passes on to the program each signal sent to it with kill(2) (`docker stop`'s
/// SIGTERM; a terminal's Ctrl-C reaches the program directly), and exits as the program does:
/// with its exit code, or `128 + N` when signal N ended it. Otherwise it does nothing.
///
/// Call it first thing in `main`, while the process has one thread.
pub fn init_if_process_1() -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        return Ok(());
    }
    // SAFETY: signal masks of this (single-threaded) process, and fork; the parent never
    // returns into the program (`reap` ends in _exit).
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        // Blocked before the fork, so no signal meant for the program is lost in between.
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        let program = libc::fork();
        if program > 0 {
            reap(program, &all);
        }
        let e = (program < 0).then(io::Error::last_os_error);
        libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        e.map_or(Ok(()), Err)
    }
}

/// The init's life: wait for signals, reap on SIGCHLD, pass the others on to `program`.
///
/// # Safety
/// Call only with every signal blocked; it never returns.
unsafe fn reap(program: libc::pid_t, signals: &libc::sigset_t) -> ! {
    loop {
        // SAFETY: sigwaitinfo fills `info`, a zeroed siginfo_t; waitpid, kill and _exit are
        // plain system calls.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(signals, &mut info);
            if sig == libc::SIGCHLD {
                loop {
                    let mut status = 0;
                    let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                    if pid <= 0 {
                        break;
                    }
                    if pid == program {
                        libc::_exit(if libc::WIFEXITED(status) {
                            libc::WEXITSTATUS(status)
                        } else {
                            128 + libc::WTERMSIG(status)
                        });
                    }
                }
            } else if sig > 0 && info.si_code != libc::SI_KERNEL {
                // A signal the kernel sent (a terminal's, to its whole foreground process
                // group) reached the program too; one sent with kill(2) reached only this
                // process.
                libc::kill(program, sig);
            }
        }
    }
}
