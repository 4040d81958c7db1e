//! The framework side of the plugin-layer tests: host callbacks that record what the plugin
//! does, session builders, and safe wrappers over the exported entry points. The test binary
//! defines those entry points itself with `export_plugin!`, so the wrappers call straight into
//! the layer under test through the prototypes of `aapi_sdk::abi`.
#![allow(dead_code)]

pub use aapi_sdk::abi::*;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Log lines the plugin sent (level, text).
pub static LOG: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());
/// When true, the keepalive callback answers `AAPI_ECANCELLED`.
pub static CANCEL: AtomicBool = AtomicBool::new(false);
/// Number of keepalive callbacks received.
pub static KEEPALIVES: AtomicUsize = AtomicUsize::new(0);
/// The secret served under the key "big": longer than the SDK's first buffer.
pub const BIG_SECRET_LEN: usize = 1000;

static SERIAL: Mutex<()> = Mutex::new(());

/// Lock a mutex even if a failed test poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tests share one plugin instance: run them one at a time, each from a terminated plugin.
pub fn serial() -> MutexGuard<'static, ()> {
    let g = lock(&SERIAL);
    assert_eq!(terminate(), AAPI_EOK);
    lock(&LOG).clear();
    CANCEL.store(false, Ordering::SeqCst);
    KEEPALIVES.store(0, Ordering::SeqCst);
    g
}

/// The log lines recorded so far.
pub fn log_lines() -> Vec<(u32, String)> {
    lock(&LOG).clone()
}

unsafe extern "C" fn log_cb(_ctx: *mut c_void, level: u32, message: *const c_char) {
    // SAFETY: the ABI makes `message` a NUL-terminated string valid during the call.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    lock(&LOG).push((level, text));
}

unsafe extern "C" fn keepalive_cb(_ctx: *mut c_void) -> c_int {
    KEEPALIVES.fetch_add(1, Ordering::SeqCst);
    if CANCEL.load(Ordering::SeqCst) {
        AAPI_ECANCELLED
    } else {
        AAPI_EOK
    }
}

unsafe extern "C" fn credential_cb(
    _ctx: *mut c_void,
    key: *const c_char,
    buf: *mut c_char,
    buf_size: *mut usize,
) -> c_int {
    // SAFETY: the ABI makes `key` a NUL-terminated string valid during the call.
    let secret: Vec<u8> = match unsafe { CStr::from_ptr(key) }.to_bytes() {
        b"pw" => b"secret".to_vec(),
        b"big" => vec![b'x'; BIG_SECRET_LEN],
        _ => return AAPI_ENOENT,
    };
    let need = secret.len() + 1;
    // SAFETY: buf_size is a valid in/out location per the callback contract.
    unsafe {
        if *buf_size < need {
            *buf_size = need;
            return AAPI_EBUFSIZE;
        }
        std::ptr::copy_nonoverlapping(secret.as_ptr(), buf as *mut u8, secret.len());
        *buf.add(secret.len()) = 0;
        *buf_size = need;
    }
    AAPI_EOK
}

/// A value of a plain-data ABI struct with every byte set to `byte` (a sentinel to prove that
/// a failed call wrote nothing).
pub fn filled<T: Copy>(byte: u8) -> T {
    let mut v = MaybeUninit::<T>::uninit();
    // SAFETY: only used with the ABI's plain-data structs (integers, raw pointers, arrays), for
    // which every bit pattern is a valid value.
    unsafe {
        std::ptr::write_bytes(v.as_mut_ptr(), byte, 1);
        v.assume_init()
    }
}

/// The bytes of a plain-data value.
pub fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: reading the initialised bytes of a plain-data value.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()).to_vec() }
}

/// A C string that lives for the rest of the test process.
pub fn cs(s: &str) -> *const c_char {
    Box::leak(CString::new(s).unwrap().into_boxed_c_str()).as_ptr()
}

/// A NULL-terminated array of C strings that lives for the rest of the process.
pub fn cs_array(items: &[&str]) -> *const *const c_char {
    let mut v: Vec<*const c_char> = items.iter().map(|s| cs(s)).collect();
    v.push(std::ptr::null());
    Box::leak(v.into_boxed_slice()).as_ptr()
}

/// A valid handshake struct.
pub fn host_info() -> aapi_host_info_t {
    aapi_host_info_t {
        struct_size: size_of::<aapi_host_info_t>() as u32,
        abi_major: AAPI_ABI_MAJOR,
        abi_minor: AAPI_ABI_MINOR,
        framework_name: c"layer-tests".as_ptr(),
        framework_version: c"1".as_ptr(),
        callback_ctx: std::ptr::null_mut(),
        log_callback: Some(log_cb),
    }
}

