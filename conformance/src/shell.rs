//! The profile's shell commands: `setup`, `teardown`, `change_command`.
//!
//! Each runs as `sh -c COMMAND` in a session (and so a process group) of its own, without a
//! controlling terminal, so that whatever it starts can be killed with it: at once when the run
//! is interrupted while it runs, and, for what it leaves running in the background (a service
//! the checks use, say), when the run ends. A small guard process in the group kills the group if
//! the runner itself dies first (a second Ctrl-C, a `kill -9`), so nothing a command started
//! outlives the runner. Their output goes to the runner's standard error: standard output
//! carries the report alone.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// How a command did not succeed.
#[derive(Debug)]
pub(crate) enum Stop {
    /// It could not start or failed; the message says how.
    Failed(String),
    /// A signal (SIGINT, SIGTERM) came while it ran: its process group was killed.
    Interrupted(i32),
}

/// The process group of a command that has ended: what it left running there is killed (and
/// the command's process reaped) when this is dropped.
#[derive(Debug)]
pub(crate) struct Group {
    child: Child,
    /// Holds the guard's pipe open; the guard kills the group when it closes.
    _guard: File,
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the command's own process group. Its leader is not reaped yet (see
        // `exited`), so the group's id cannot have been handed to another process.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
        crate::signals::remove_shell(self.child.id());
    }
}

/// Where the commands run and what they get.
pub(crate) struct Shell<'a> {
    /// Working directory (the profile's).
    pub cwd: &'a Path,
    /// Extra environment.
    pub env: Vec<(&'static str, &'a Path)>,
    /// The run's interrupt: a signal number stored here while a command runs kills it.
    pub interrupt: Option<&'static AtomicI32>,
}

impl Shell<'_> {
    fn interrupted(&self) -> Option<i32> {
        self.interrupt
            .map(|a| a.load(Ordering::SeqCst))
            .filter(|s| *s != 0)
    }

    /// Run `cmd` (the profile's `what` command) to its end. An interrupt kills its process
    /// group at once, and one that came before it would start keeps it from starting. The
    /// [`Group`] returned, also when the command failed, kills what the command left running
    /// when dropped.
    pub(crate) fn run(&self, what: &str, cmd: &str) -> (Option<Group>, Result<(), Stop>) {
        if let Some(sig) = self.interrupted() {
            return (None, Err(Stop::Interrupted(sig)));
        }
        self.start(what, cmd, None)
    }

    /// Run the teardown `cmd` as [`Shell::run`] runs a command, but also after an interrupt:
    /// only an interrupt that comes while it runs, when none had come before, stops it.
    pub(crate) fn run_teardown(&self, cmd: &str) -> (Option<Group>, Result<(), Stop>) {
        self.start("teardown", cmd, self.interrupted())
    }

    /// Start `cmd` and wait for its end, or for an interrupt when `before` (the interrupt that
    /// had come when it started) is `None`.
    fn start(
        &self,
        what: &str,
        cmd: &str,
        before: Option<i32>,
    ) -> (Option<Group>, Result<(), Stop>) {
        let cant =
            |e: std::io::Error| Stop::Failed(format!("{what} command: cannot run `{cmd}`: {e}"));
        let (guard_r, guard_w) = match aapi_host::supervise::cloexec_pipe() {
            Ok(p) => p,
            Err(e) => return (None, Err(cant(e))),
        };
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .current_dir(self.cwd)
            .stdin(Stdio::null())
            .stdout(to_stderr())
            .stderr(to_stderr());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let guard_fd = guard_r.as_raw_fd();
        // A session of its own, so also a process group of its own, without a controlling
        // terminal: a command that would prompt on the terminal (sudo, ssh) fails at once
        // instead of being stopped for good as a background job of the runner's terminal.
        // SAFETY: setsid and start_group_guard make only async-signal-safe system calls and do
        // not allocate; they run in the forked child before it executes the shell.
        unsafe {
            c.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                aapi_host::supervise::start_group_guard(guard_fd).map(drop)
            });
        }
        let child = match c.spawn() {
            Ok(ch) => ch,
            Err(e) => return (None, Err(cant(e))),
        };
        // A signal its processes send the runner is the profile's, not the plugin's.
        crate::signals::add_shell(child.id());
        drop(guard_r);
        let group = Group {
            child,
            _guard: File::from(guard_w),
        };
        loop {
            if let Some(status) = exited(&group.child) {
                let result = if status.success() {
                    Ok(())
                } else {
                    Err(Stop::Failed(format!(
                        "{what} command: `{cmd}` failed: {status}"
                    )))
                };
                return (Some(group), result);
            }
            if before.is_none()
                && let Some(sig) = self.interrupted()
            {
                drop(group);
                return (None, Err(Stop::Interrupted(sig)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The runner's standard error, for a command's output: standard output carries the report
/// alone.
pub(crate) fn to_stderr() -> Stdio {
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// How `child` ended, once it has, without reaping it (so its id stays its own).
fn exited(child: &Child) -> Option<ExitStatus> {
    // SAFETY: waitid fills `info`, a zeroed siginfo_t; WNOWAIT leaves the child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            child.id() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if r != 0 || info.si_pid() == 0 {
            return None;
        }
        let status = info.si_status();
        Some(match info.si_code {
            libc::CLD_EXITED => ExitStatus::from_raw((status & 0xff) << 8),
            _ => ExitStatus::from_raw(status & 0x7f),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell in `dir` whose interrupt is `sig`.
    fn shell<'a>(dir: &'a Path, sig: &'static AtomicI32) -> Shell<'a> {
        Shell {
            cwd: dir,
            env: Vec::new(),
            interrupt: Some(sig),
        }
    }

    #[test]
    fn a_command_does_not_start_after_an_interrupt_but_the_teardown_does() {
        static SIG: AtomicI32 = AtomicI32::new(libc::SIGTERM);
        let dir = tempfile::tempdir().unwrap();
        let sh = shell(dir.path(), &SIG);
        for what in ["setup", "change"] {
            let (group, r) = sh.run(what, ": > ran");
            assert!(group.is_none(), "{what}");
            assert!(
                matches!(r, Err(Stop::Interrupted(libc::SIGTERM))),
                "{what}: {r:?}"
            );
            assert!(!dir.path().join("ran").exists(), "{what} ran");
        }
        let (_, r) = sh.run_teardown(": > ran; sleep 0.1; : > ended");
        assert!(r.is_ok(), "{r:?}");
        assert!(
            dir.path().join("ended").exists(),
            "the teardown ran to its end"
        );
    }

    #[test]
    fn an_interrupt_while_a_command_runs_kills_it() {
        static SIG: AtomicI32 = AtomicI32::new(0);
        let dir = tempfile::tempdir().unwrap();
        let sh = shell(dir.path(), &SIG);
        let t = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            SIG.store(libc::SIGINT, Ordering::SeqCst);
        });
        let started = std::time::Instant::now();
        let (group, r) = sh.run_teardown("sleep 20");
        t.join().unwrap();
        assert!(group.is_none());
        assert!(matches!(r, Err(Stop::Interrupted(libc::SIGINT))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
