//! Raw entry-point calls, for what the safe client will not do: NULL pointers, bad handles,
//! small buffers, calls out of order, struct sizes that lie.
//!
//! [`Api`] has one method per entry point, with the C parameters in C order, and returns the
//! plugin's code as it is; its pointer parameters are those of [`super::ffi`]. Each call is
//! announced to the hooks like a client call, so the supervisor sees it and enforces its
//! deadline. A few helpers on top make the calls probes repeat.

use super::ffi::{DiscoveryC, In, InBuf, Out, OutBuf};
use crate::pipeline::READ_BUF;
use crate::worker::{Ctx, code_name, cpath, new_prop, show};
use aapi_host::loader::EntryPoints;
use aapi_sdk::abi::*;
use std::ffi::{c_char, c_int, c_void};

/// The entry points of the loaded plugin, called raw on behalf of a worker.
#[derive(Clone, Copy)]
pub struct Api<'a> {
    ctx: &'a Ctx,
    e: EntryPoints,
}

/// The value behind a size in/out parameter before the call (0 for NULL).
fn declared(size: *mut usize) -> usize {
    if size.is_null() {
        return 0;
    }
    // SAFETY: `size` comes from `Out::ptr`: NULL or a valid, initialised usize.
    unsafe { *size }
}

impl<'a> Api<'a> {
    /// The entry points `e`, called on behalf of `ctx`.
    pub fn new(ctx: &'a Ctx, e: &EntryPoints) -> Self {
        Api { ctx, e: *e }
    }

    /// `aapi_pgn_init`.
    pub fn pgn_init(
        &self,
        host: impl In<aapi_host_info_t>,
        info: impl Out<aapi_plugin_info_t>,
    ) -> c_int {
        let (host, info) = (host.ptr(), info.ptr());
        // SAFETY: each pointer is NULL or valid for the call (`super::ffi` makes them so).
        self.ctx
            .raw("aapi_pgn_init", || unsafe { (self.e.pgn_init)(host, info) })
    }

    /// `aapi_pgn_claim`.
    pub fn pgn_claim(&self, workload_type: impl In<c_char>) -> c_int {
        let t = workload_type.ptr();
        // SAFETY: as above.
        self.ctx
            .raw("aapi_pgn_claim", || unsafe { (self.e.pgn_claim)(t) })
    }

    /// `aapi_terminate`.
    pub fn terminate(&self) -> c_int {
        // SAFETY: no arguments.
        self.ctx
            .raw("aapi_terminate", || unsafe { (self.e.terminate)() })
    }

    /// `aapi_get_last_error`.
    pub fn get_last_error(&self, buf: impl OutBuf, size: impl Out<usize>) -> c_int {
        let size = size.ptr();
        let buf = buf.ptr(declared(size)) as *mut c_char;
        // SAFETY: as above; the buffer holds the size declared.
        self.ctx.raw("aapi_get_last_error", || unsafe {
            (self.e.get_last_error)(buf, size)
        })
    }

    /// `aapi_open_server`. The plugin may keep `def`: pass one from [`super::ffi::raw_session`].
    pub fn open_server(
        &self,
        server: impl In<c_char>,
        def: impl In<aapi_session_def_t>,
        out: impl Out<aapi_server_t>,
    ) -> c_int {
        let (server, def, out) = (server.ptr(), def.ptr(), out.ptr());
        // SAFETY: as above.
        self.ctx.raw("aapi_open_server", || unsafe {
            (self.e.open_server)(server, def, out)
        })
    }

    /// `aapi_close_server`.
    pub fn close_server(&self, server: aapi_server_t) -> c_int {
        // SAFETY: a plain value.
        self.ctx.raw("aapi_close_server", || unsafe {
            (self.e.close_server)(server)
        })
    }

    /// `aapi_get_server_prop`.
    pub fn get_server_prop(
        &self,
        server: aapi_server_t,
        info: impl Out<aapi_server_info_t>,
    ) -> c_int {
        let info = info.ptr();
        // SAFETY: as above.
        self.ctx.raw("aapi_get_server_prop", || unsafe {
            (self.e.get_server_prop)(server, info)
        })
    }

    /// `aapi_discovery`.
    #[allow(clippy::too_many_arguments)] // the C signature
    pub fn discovery(
        &self,
        server: aapi_server_t,
        selections: impl In<*const c_char>,
        backup_hosts: impl In<*const c_char>,
        dir: impl In<c_char>,
        suffix: impl In<c_char>,
        schedule: u32,
        snapid: impl Out<aapi_snapid_t>,
    ) -> c_int {
        let (sel, hosts) = (selections.ptr(), backup_hosts.ptr());
        let (dir, suffix, snapid) = (dir.ptr(), suffix.ptr(), snapid.ptr());
        // SAFETY: as above.
        self.ctx.raw("aapi_discovery", || unsafe {
            (self.e.discovery)(server, sel, hosts, dir, suffix, schedule, snapid)
        })
    }