/// An all-zero plugin info with its struct size set, as a framework prepares it.
pub fn plugin_info_out() -> aapi_plugin_info_t {
    let mut p: aapi_plugin_info_t = filled(0);
    p.struct_size = size_of::<aapi_plugin_info_t>() as u32;
    p
}

/// Initialise the plugin; panics unless it succeeds.
pub fn init() -> aapi_plugin_info_t {
    let hi = host_info();
    let mut pi = plugin_info_out();
    assert_eq!(pgn_init(&hi, &mut pi), AAPI_EOK, "{}", last_error());
    pi
}

/// Initialise and claim "test".
pub fn init_claim() {
    init();
    assert_eq!(pgn_claim(c"test".as_ptr()), AAPI_EOK, "{}", last_error());
}

/// A session definition for `op` with `props` and a budget, living for the rest of the process.
pub fn session_with(op: u32, props: &[(&str, &str)], budget_ms: u32) -> *mut aapi_session_def_t {
    let props: Vec<aapi_property_t> = props
        .iter()
        .map(|(k, v)| aapi_property_t {
            key: cs(k),
            value: cs(v),
        })
        .collect();
    let count = props.len();
    let props = Box::leak(props.into_boxed_slice());
    Box::leak(Box::new(aapi_session_def_t {
        struct_size: size_of::<aapi_session_def_t>() as u32,
        abi_major: AAPI_ABI_MAJOR,
        abi_minor: AAPI_ABI_MINOR,
        sd_operation: op,
        sd_schedtype: AAPI_SCHED_FULL,
        sd_job_id: cs("job-1"),
        sd_backup_host: cs("bh1"),
        sd_snapid: cs(""),
        sd_properties: if count == 0 {
            std::ptr::null()
        } else {
            props.as_ptr()
        },
        sd_property_count: count,
        sd_call_budget_ms: budget_ms,
        sd_reserved: 0,
        sd_callback_ctx: std::ptr::null_mut(),
        sd_log_callback: Some(log_cb),
        sd_keepalive_callback: Some(keepalive_cb),
        sd_credential_callback: Some(credential_cb),
    }))
}

/// A session definition for `op` with no properties and the default budget.
pub fn session(op: u32) -> *mut aapi_session_def_t {
    session_with(op, &[], AAPI_DEFAULT_CALL_BUDGET_MS)
}

/// Open a session on server `name`; panics unless it succeeds.
pub fn open_named(name: &str, def: *const aapi_session_def_t) -> aapi_server_t {
    let mut h = 0;
    assert_eq!(
        open_server(cs(name), def, &mut h),
        AAPI_EOK,
        "{}",
        last_error()
    );
    assert_ne!(h, 0);
    h
}

/// Open a session for `op`; panics unless it succeeds.
pub fn open(op: u32) -> aapi_server_t {
    open_named("srv", session(op))
}

/// This thread's last-error message.
pub fn last_error() -> String {
    let mut buf = vec![0u8; 4096];
    let mut size = buf.len();
    let rc = get_last_error(buf.as_mut_ptr() as *mut c_char, &mut size);
    assert_eq!(rc, AAPI_EOK);
    String::from_utf8_lossy(&buf[..size - 1]).into_owned()
}

/// An object property struct for `obj_type` with its struct size set.
pub fn prop(obj_type: u32) -> aapi_object_prop_t {
    aapi_object_prop_t {
        struct_size: size_of::<aapi_object_prop_t>() as u32,
        obj_type,
        valid: AAPI_PROP_MODE,
        mode: 0o644,
        ..Default::default()
    }
}

/// A restore info struct.
pub fn restore_info(target_root: &str, total_bytes: u64) -> aapi_restore_info_t {
    aapi_restore_info_t {
        struct_size: size_of::<aapi_restore_info_t>() as u32,
        reserved: 0,
        target_root: cs(target_root),
        total_bytes,
        object_count: 1,
    }
}

/// A snapshot id struct holding `id`.
pub fn snapid(id: &str) -> aapi_snapid_t {
    let mut s = aapi_snapid_t {
        id: [0; AAPI_SNAPID_MAX],
    };
    for (d, b) in s.id.iter_mut().zip(id.bytes()) {
        *d = b as c_char;
    }
    s
}

