//! The C side of raw calls: pointer parameters (a reference, an `Option` of one, or [`NULL`];
//! buffers checked against the size a call declares) and the values a probe passes (host
//! info, session definitions, discovery arrays, restore info, object properties), with the
//! sentinels and guards that show what a call wrote.
//!
//! What the structs point to themselves (session strings, the restore root) is the caller's
//! to keep alive, as in C: [`host_info`], [`raw_session`] and [`restore_info`] build them so.

use crate::worker::{ConfHooks, Ctx, cpath, new_prop, pbytes};
use aapi_host::client::HostHooks;
use aapi_sdk::abi::*;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::ptr::{null, null_mut};

/// The type of [`NULL`].
pub struct Null;

/// The NULL pointer, for any pointer parameter.
pub const NULL: Null = Null;

/// A pointer parameter the plugin reads: a reference, `Some`/`None`, or [`NULL`].
pub trait In<T> {
    /// The pointer passed.
    fn ptr(self) -> *const T;
}

impl<T> In<T> for &T {
    fn ptr(self) -> *const T {
        self
    }
}

impl In<c_char> for &CStr {
    fn ptr(self) -> *const c_char {
        self.as_ptr()
    }
}

impl In<c_char> for &CString {
    fn ptr(self) -> *const c_char {
        self.as_ptr()
    }
}