    /// `aapi_postprocess`.
    #[allow(clippy::too_many_arguments)] // the C signature
    pub fn postprocess(
        &self,
        server: aapi_server_t,
        selections: impl In<*const c_char>,
        backup_hosts: impl In<*const c_char>,
        dir: impl In<c_char>,
        suffix: impl In<c_char>,
        schedule: u32,
        snapid: impl In<aapi_snapid_t>,
    ) -> c_int {
        let (sel, hosts) = (selections.ptr(), backup_hosts.ptr());
        let (dir, suffix, snapid) = (dir.ptr(), suffix.ptr(), snapid.ptr());
        // SAFETY: as above.
        self.ctx.raw("aapi_postprocess", || unsafe {
            (self.e.postprocess)(server, sel, hosts, dir, suffix, schedule, snapid)
        })
    }

    /// `aapi_discovery` with the arguments `d`.
    pub fn discovery_with(
        &self,
        server: aapi_server_t,
        d: &DiscoveryC,
        schedule: u32,
        snapid: impl Out<aapi_snapid_t>,
    ) -> c_int {
        let (sel, hosts) = (&d.selections, &d.hosts);
        self.discovery(server, sel, hosts, &d.dir, &d.suffix, schedule, snapid)
    }

    /// `aapi_postprocess` with the arguments `d`.
    pub fn postprocess_with(
        &self,
        server: aapi_server_t,
        d: &DiscoveryC,
        schedule: u32,
        snapid: impl In<aapi_snapid_t>,
    ) -> c_int {
        let (sel, hosts) = (&d.selections, &d.hosts);
        self.postprocess(server, sel, hosts, &d.dir, &d.suffix, schedule, snapid)
    }

    /// `aapi_get_snappath_from_realpath`.
    pub fn get_snappath_from_realpath(
        &self,
        server: aapi_server_t,
        snapname: impl In<c_char>,
        realpath: impl In<c_char>,
        buf: impl OutBuf,
        size: impl Out<usize>,
    ) -> c_int {
        let (snapname, realpath, size) = (snapname.ptr(), realpath.ptr(), size.ptr());
        let buf = buf.ptr(declared(size)) as *mut c_char;
        // SAFETY: as above; the buffer holds the size declared.
        self.ctx.raw("aapi_get_snappath_from_realpath", || unsafe {
            (self.e.get_snappath_from_realpath)(server, snapname, realpath, buf, size)
        })
    }

    /// `aapi_open_object`.
    pub fn open_object(
        &self,
        server: aapi_server_t,
        path: impl In<c_char>,
        flags: u32,
        out: impl Out<aapi_object_t>,
    ) -> c_int {
        let (path, out) = (path.ptr(), out.ptr());
        // SAFETY: as above.
        self.ctx.raw("aapi_open_object", || unsafe {
            (self.e.open_object)(server, path, flags, out)
        })
    }

    /// `aapi_create_object`.
    pub fn create_object(
        &self,
        server: aapi_server_t,
        path: impl In<c_char>,
        prop: impl In<aapi_object_prop_t>,
        flags: u32,
        out: impl Out<aapi_object_t>,
    ) -> c_int {
        let (path, prop, out) = (path.ptr(), prop.ptr(), out.ptr());
        // SAFETY: as above.
        self.ctx.raw("aapi_create_object", || unsafe {
            (self.e.create_object)(server, path, prop, flags, out)
        })
    }

    /// `aapi_delete_object`.
    pub fn delete_object(&self, server: aapi_server_t, path: impl In<c_char>) -> c_int {
        let path = path.ptr();
        // SAFETY: as above.
        self.ctx.raw("aapi_delete_object", || unsafe {
            (self.e.delete_object)(server, path)
        })
    }

    /// `aapi_read_object` of up to `size` bytes into `buf`.
    pub fn read_object(
        &self,
        object: aapi_object_t,
        buf: impl OutBuf,
        size: usize,
        bytes_read: impl Out<usize>,
    ) -> c_int {
        let (buf, n) = (buf.ptr(size) as *mut c_void, bytes_read.ptr());
        // SAFETY: as above; the buffer holds `size` bytes.
        self.ctx.raw("aapi_read_object", || unsafe {
            (self.e.read_object)(object, buf, size, n)
        })
    }

    /// `aapi_write_object` of `len` bytes of `data`.
    pub fn write_object(&self, object: aapi_object_t, data: impl InBuf, len: usize) -> c_int {
        let data = data.ptr(len) as *const c_void;
        // SAFETY: as above; the data holds `len` bytes.
        self.ctx.raw("aapi_write_object", || unsafe {
            (self.e.write_object)(object, data, len)
        })
    }

    /// `aapi_flush`.
    pub fn flush(&self, object: aapi_object_t) -> c_int {
        // SAFETY: a plain value.
        self.ctx
            .raw("aapi_flush", || unsafe { (self.e.flush)(object) })
    }

    /// `aapi_close_object`.
    pub fn close_object(&self, object: aapi_object_t) -> c_int {
        // SAFETY: a plain value.
        self.ctx.raw("aapi_close_object", || unsafe {
            (self.e.close_object)(object)
        })
    }

