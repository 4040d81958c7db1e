//! The codes docs/contract.md §14 lists for each function (RC-2).

use aapi_sdk::abi::*;
use std::ffi::c_int;

/// Whether §14 lists `code` for `function`. The conventions of §14 allow `AAPI_EINVAL`,
/// `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`, `AAPI_EINTERNAL` and `AAPI_ENOMEM` everywhere but in
/// `aapi_terminate` and `aapi_get_last_error`.
pub fn documented(function: &str, code: c_int) -> bool {
    if code == AAPI_EOK {
        return true;
    }
    let list: &[c_int] = match function {
        "aapi_pgn_init" => &[AAPI_EINVAL, AAPI_EABI, AAPI_ESEQUENCE],
        "aapi_pgn_claim" => &[AAPI_ENOTCLAIMED, AAPI_EINVAL, AAPI_ESEQUENCE],
        "aapi_open_server" => &[
            AAPI_EINVAL,
            AAPI_EABI,
            AAPI_ESEQUENCE,
            AAPI_ECONNECT,
            AAPI_EAUTH,
            AAPI_ECANCELLED,
        ],
        "aapi_close_server" => &[AAPI_EBADHANDLE, AAPI_EIO],
        "aapi_get_server_prop" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_EABI,
            AAPI_ECONNECT,
            AAPI_ESEQUENCE,
        ],
        "aapi_discovery" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_ESCHED_NOT_SUPPORTED,
            AAPI_ENOENT,
            AAPI_EACCES,
            AAPI_ENOTSUP,
            AAPI_EIO,
            AAPI_ESNAPSHOT,
            AAPI_ECANCELLED,
        ],
        "aapi_postprocess" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_ESNAPSHOT,
            AAPI_ECANCELLED,
        ],
        "aapi_get_snappath_from_realpath" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_EBUFSIZE,
            AAPI_ESNAPSHOT,
        ],
        "aapi_open_object" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_ENOENT,
            AAPI_EACCES,
            AAPI_EIO,
        ],
        "aapi_create_object" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_EABI,
            AAPI_EEXIST,
            AAPI_EACCES,
            AAPI_ENOSPC,
            AAPI_ENOTSUP,
            AAPI_EIO,
        ],
        "aapi_delete_object" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_ENOENT,
            AAPI_EACCES,
            AAPI_EIO,
        ],
        "aapi_read_object" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_EIO,
            AAPI_ECHANGED,
            AAPI_ECANCELLED,
        ],
        "aapi_write_object" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_ENOSPC,
            AAPI_EIO,
            AAPI_ECANCELLED,
        ],
        "aapi_flush" => &[AAPI_EBADHANDLE, AAPI_ESEQUENCE, AAPI_ENOSPC, AAPI_EIO],
        "aapi_close_object" => &[AAPI_EBADHANDLE, AAPI_ENOSPC, AAPI_EIO],
        "aapi_get_object_prop" => &[AAPI_EINVAL, AAPI_EBADHANDLE, AAPI_EABI, AAPI_EIO],
        "aapi_get_object_prop_byname" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_EABI,
            AAPI_ENOENT,
            AAPI_EACCES,
            AAPI_EIO,
        ],
        "aapi_set_object_utimes" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_ENOENT,
            AAPI_EACCES,
            AAPI_ENOTSUP,
            AAPI_EIO,
        ],
        "aapi_restore_preprocess" => &[
            AAPI_EINVAL,
            AAPI_EBADHANDLE,
            AAPI_ESEQUENCE,
            AAPI_EABI,
            AAPI_ENOENT,
            AAPI_EACCES,
            AAPI_ENOSPC,
            AAPI_ENOTSUP,
        ],
        "aapi_restore_postprocess" => &[AAPI_EBADHANDLE, AAPI_ESEQUENCE, AAPI_EIO],
        "aapi_terminate" => return false,
        "aapi_get_last_error" => return matches!(code, AAPI_EINVAL | AAPI_EBUFSIZE),
        _ => &[],
    };
    list.contains(&code)
        || matches!(
            code,
            AAPI_EINVAL | AAPI_EBADHANDLE | AAPI_ESEQUENCE | AAPI_EINTERNAL | AAPI_ENOMEM
        )
}