impl In<*const c_char> for &CStrList {
    fn ptr(self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

impl<T> In<T> for Null {
    fn ptr(self) -> *const T {
        null()
    }
}

impl<T, X: In<T>> In<T> for Option<X> {
    fn ptr(self) -> *const T {
        self.map_or(null(), In::ptr)
    }
}

/// A pointer parameter the plugin writes: a reference, `Some`/`None`, or [`NULL`]. A
/// [`Guarded`] value gives the plugin room for a `struct_size` up to 64 bytes too large.
pub trait Out<T> {
    /// The pointer passed.
    fn ptr(self) -> *mut T;
}

impl<T> Out<T> for &mut T {
    fn ptr(self) -> *mut T {
        self
    }
}

impl<T> Out<T> for &mut Guarded<T> {
    fn ptr(self) -> *mut T {
        &mut self.v
    }
}

impl<T> Out<T> for Null {
    fn ptr(self) -> *mut T {
        null_mut()
    }
}

impl<T, X: Out<T>> Out<T> for Option<X> {
    fn ptr(self) -> *mut T {
        self.map_or(null_mut(), Out::ptr)
    }
}

/// A buffer the plugin writes up to a declared size into: bytes, `Some`/`None`, or [`NULL`].
pub trait OutBuf {
    /// The pointer passed for a call that declares `size` bytes (panics if they do not fit).
    fn ptr(self, size: usize) -> *mut u8;
}

impl OutBuf for &mut [u8] {
    fn ptr(self, size: usize) -> *mut u8 {
        assert!(size <= self.len(), "a buffer of {} for {size}", self.len());
        self.as_mut_ptr()
    }
}

impl<const N: usize> OutBuf for &mut [u8; N] {
    fn ptr(self, size: usize) -> *mut u8 {
        self.as_mut_slice().ptr(size)
    }
}

impl OutBuf for &mut Vec<u8> {
    fn ptr(self, size: usize) -> *mut u8 {
        self.as_mut_slice().ptr(size)
    }
}

impl OutBuf for Null {
    fn ptr(self, _: usize) -> *mut u8 {
        null_mut()
    }
}

impl<X: OutBuf> OutBuf for Option<X> {
    fn ptr(self, size: usize) -> *mut u8 {
        self.map_or(null_mut(), |b| b.ptr(size))
    }
}

/// Bytes the plugin reads up to a declared length from: bytes or [`NULL`].
pub trait InBuf {
    /// The pointer passed for a call that declares `len` bytes (panics if they do not fit).
    fn ptr(self, len: usize) -> *const u8;
}

impl InBuf for &[u8] {
    fn ptr(self, len: usize) -> *const u8 {
        assert!(len <= self.len(), "{} bytes for {len}", self.len());
        self.as_ptr()
    }
}

impl<const N: usize> InBuf for &[u8; N] {
    fn ptr(self, len: usize) -> *const u8 {
        self.as_slice().ptr(len)
    }
}

impl InBuf for &Vec<u8> {
    fn ptr(self, len: usize) -> *const u8 {
        self.as_slice().ptr(len)
    }
}

impl InBuf for Null {
    fn ptr(self, _: usize) -> *const u8 {
        null()
    }
}

fn hooks_of(ctx: *mut c_void) -> Option<&'static ConfHooks> {
    // SAFETY: the context is the worker's ConfHooks, alive for the whole process.
    (!ctx.is_null()).then(|| unsafe { &*(ctx as *const ConfHooks) })
}

unsafe extern "C" fn raw_log(ctx: *mut c_void, level: u32, message: *const c_char) {
    if let (Some(h), false) = (hooks_of(ctx), message.is_null()) {
        // SAFETY: the ABI makes message a NUL-terminated string valid during the call.
        let m = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        h.log(level, &m);
    }
}

unsafe extern "C" fn raw_keepalive(ctx: *mut c_void) -> c_int {
    match hooks_of(ctx) {
        Some(h) if h.keepalive() => AAPI_EOK,
        _ => AAPI_ECANCELLED,
    }
}

unsafe extern "C" fn raw_credential(
    _ctx: *mut c_void,
    _key: *const c_char,
    _buf: *mut c_char,
    _size: *mut usize,
) -> c_int {
    AAPI_ENOENT
}

/// A valid host info of this ABI version, logging to the worker's hooks.
pub fn host_info(ctx: &Ctx) -> aapi_host_info_t {
    aapi_host_info_t {
        struct_size: size_of::<aapi_host_info_t>() as u32,
        abi_major: AAPI_ABI_MAJOR,
        abi_minor: AAPI_ABI_MINOR,
        framework_name: c"aapi-conformance".as_ptr(),
        framework_version: c"1".as_ptr(),
        callback_ctx: std::sync::Arc::as_ptr(&ctx.hooks) as *mut c_void,
        log_callback: Some(raw_log),
    }
}

/// A zeroed plugin info with `struct_size` set.
pub fn plugin_info() -> aapi_plugin_info_t {
    // SAFETY: plain data; all-zero is valid.
    let mut pi: aapi_plugin_info_t = unsafe { std::mem::zeroed() };
    pi.struct_size = size_of::<aapi_plugin_info_t>() as u32;
    pi
}

/// A zeroed server info with `struct_size` set.
pub fn server_info() -> aapi_server_info_t {
    aapi_server_info_t {
        struct_size: size_of::<aapi_server_info_t>() as u32,
        ..Default::default()
    }
}

/// Object properties naming only the object type `kind`.
pub fn object_prop(kind: u32) -> aapi_object_prop_t {
    let mut prop = new_prop();
    prop.obj_type = kind;
    prop
}

/// Object properties to create an object of type `kind` with: mode 0755 for a directory,
/// 0644 for anything else.
pub fn object_prop_with_mode(kind: u32) -> aapi_object_prop_t {
    let mut prop = object_prop(kind);
    prop.valid = AAPI_PROP_MODE;
    prop.mode = if kind == AAPI_OBJ_DIR { 0o755 } else { 0o644 };
    prop
}

/// A restore info for `root` (or NULL), of one object of one byte.
pub fn restore_info(root: impl In<c_char>) -> aapi_restore_info_t {
    aapi_restore_info_t {
        struct_size: size_of::<aapi_restore_info_t>() as u32,
        reserved: 0,
        target_root: root.ptr(),
        total_bytes: 1,
        object_count: 1,
    }
}

/// An empty snapshot id.
pub fn empty_snapid() -> aapi_snapid_t {
    aapi_snapid_t {
        id: [0; AAPI_SNAPID_MAX],
    }
}

/// A time of `sec` seconds and `nsec` nanoseconds.
pub fn ts(sec: i64, nsec: u32) -> aapi_time_t {
    aapi_time_t {
        sec,
        nsec,
        reserved: 0,
    }
}

/// A session definition owned by the probe (never freed: the plugin may keep the pointer).
pub struct RawSession {
    _strings: Vec<CString>,
    /// The definition, pointing at the strings above and the worker's hooks.
    pub def: aapi_session_def_t,
}

/// A valid session definition for `op`, leaked so it outlives the session.
pub fn raw_session(ctx: &Ctx, op: u32) -> &'static mut RawSession {
    let strings = vec![
        CString::new(ctx.job_id("raw")).unwrap(),
        c"localhost".to_owned(),
        c"".to_owned(),
    ];
    let def = aapi_session_def_t {
        struct_size: size_of::<aapi_session_def_t>() as u32,
        abi_major: AAPI_ABI_MAJOR,
        abi_minor: AAPI_ABI_MINOR,
        sd_operation: op,
        sd_schedtype: AAPI_SCHED_FULL,
        sd_job_id: strings[0].as_ptr(),
        sd_backup_host: strings[1].as_ptr(),
        sd_snapid: strings[2].as_ptr(),
        sd_properties: null(),
        sd_property_count: 0,
        sd_call_budget_ms: ctx.spec.setup.budget_ms,
        sd_reserved: 0,
        sd_callback_ctx: std::sync::Arc::as_ptr(&ctx.hooks) as *mut c_void,
        sd_log_callback: Some(raw_log),
        sd_keepalive_callback: Some(raw_keepalive),
        sd_credential_callback: Some(raw_credential),
    };
    Box::leak(Box::new(RawSession {
        _strings: strings,
        def,
    }))
}