    /// `aapi_get_object_prop`.
    pub fn get_object_prop(
        &self,
        object: aapi_object_t,
        prop: impl Out<aapi_object_prop_t>,
    ) -> c_int {
        let prop = prop.ptr();
        // SAFETY: as above.
        self.ctx.raw("aapi_get_object_prop", || unsafe {
            (self.e.get_object_prop)(object, prop)
        })
    }

    /// `aapi_get_object_prop_byname`.
    pub fn get_object_prop_byname(
        &self,
        server: aapi_server_t,
        path: impl In<c_char>,
        prop: impl Out<aapi_object_prop_t>,
    ) -> c_int {
        let (path, prop) = (path.ptr(), prop.ptr());
        // SAFETY: as above.
        self.ctx.raw("aapi_get_object_prop_byname", || unsafe {
            (self.e.get_object_prop_byname)(server, path, prop)
        })
    }

    /// `aapi_set_object_utimes`.
    pub fn set_object_utimes(
        &self,
        server: aapi_server_t,
        path: impl In<c_char>,
        atime: impl In<aapi_time_t>,
        mtime: impl In<aapi_time_t>,
    ) -> c_int {
        let (path, atime, mtime) = (path.ptr(), atime.ptr(), mtime.ptr());
        // SAFETY: as above.
        self.ctx.raw("aapi_set_object_utimes", || unsafe {
            (self.e.set_object_utimes)(server, path, atime, mtime)
        })
    }

    /// `aapi_restore_preprocess`.
    pub fn restore_preprocess(
        &self,
        server: aapi_server_t,
        info: impl In<aapi_restore_info_t>,
    ) -> c_int {
        let info = info.ptr();
        // SAFETY: as above.
        self.ctx.raw("aapi_restore_preprocess", || unsafe {
            (self.e.restore_preprocess)(server, info)
        })
    }

    /// `aapi_restore_postprocess`.
    pub fn restore_postprocess(&self, server: aapi_server_t, status: c_int) -> c_int {
        // SAFETY: plain values.
        self.ctx.raw("aapi_restore_postprocess", || unsafe {
            (self.e.restore_postprocess)(server, status)
        })
    }

    /// Close `object` if `code` says the call that made it succeeded (a call expected to fail
    /// that did not).
    pub fn close_if_ok(&self, code: c_int, object: aapi_object_t) {
        if code == AAPI_EOK {
            self.close_object(object);
        }
    }

    /// A read of up to 16 bytes, for reads expected to fail.
    pub fn try_read(&self, object: aapi_object_t) -> c_int {
        let mut buf = [0u8; 16];
        let mut n = 0usize;
        self.read_object(object, &mut buf, 16, &mut n)
    }

    /// Write all of `data` in chunks of the backup's read size.
    pub fn write_all(&self, object: aapi_object_t, data: &[u8]) -> Result<(), String> {
        for chunk in data.chunks(READ_BUF) {
            let c = self.write_object(object, chunk, chunk.len());
            if c != AAPI_EOK {
                return Err(format!("aapi_write_object returned {}", code_name(c)));
            }
        }
        Ok(())
    }

    /// `aapi_get_object_prop_byname` of `path`: the code and the properties.
    pub fn byname(&self, server: aapi_server_t, path: &[u8]) -> (c_int, aapi_object_prop_t) {
        let p = cpath(path);
        let mut prop = new_prop();
        let c = self.get_object_prop_byname(server, &p, &mut prop);
        (c, prop)
    }

    /// This thread's last error message ("" when the call fails).
    pub fn last_error(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let mut size = buf.len();
        if self.get_last_error(&mut buf, &mut size) != AAPI_EOK {
            return String::new();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }

    /// SHA-256 of an object read with 4 KiB reads; at most `max` bytes are read, beyond them
    /// the stream has no end of data (an OBJ-1 matter).
    pub fn digest(&self, server: aapi_server_t, path: &[u8], max: u64) -> Result<String, String> {
        use sha2::Digest;
        const CHUNK: usize = 4096;
        let c = cpath(path);
        let mut o = 0u64;
        let code = self.open_object(server, &c, AAPI_OPEN_READ, &mut o);
        if code != AAPI_EOK {
            return Err(format!(
                "aapi_open_object({}) returned {}",
                show(path),
                code_name(code)
            ));
        }
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; CHUNK + 64];
        let mut total = 0u64;
        let r = loop {
            let mut n = 0usize;
            let code = self.read_object(o, &mut buf, CHUNK, &mut n);
            if code != AAPI_EOK {
                break Err(format!(
                    "aapi_read_object({}) returned {}",
                    show(path),
                    code_name(code)
                ));
            }
            if n == 0 {
                break Ok(crate::tree::hex(&h.finalize()));
            }
            let n = n.min(CHUNK);
            total += n as u64;
            if total > max {
                break Err("no end of data".into());
            }
            h.update(&buf[..n]);
        };
        self.close_object(o);
        r
    }
}
