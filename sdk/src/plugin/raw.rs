//! Checked access to the raw arguments of the entry points: NULL checks, C strings, string
//! arrays, `struct_size`-guarded structs and the in/out size protocol. Every reader and writer
//! here uses unaligned accesses, so a misaligned pointer from the caller is not undefined
//! behaviour on the plugin side.

use super::error::{Error, ErrorKind, Result};
use crate::abi::*;
use core::ffi::{CStr, c_char};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

/// Most entries read from a NULL-terminated string array (a guard against a missing terminator).
const MAX_ARRAY: usize = 1 << 20;

/// `AAPI_EINVAL` when `p` is NULL.
pub(crate) fn non_null<T>(p: *const T, what: &str) -> Result<()> {
    if p.is_null() {
        Err(Error::invalid(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// A C string argument; `AAPI_EINVAL` when NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a CStr> {
    non_null(p, what)?;
    // SAFETY: non-NULL, and NUL-terminated and valid for 'a by the caller's contract.
    Ok(unsafe { CStr::from_ptr(p) })
}

/// A non-empty UTF-8 string; `AAPI_EINVAL` otherwise.
pub(crate) fn text<'a>(s: &'a CStr, what: &str) -> Result<&'a str> {
    let t = s
        .to_str()
        .map_err(|_| Error::invalid(format!("{what} is not UTF-8")))?;
    if t.is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    Ok(t)
}

/// A non-empty path from its C string; `AAPI_EINVAL` when empty.
pub(crate) fn path<'a>(s: &'a CStr, what: &str) -> Result<&'a Path> {
    if s.is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    Ok(Path::new(OsStr::from_bytes(s.to_bytes())))
}

/// The entries of a NULL-terminated array of C strings; `AAPI_EINVAL` for a NULL array, no entry,
/// or an empty entry.
///
/// # Safety
/// `p` is NULL or points to a NULL-terminated array of NUL-terminated strings valid for `'a`.
pub(crate) unsafe fn c_strings<'a>(p: *const *const c_char, what: &str) -> Result<Vec<&'a CStr>> {
    non_null(p, what)?;
    let mut out = Vec::new();
    loop {
        // SAFETY: the array is NULL-terminated by the caller's contract and we stop at the
        // terminator; unaligned read because the caller's alignment is not ours to trust.
        let entry = unsafe { ptr::read_unaligned(p.add(out.len())) };
        if entry.is_null() {
            break;
        }
        // SAFETY: a non-NULL entry is a NUL-terminated string valid for 'a.
        let s = unsafe { CStr::from_ptr(entry) };
        if s.is_empty() {
            return Err(Error::invalid(format!("{what}[{}] is empty", out.len())));
        }
        out.push(s);
        if out.len() > MAX_ARRAY {
            return Err(Error::invalid(format!(
                "{what} has more than {MAX_ARRAY} entries (missing NULL terminator?)"
            )));
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(format!("{what} has no entry")));
    }
    Ok(out)
}

/// ABI structs that start with `u32 struct_size`.
///
/// # Safety
/// Implementors are `#[repr(C)]` with a `u32 struct_size` as first field, and every bit pattern
/// the C side may write is a valid value (integers, raw pointers, nullable fn pointers).
pub(crate) unsafe trait SizedStruct: Copy {
    /// The C name, for messages.
    const NAME: &'static str;
}

// SAFETY: each of these is repr(C), starts with `u32 struct_size`, and holds only integers,
// raw pointers and Option<fn> (for which NULL is None).
unsafe impl SizedStruct for aapi_host_info_t {
    const NAME: &'static str = "aapi_host_info_t";
}
// SAFETY: as above.
unsafe impl SizedStruct for aapi_plugin_info_t {
    const NAME: &'static str = "aapi_plugin_info_t";
}
// SAFETY: as above.
unsafe impl SizedStruct for aapi_session_def_t {
    const NAME: &'static str = "aapi_session_def_t";
}
// SAFETY: as above.
unsafe impl SizedStruct for aapi_server_info_t {
    const NAME: &'static str = "aapi_server_info_t";
}
// SAFETY: as above.
unsafe impl SizedStruct for aapi_object_prop_t {
    const NAME: &'static str = "aapi_object_prop_t";
}
// SAFETY: as above.
unsafe impl SizedStruct for aapi_restore_info_t {
    const NAME: &'static str = "aapi_restore_info_t";
}