/// A NULL-terminated array of C strings (selections, backup hosts).
pub struct CStrList {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CStrList {
    /// The strings of `items` (paths with a NUL become a placeholder, see [`cpath`]).
    pub fn new<B: AsRef<[u8]>>(items: impl IntoIterator<Item = B>) -> Self {
        let strings: Vec<CString> = items.into_iter().map(|i| cpath(i.as_ref())).collect();
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(null());
        CStrList {
            _strings: strings,
            ptrs,
        }
    }
}

/// The C arguments of a discovery or postprocess: selections, backup hosts, the workload
/// directory and the suffix `.wkld`.
pub struct DiscoveryC {
    /// The selections.
    pub selections: CStrList,
    /// The backup hosts.
    pub hosts: CStrList,
    /// The workload directory.
    pub dir: CString,
    /// The workload file suffix.
    pub suffix: CString,
}

impl DiscoveryC {
    /// Arguments for `selections` and `hosts`, writing workload files into `dir`.
    pub fn new(selections: &[Vec<u8>], hosts: &[&str], dir: &Path) -> Self {
        DiscoveryC {
            selections: CStrList::new(selections),
            hosts: CStrList::new(hosts),
            dir: cpath(&pbytes(dir)),
            suffix: c".wkld".to_owned(),
        }
    }
}

// --------------------------------------------------------------------------------------------
// Sentinels and guards
// --------------------------------------------------------------------------------------------

/// The byte out-parameters and guards are filled with, to see what a call wrote.
pub const SENT: u8 = 0xA5;

/// Fill a value with [`SENT`], keeping its first `keep` bytes (its `struct_size`: 4).
pub fn sentinel<T>(v: &mut T, keep: usize) {
    // SAFETY: T is a plain repr(C) value; any byte pattern is a valid value for the ABI structs
    // and integers this is used with (pointers in them are never dereferenced by the runner).
    let bytes = unsafe { std::slice::from_raw_parts_mut(v as *mut T as *mut u8, size_of::<T>()) };
    bytes[keep..].fill(SENT);
}

/// Whether a value is still [`SENT`] after its first `keep` bytes.
pub fn is_sentinel<T>(v: &T, keep: usize) -> bool {
    // SAFETY: reading the bytes of a plain value.
    let bytes = unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) };
    bytes[keep..].iter().all(|&b| b == SENT)
}

/// A value followed by 64 guard bytes.
#[repr(C)]
pub struct Guarded<T> {
    /// The value.
    pub v: T,
    guard: [u8; 64],
}

impl<T> Guarded<T> {
    /// `v` with its guard filled with [`SENT`].
    pub fn new(v: T) -> Self {
        Guarded {
            v,
            guard: [SENT; 64],
        }
    }

    /// Whether the guard bytes are untouched.
    pub fn intact(&self) -> bool {
        self.guard.iter().all(|&b| b == SENT)
    }
}

/// An ABI struct as a newer 1.x framework passes it: `struct_size` 64 bytes above the
/// plugin's size, with those 64 bytes (fields the plugin does not know) zero.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Larger<T: Copy> {
    /// The struct, its `struct_size` set to the size of the whole `Larger`.
    pub v: T,
    tail: [u8; 64],
}

impl<T: Copy> Larger<T> {
    /// `v` (an ABI struct, whose first field is its `u32` `struct_size`) with a zero tail and
    /// `struct_size` covering it.
    pub fn new(v: T) -> Self {
        let mut l = Larger { v, tail: [0; 64] };
        let size = size_of::<Self>() as u32;
        // SAFETY: every ABI struct starts with its u32 struct_size (aligned at offset 0).
        unsafe { (&mut l.v as *mut T).cast::<u32>().write(size) };
        l
    }

    /// The `struct_size` it declares.
    pub fn size(&self) -> u32 {
        size_of::<Self>() as u32
    }
}

impl<T: Copy> In<T> for &Larger<T> {
    fn ptr(self) -> *const T {
        (self as *const Larger<T>).cast()
    }
}

/// A value that ends where an unreadable page begins: a plugin that reads past its end (past
/// the `struct_size` of an ABI struct) crashes at once, whatever lies in memory after it.
pub struct AtPageEnd<T: Copy> {
    map: *mut c_void,
    len: usize,
    v: *mut T,
}

impl<T: Copy> AtPageEnd<T> {
    /// A copy of `v` placed so.
    pub fn new(v: T) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let data = size_of::<T>().div_ceil(page) * page;
        let len = data + page;
        // SAFETY: a fresh private anonymous mapping, its last page made unreadable; `v` ends
        // at that page and is aligned, a struct's size being a multiple of its alignment.
        unsafe {
            let map = libc::mmap(
                null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if map == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let guard = map.cast::<u8>().add(data);
            if libc::mprotect(guard.cast(), page, libc::PROT_NONE) != 0 {
                let e = std::io::Error::last_os_error();
                libc::munmap(map, len);
                return Err(e);
            }
            let at = guard.sub(size_of::<T>()).cast::<T>();
            at.write(v);
            Ok(AtPageEnd { map, len, v: at })
        }
    }
}

impl<T: Copy> std::ops::Deref for AtPageEnd<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: written in `new`, valid until the mapping goes in `drop`.
        unsafe { &*self.v }
    }
}

impl<T: Copy> Drop for AtPageEnd<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer referenced.
        unsafe { libc::munmap(self.map, self.len) };
    }
}
