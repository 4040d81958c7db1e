//! The data path of both sample plugins (Rust through the SDK's export layer, C by hand), against
//! `dd`: reading a file with `aapi_read_object` (1 MiB and 4 KiB buffers) and writing one with
//! `aapi_write_object` (1 MiB buffers, then close: rename into place). Not a test: run with
//! `cargo bench -p aapi-sample-plugin-c --bench data_path` (SIZE_MIB, RUNS and BENCH_DIR tune it;
//! scripts/bench-samples runs it as docs/performance.md reports).

use aapi_host::client::{HostHooks, Plugin, SessionDef};
use aapi_sdk::abi::*;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Quiet;
impl HostHooks for Quiet {
    fn log(&self, _: u32, _: &str) {}
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(runs: u64, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn dd(args: &[String]) {
    let ok = Command::new("dd")
        .args(args)
        .arg("status=none")
        .status()
        .expect("dd runs")
        .success();
    assert!(ok, "dd {args:?} failed");
}

/// Private copies of both sample libraries: (name, path).
fn libraries(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let exe = std::env::current_exe().unwrap();
    let rust = exe.parent().unwrap().join("libaapi_sample_plugin.so");
    let c = PathBuf::from(aapi_sample_plugin_c::PLUGIN_PATH);
    [("Rust", rust), ("C", c)]
        .into_iter()
        .map(|(name, lib)| {
            let copy = dir.join(lib.file_name().unwrap());
            fs::copy(&lib, &copy).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
            (name, copy)
        })
        .collect()
}

fn main() {
    let mib = env_num("SIZE_MIB", 1024);
    let runs = env_num("RUNS", 5);
    let base = std::env::var_os("BENCH_DIR").map(PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let bytes = mib << 20;
    let src = dir.path().join("source.bin");
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut f = fs::File::create(&src).unwrap();
    for _ in 0..mib {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let s = src.to_str().unwrap();
    dd(&[format!("if={s}"), "of=/dev/null".into(), "bs=1M".into()]); // warm the page cache

    let plugins: Vec<(&str, Plugin)> = libraries(dir.path())
        .into_iter()
        .map(|(name, lib)| {
            let plugin = Plugin::load(&lib, Arc::new(Quiet)).unwrap();
            assert!(plugin.claim("files").unwrap());
            (name, plugin)
        })
        .collect();

    println!("| operation ({mib} MiB, page cache, median of {runs}) | seconds | GiB/s | vs dd |");
    println!("| --- | ---: | ---: | ---: |");
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let row = |what: &str, t: Duration, base: Duration| {
        println!(
            "| {what} | {:.3} | {:.2} | {:.2}x |",
            t.as_secs_f64(),
            gib / t.as_secs_f64(),
            base.as_secs_f64() / t.as_secs_f64()
        );
    };
    for (bs, label) in [(1usize << 20, "1M"), (4096, "4k")] {
        let d = time(runs, || {
            dd(&[
                format!("if={s}"),
                "of=/dev/null".into(),
                format!("bs={label}"),
            ])
        });
        row(&format!("`dd if=FILE of=/dev/null bs={label}`"), d, d);
        for (name, plugin) in &plugins {
            let backup = plugin
                .open_server("localhost", SessionDef::new(AAPI_OP_BACKUP))
                .unwrap();
            let p = time(runs, || {
                let mut o = backup.open_object(src.as_os_str().as_bytes()).unwrap();
                let mut buf = vec![0u8; bs];
                let mut total = 0u64;
                loop {
                    let n = o.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                o.close().unwrap();
                assert_eq!(total, bytes);
            });
            backup.close().unwrap();
            row(
                &format!("{name} sample: `aapi_read_object`, {label} buffer"),
                p,
                d,
            );
        }
    }

    let out = dir.path().join("restored.bin");
    let o = out.to_str().unwrap();
    let d = time(runs, || {
        dd(&[
            "if=/dev/zero".into(),
            format!("of={o}"),
            "bs=1M".into(),
            format!("count={mib}"),
        ]);
        fs::remove_file(&out).unwrap();
    });
    row("`dd if=/dev/zero of=FILE bs=1M`", d, d);
    let prop = aapi_object_prop_t {
        obj_type: AAPI_OBJ_FILE,
        valid: AAPI_PROP_MODE,
        mode: 0o600,
        ..Default::default()
    };
    let zeros = vec![0u8; 1 << 20];
    for (name, plugin) in &plugins {
        let restore = plugin
            .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
            .unwrap();
        restore.restore_preprocess(b"", 0, 1).unwrap();
        let p = time(runs, || {
            let mut w = restore
                .create_object(out.as_os_str().as_bytes(), &prop, 0)
                .unwrap();
            for _ in 0..mib {
                w.write(&zeros).unwrap();
            }
            w.close().unwrap();
            fs::remove_file(&out).unwrap();
        });
        row(
            &format!("{name} sample: `aapi_write_object` 1M + close"),
            p,
            d,
        );
        restore.restore_postprocess(AAPI_EOK).unwrap();
        restore.close().unwrap();
    }
    for (_, plugin) in plugins {
        plugin.terminate().unwrap();
    }
}