/// The caller's `struct_size` of the struct at `p` (not NULL); `AAPI_EABI` when it is smaller than
/// the ABI 1.0 size (which, at ABI 1.0, is the whole struct).
///
/// # Safety
/// `p` is non-NULL and points to at least the 4 bytes of `struct_size`, readable.
pub(crate) unsafe fn struct_size<T: SizedStruct>(p: *const T, what: &str) -> Result<u32> {
    // SAFETY: the first field is a u32 (SizedStruct), readable by the caller's contract.
    let size = unsafe { ptr::read_unaligned(p as *const u32) };
    let need = size_of::<T>();
    if (size as usize) < need {
        return Err(Error::new(
            ErrorKind::Abi,
            format!(
                "{what}->struct_size is {size}, smaller than sizeof({}) = {need} of ABI {}.{}",
                T::NAME,
                AAPI_ABI_MAJOR,
                AAPI_ABI_MINOR
            ),
        ));
    }
    Ok(size)
}

/// Copy an input struct after checking its `struct_size`.
///
/// # Safety
/// `p` is non-NULL and points to a readable struct of at least `struct_size` bytes.
pub(crate) unsafe fn read_struct<T: SizedStruct>(p: *const T, what: &str) -> Result<T> {
    // SAFETY: forwarded caller contract.
    unsafe { struct_size(p, what)? };
    // SAFETY: struct_size >= size_of::<T>() so the whole T is readable; any bit pattern is valid.
    Ok(unsafe { ptr::read_unaligned(p) })
}

/// Write `value` through an out-pointer (non-NULL, checked by the caller).
///
/// # Safety
/// `p` is non-NULL and valid for writing a `T`.
pub(crate) unsafe fn write<T>(p: *mut T, value: T) {
    // SAFETY: forwarded caller contract; unaligned for robustness.
    unsafe { ptr::write_unaligned(p, value) }
}

/// Read a `usize` in/out size (non-NULL, checked by the caller).
///
/// # Safety
/// `p` is non-NULL and readable.
pub(crate) unsafe fn read_size(p: *const usize) -> usize {
    // SAFETY: forwarded caller contract.
    unsafe { ptr::read_unaligned(p) }
}

/// The in/out size protocol: `*size` is the capacity of `buf`; when `bytes` and a NUL fit, they
/// are copied and `*size` becomes their length including the NUL; else only `*size` is written,
/// with the size needed, and the result is `AAPI_EBUFSIZE`. Nothing past the capacity is touched.
///
/// # Safety
/// `size` is non-NULL and valid for reads and writes; `buf` is valid for `*size` bytes of writes
/// (it may be NULL when `*size` is 0).
pub(crate) unsafe fn write_sized(bytes: &[u8], buf: *mut c_char, size: *mut usize) -> Result<()> {
    let need = bytes.len() + 1;
    // SAFETY: caller contract.
    let capacity = unsafe { read_size(size) };
    if capacity < need || buf.is_null() {
        // SAFETY: caller contract.
        unsafe { write(size, need) };
        return Err(Error::new(
            ErrorKind::BufferTooSmall,
            format!("buffer of {capacity} bytes is too small: {need} bytes are needed"),
        ));
    }
    // SAFETY: buf holds at least `capacity >= need` writable bytes and does not overlap `bytes`
    // (which the plugin owns); `size` is valid.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len());
        ptr::write(buf.add(bytes.len()), 0);
        write(size, need);
    }
    Ok(())
}