// Safe wrappers over the entry points. Every pointer passed is NULL or points to a live value
// of the right type (a deliberately wrong `struct_size` included), which is what the layer must
// cope with.

pub fn pgn_init(h: *const aapi_host_info_t, p: *mut aapi_plugin_info_t) -> c_int {
    // SAFETY: pointers are NULL or live test values (see above).
    unsafe { aapi_pgn_init(h, p) }
}
pub fn pgn_claim(w: *const c_char) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_pgn_claim(w) }
}
pub fn open_server(s: *const c_char, d: *const aapi_session_def_t, h: *mut aapi_server_t) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_open_server(s, d, h) }
}
pub fn close_server(s: aapi_server_t) -> c_int {
    // SAFETY: no pointers.
    unsafe { aapi_close_server(s) }
}
pub fn get_server_prop(s: aapi_server_t, i: *mut aapi_server_info_t) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_get_server_prop(s, i) }
}
pub fn discovery(
    s: aapi_server_t,
    sel: *const *const c_char,
    bh: *const *const c_char,
    dir: *const c_char,
    sfx: *const c_char,
    st: u32,
    id: *mut aapi_snapid_t,
) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_discovery(s, sel, bh, dir, sfx, st, id) }
}
pub fn postprocess(
    s: aapi_server_t,
    sel: *const *const c_char,
    bh: *const *const c_char,
    dir: *const c_char,
    sfx: *const c_char,
    st: u32,
    id: *const aapi_snapid_t,
) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_postprocess(s, sel, bh, dir, sfx, st, id) }
}
pub fn snappath(
    s: aapi_server_t,
    n: *const c_char,
    r: *const c_char,
    b: *mut c_char,
    z: *mut usize,
) -> c_int {
    // SAFETY: as above; `b` holds at least `*z` bytes wherever the tests pass one.
    unsafe { aapi_get_snappath_from_realpath(s, n, r, b, z) }
}
pub fn open_object(s: aapi_server_t, p: *const c_char, f: u32, o: *mut aapi_object_t) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_open_object(s, p, f, o) }
}
pub fn create_object(
    s: aapi_server_t,
    p: *const c_char,
    pr: *const aapi_object_prop_t,
    f: u32,
    o: *mut aapi_object_t,
) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_create_object(s, p, pr, f, o) }
}
pub fn delete_object(s: aapi_server_t, p: *const c_char) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_delete_object(s, p) }
}
pub fn read_object(o: aapi_object_t, b: *mut u8, n: usize, r: *mut usize) -> c_int {
    // SAFETY: as above; `b` holds at least `n` bytes wherever the tests pass one.
    unsafe { aapi_read_object(o, b as *mut c_void, n, r) }
}
pub fn write_object(o: aapi_object_t, b: *const u8, n: usize) -> c_int {
    // SAFETY: as above; `b` holds at least `n` bytes wherever the tests pass one.
    unsafe { aapi_write_object(o, b as *const c_void, n) }
}
pub fn flush(o: aapi_object_t) -> c_int {
    // SAFETY: no pointers.
    unsafe { aapi_flush(o) }
}
pub fn close_object(o: aapi_object_t) -> c_int {
    // SAFETY: no pointers.
    unsafe { aapi_close_object(o) }
}
pub fn get_object_prop(o: aapi_object_t, p: *mut aapi_object_prop_t) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_get_object_prop(o, p) }
}
pub fn get_object_prop_byname(
    s: aapi_server_t,
    p: *const c_char,
    pr: *mut aapi_object_prop_t,
) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_get_object_prop_byname(s, p, pr) }
}
pub fn set_object_utimes(
    s: aapi_server_t,
    p: *const c_char,
    a: *const aapi_time_t,
    m: *const aapi_time_t,
) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_set_object_utimes(s, p, a, m) }
}
pub fn restore_preprocess(s: aapi_server_t, i: *const aapi_restore_info_t) -> c_int {
    // SAFETY: as above.
    unsafe { aapi_restore_preprocess(s, i) }
}
pub fn restore_postprocess(s: aapi_server_t, status: c_int) -> c_int {
    // SAFETY: no pointers.
    unsafe { aapi_restore_postprocess(s, status) }
}
pub fn terminate() -> c_int {
    // SAFETY: no arguments.
    unsafe { aapi_terminate() }
}
pub fn get_last_error(b: *mut c_char, z: *mut usize) -> c_int {
    // SAFETY: as above; `b` holds at least `*z` bytes wherever the tests pass one.
    unsafe { aapi_get_last_error(b, z) }
}
