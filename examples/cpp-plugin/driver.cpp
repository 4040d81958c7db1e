// driver.cpp: a local framework for the C++ example plugin (the "memory" workload), in C++17 with
// libc, the C++ standard library and aapi.h only.
//
//     driver path/to/libaapi_cpp_example.so
//
// It loads the plugin with dlopen() as a framework does and calls every one of the 22 entry
// points:
//
//   - a restore that fills the plugin's store, a discovery over two backup hosts (the workload
//     files are parsed and their CRC-32 checked), a backup of each workload file read on four
//     threads, compared byte for byte with what was restored, postprocess, a restore under an
//     alternate root read back the same way, and a failed restore that must roll back;
//   - the error paths: every call before init and after terminate, bad handles (0, closed, of
//     the other kind, forged) on each of the 17 entry points that take one, NULL pointers,
//     struct sizes below ABI 1.0, calls out of order, bad values, and exceptions thrown inside
//     entry points (the memory.throw session property) that must come back as AAPI_EINTERNAL or
//     AAPI_ENOMEM with their message, the plugin still working afterwards.
//
// Out-parameters are preset to a sentinel before calls that must fail and checked untouched;
// buffers handed to the plugin are exactly as large as the call says, so AddressSanitizer or
// valgrind sees any byte the plugin touches beyond them.
//
// Exit status 0 when every check held, 1 when one failed (each failure is printed with its line
// and the plugin's last-error message), 2 on a usage or setup error. DRIVER_VERBOSE=1 prints the
// plugin's log lines. The first line of output says whether this build of the driver carries
// AddressSanitizer and the UndefinedBehaviorSanitizer runtime. To run it under the sanitizers
// (make SANITIZE=1 check) and under valgrind, see docs/guide-c.md, "Sanitizers and valgrind for a
// C++ plugin".

#include "aapi.h"

#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define DRIVER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DRIVER_ASAN 1
#endif
#endif
#ifndef DRIVER_ASAN
#define DRIVER_ASAN 0
#endif

namespace {

// ------------------------------------------------------------------------------------------
// The plugin's entry points
// ------------------------------------------------------------------------------------------

struct EntryPoints {
    aapi_pgn_init_fn pgn_init;
    aapi_pgn_claim_fn pgn_claim;
    aapi_open_server_fn open_server;
    aapi_close_server_fn close_server;
    aapi_get_server_prop_fn get_server_prop;
    aapi_discovery_fn discovery;
    aapi_postprocess_fn postprocess;
    aapi_get_snappath_from_realpath_fn get_snappath;
    aapi_open_object_fn open_object;
    aapi_create_object_fn create_object;
    aapi_delete_object_fn delete_object;
    aapi_read_object_fn read_object;
    aapi_write_object_fn write_object;
    aapi_flush_fn flush;
    aapi_close_object_fn close_object;
    aapi_get_object_prop_fn get_object_prop;
    aapi_get_object_prop_byname_fn get_object_prop_byname;
    aapi_set_object_utimes_fn set_object_utimes;
    aapi_restore_preprocess_fn restore_preprocess;
    aapi_restore_postprocess_fn restore_postprocess;
    aapi_terminate_fn terminate;
    aapi_get_last_error_fn get_last_error;
} P;

// Resolve `name` into `fn`; false (with a message) when the plugin does not export it.
template <class Fn>
bool resolve(void* lib, const char* name, Fn& fn) {
    void* sym = dlsym(lib, name);
    if (sym == nullptr) {
        std::fprintf(stderr, "driver: the plugin does not export %s\n", name);
        return false;
    }
    fn = reinterpret_cast<Fn>(sym);
    return true;
}

bool resolve_all(void* lib) {
    bool ok = true;
    ok &= resolve(lib, "aapi_pgn_init", P.pgn_init);
    ok &= resolve(lib, "aapi_pgn_claim", P.pgn_claim);
    ok &= resolve(lib, "aapi_open_server", P.open_server);
    ok &= resolve(lib, "aapi_close_server", P.close_server);
    ok &= resolve(lib, "aapi_get_server_prop", P.get_server_prop);
    ok &= resolve(lib, "aapi_discovery", P.discovery);
    ok &= resolve(lib, "aapi_postprocess", P.postprocess);
    ok &= resolve(lib, "aapi_get_snappath_from_realpath", P.get_snappath);
    ok &= resolve(lib, "aapi_open_object", P.open_object);
    ok &= resolve(lib, "aapi_create_object", P.create_object);
    ok &= resolve(lib, "aapi_delete_object", P.delete_object);
    ok &= resolve(lib, "aapi_read_object", P.read_object);
    ok &= resolve(lib, "aapi_write_object", P.write_object);
    ok &= resolve(lib, "aapi_flush", P.flush);
    ok &= resolve(lib, "aapi_close_object", P.close_object);
    ok &= resolve(lib, "aapi_get_object_prop", P.get_object_prop);
    ok &= resolve(lib, "aapi_get_object_prop_byname", P.get_object_prop_byname);
    ok &= resolve(lib, "aapi_set_object_utimes", P.set_object_utimes);
    ok &= resolve(lib, "aapi_restore_preprocess", P.restore_preprocess);
    ok &= resolve(lib, "aapi_restore_postprocess", P.restore_postprocess);
    ok &= resolve(lib, "aapi_terminate", P.terminate);
    ok &= resolve(lib, "aapi_get_last_error", P.get_last_error);
    return ok;
}

// ------------------------------------------------------------------------------------------
// Checks
// ------------------------------------------------------------------------------------------

std::atomic<int> g_checks{0};
std::atomic<int> g_failures{0};
std::mutex g_print;

std::string last_error() {
    char buf[2048];
    size_t n = sizeof buf;
    if (P.get_last_error(buf, &n) != AAPI_EOK)
        return "(no message)";
    return buf;
}

void failed(int line, const std::string& what) {
    g_failures++;
    std::lock_guard<std::mutex> lock(g_print);
    std::fprintf(stderr, "driver.cpp:%d: FAILED: %s\n", line, what.c_str());
}

bool check(int line, bool ok, const std::string& what) {
    g_checks++;
    if (!ok)
        failed(line, what);
    return ok;
}

int check_rc(int line, const char* call, int got, int want) {
    g_checks++;
    if (got != want)
        failed(line, std::string(call) + " returned " + aapi_code_name(got) + ", expected " +
                         aapi_code_name(want) +
                         (got != AAPI_EOK ? " (last error: " + last_error() + ")" : ""));
    return got;
}

#define CHECK(cond) check(__LINE__, (cond), #cond)
#define RC(call, want) check_rc(__LINE__, #call, (call), (want))

constexpr uint64_t kSentinel = 0xDEADBEEFCAFEF00Du; // out-parameters a failing call must not touch

// ------------------------------------------------------------------------------------------
// The framework's side: callbacks, session definitions
// ------------------------------------------------------------------------------------------

struct HostLog {
    std::mutex mu;
    std::vector<std::pair<uint32_t, std::string>> lines;
    bool bad_ctx = false;

    bool saw(uint32_t level, const std::string& fn, const std::string& part) {
        std::lock_guard<std::mutex> lock(mu);
        return std::any_of(lines.begin(), lines.end(), [&](const auto& l) {
            return l.first == level && l.second.find(fn) != std::string::npos &&
                   l.second.find(part) != std::string::npos;
        });
    }

    void clear() {
        std::lock_guard<std::mutex> lock(mu);
        lines.clear();
    }
} g_log;

int g_ctx; // its address is the callback context

void on_log(void* ctx, uint32_t level, const char* message) {
    std::lock_guard<std::mutex> lock(g_log.mu);
    if (ctx != &g_ctx || message == nullptr || level < AAPI_LOG_ERROR || level > AAPI_LOG_DEBUG) {
        g_log.bad_ctx = true;
        return;
    }
    g_log.lines.emplace_back(level, message);
    if (std::getenv("DRIVER_VERBOSE") != nullptr)
        std::fprintf(stderr, "plugin log %u: %s\n", level, message);
}

int on_keepalive(void*) { return AAPI_EOK; }

int on_credential(void*, const char*, char*, size_t*) { return AAPI_EAUTH; }

aapi_host_info_t host_info() {
    aapi_host_info_t h{};
    h.struct_size = sizeof h;
    h.abi_major = AAPI_ABI_MAJOR;
    h.abi_minor = AAPI_ABI_MINOR;
    h.framework_name = "cpp-example-driver";
    h.framework_version = "1";
    h.callback_ctx = &g_ctx;
    h.log_callback = on_log;
    return h;
}

// A session definition and the property it may carry; it must outlive the session (MEM-1).
struct Session {
    aapi_session_def_t def{};
    aapi_property_t prop{};
    aapi_server_t h = 0;
};

aapi_session_def_t session_def(uint32_t op) {
    aapi_session_def_t d{};
    d.struct_size = sizeof d;
    d.abi_major = AAPI_ABI_MAJOR;
    d.abi_minor = AAPI_ABI_MINOR;
    d.sd_operation = op;
    d.sd_schedtype = op == AAPI_OP_RESTORE ? 0 : AAPI_SCHED_FULL;
    d.sd_job_id = "job-1";
    d.sd_backup_host = "h1";
    d.sd_snapid = "";
    d.sd_call_budget_ms = AAPI_DEFAULT_CALL_BUDGET_MS;
    d.sd_callback_ctx = &g_ctx;
    d.sd_log_callback = on_log;
    d.sd_keepalive_callback = on_keepalive;
    d.sd_credential_callback = on_credential;
    return d;
}

// Open a session on `server`; `inject` makes the named entry point throw (memory.throw).
std::unique_ptr<Session> open_session(const char* server, uint32_t op,
                                      const char* inject = nullptr) {
    auto s = std::make_unique<Session>();
    s->def = session_def(op);
    if (inject != nullptr) {
        s->prop.key = "memory.throw";
        s->prop.value = inject;
        s->def.sd_properties = &s->prop;
        s->def.sd_property_count = 1;
    }
    RC(P.open_server(server, &s->def, &s->h), AAPI_EOK);
    CHECK(s->h != 0);
    return s;
}

void close_session(const std::unique_ptr<Session>& s) { RC(P.close_server(s->h), AAPI_EOK); }

aapi_object_prop_t empty_prop() {
    aapi_object_prop_t p{};
    p.struct_size = sizeof p;
    return p;
}

aapi_time_t at(int64_t sec, uint32_t nsec) {
    aapi_time_t t{};
    t.sec = sec;
    t.nsec = nsec;
    return t;
}

// ------------------------------------------------------------------------------------------
// The objects of the round trip
// ------------------------------------------------------------------------------------------

struct Obj {
    std::string path;
    uint32_t type;
    std::string data;
    uint32_t mode;
    int64_t mtime;
};

std::vector<Obj> seed() {
    std::string big(300000, '\0');
    for (size_t i = 0; i < big.size(); i++)
        big[i] = static_cast<char>((i * 7 + i / 251) & 0xFF);
    return {
        {"/data", AAPI_OBJ_DIR, "", 0755, 1600000000},
        {"/data/a", AAPI_OBJ_FILE, "hello\n", 0644, 1600000001},
        {"/data/big", AAPI_OBJ_FILE, big, 0600, 1600000002},
        {"/data/empty", AAPI_OBJ_FILE, "", 0640, 1600000003},
        {"/data/sub", AAPI_OBJ_DIR, "", 0700, 1600000004},
        {"/data/sub/c", AAPI_OBJ_FILE, std::string("\0\x01" "binary\xff", 9), 0600, 1600000005},
        {"/data/sub/odd name\twith tab\nand newline", AAPI_OBJ_FILE, "raw bytes", 0604,
         1600000006},
        {"/restored", AAPI_OBJ_DIR, "", 0755, 1600000007},
    };
}

bool under_data(const std::string& p) { return p == "/data" || p.rfind("/data/", 0) == 0; }

// The properties read back must be the ones restored (and nothing else set).
void check_props(int line, const aapi_object_prop_t& p, const Obj& o) {
    bool ok = p.struct_size == sizeof p && p.obj_type == o.type &&
              p.size == (o.type == AAPI_OBJ_DIR ? 0 : o.data.size()) && p.mode == o.mode &&
              p.mtime.sec == o.mtime && p.mtime.nsec == 5 && p.atime.sec == o.mtime + 1 &&
              p.atime.nsec == 7 &&
              (p.valid & (AAPI_PROP_SIZE | AAPI_PROP_MODE | AAPI_PROP_ATIME | AAPI_PROP_MTIME)) ==
                  (AAPI_PROP_SIZE | AAPI_PROP_MODE | AAPI_PROP_ATIME | AAPI_PROP_MTIME);
    check(line, ok, "properties of " + o.path + " as restored");
}

// Write `data` through the plugin in chunks of varying size, each in a buffer of exactly its
// length so that a read beyond it is seen.
void write_all(aapi_object_t o, const std::string& data) {
    static const size_t sizes[] = {1, 4093, 65536};
    size_t off = 0;
    for (size_t k = 0; off < data.size(); k++) {
        size_t n = std::min(sizes[k % 3], data.size() - off);
        std::vector<char> piece(data.begin() + off, data.begin() + off + n);
        if (RC(P.write_object(o, piece.data(), piece.size()), AAPI_EOK) != AAPI_EOK)
            return;
        off += n;
    }
    RC(P.write_object(o, nullptr, 0), AAPI_EOK); // len 0 does nothing
}

// A complete restore of `objs` under `root` ("" for the original place).
void restore(const char* server, const char* root, const std::vector<Obj>& objs) {
    auto s = open_session(server, AAPI_OP_RESTORE);
    aapi_restore_info_t ri{};
    ri.struct_size = sizeof ri;
    ri.target_root = root;
    for (const Obj& o : objs)
        ri.total_bytes += o.data.size();
    ri.object_count = objs.size();
    RC(P.restore_preprocess(s->h, &ri), AAPI_EOK);
    for (const Obj& o : objs) {
        aapi_object_prop_t p = empty_prop();
        p.obj_type = o.type;
        p.valid = AAPI_PROP_MODE | AAPI_PROP_MTIME;
        p.mode = o.mode;
        p.mtime = at(o.mtime, 5);
        aapi_object_t obj = 0;
        if (RC(P.create_object(s->h, o.path.c_str(), &p, 0, &obj), AAPI_EOK) != AAPI_EOK)
            continue;
        CHECK(obj != 0);
        aapi_object_prop_t q = empty_prop();
        RC(P.get_object_prop_byname(s->h, o.path.c_str(), &q), AAPI_ENOENT); // OBJ-6
        if (o.type == AAPI_OBJ_FILE)
            write_all(obj, o.data);
        q = empty_prop();
        RC(P.get_object_prop(obj, &q), AAPI_EOK);
        CHECK(q.obj_type == o.type && q.mode == o.mode);
        RC(P.flush(obj), AAPI_EOK);
        RC(P.close_object(obj), AAPI_EOK);
        RC(P.close_object(obj), AAPI_EBADHANDLE); // OBJ-8: the handle is gone
        aapi_time_t atime = at(o.mtime + 1, 7);
        aapi_time_t mtime = at(o.mtime, 5);
        RC(P.set_object_utimes(s->h, o.path.c_str(), &atime, nullptr), AAPI_EOK);
        RC(P.set_object_utimes(s->h, o.path.c_str(), nullptr, &mtime), AAPI_EOK);
        q = empty_prop();
        if (RC(P.get_object_prop_byname(s->h, o.path.c_str(), &q), AAPI_EOK) == AAPI_EOK)
            check_props(__LINE__, q, o);
    }
    RC(P.restore_postprocess(s->h, AAPI_EOK), AAPI_EOK);
    close_session(s);
}

// One object read back in a backup session: its data and properties.
struct Read {
    bool ok = false;
    std::string data;
    aapi_object_prop_t prop{};
};

Read read_back(aapi_server_t server, const std::string& path, size_t buf_size) {
    Read r;
    // The in/out size protocol (RC-6): a size query, a buffer one byte short, then the exact size.
    size_t need = 0;
    RC(P.get_snappath(server, "", path.c_str(), nullptr, &need), AAPI_EBUFSIZE);
    CHECK(need == path.size() + 1);
    std::vector<char> small(path.size(), 'Z');
    size_t size = small.size();
    RC(P.get_snappath(server, "", path.c_str(), small.data(), &size), AAPI_EBUFSIZE);
    CHECK(size == path.size() + 1);
    CHECK(std::all_of(small.begin(), small.end(), [](char c) { return c == 'Z'; }));
    std::vector<char> snap(path.size() + 1);
    size = snap.size();
    if (RC(P.get_snappath(server, "", path.c_str(), snap.data(), &size), AAPI_EOK) != AAPI_EOK)
        return r;
    CHECK(size == path.size() + 1 && std::memcmp(snap.data(), path.c_str(), size) == 0); // DISC-6

    aapi_object_t o = 0;
    if (RC(P.open_object(server, snap.data(), AAPI_OPEN_READ, &o), AAPI_EOK) != AAPI_EOK)
        return r;
    r.prop = empty_prop();
    RC(P.get_object_prop(o, &r.prop), AAPI_EOK);
    std::vector<char> buf(buf_size);
    for (;;) {
        size_t n = kSentinel;
        if (RC(P.read_object(o, buf.data(), buf.size(), &n), AAPI_EOK) != AAPI_EOK)
            break;
        if (!CHECK(n <= buf.size()) || n == 0)
            break;
        r.data.append(buf.data(), n);
    }
    size_t n = kSentinel;
    RC(P.read_object(o, buf.data(), buf.size(), &n), AAPI_EOK);
    CHECK(n == 0); // OBJ-1: the end of the data stays the end
    RC(P.close_object(o), AAPI_EOK);
    r.ok = true;
    return r;
}

// ------------------------------------------------------------------------------------------
// Workload files (docs/workload-file.md), parsed independently of the plugin's writer
// ------------------------------------------------------------------------------------------

uint32_t crc32(const std::string& bytes) {
    uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : bytes) {
        c ^= b;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

struct Record {
    std::string path;
    uint64_t size;
    uint32_t flags;
};

// Parse the workload file at `file` for `host`; false (the reason printed) when it is invalid.
bool parse_workload(const std::string& file, const std::string& host, std::vector<Record>& out) {
    struct stat st{};
    if (!check(__LINE__, ::stat(file.c_str(), &st) == 0, "workload file " + file))
        return false;
    check(__LINE__, (st.st_mode & 07777) == 0600, "workload file mode 0600 (DISC-4)");
    std::ifstream in(file, std::ios::binary);
    std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t off = 0;
    bool ok = true;
    auto take = [&](size_t n) {
        if (off + n > b.size()) {
            ok = false;
            return std::string();
        }
        std::string s = b.substr(off, n);
        off += n;
        return s;
    };
    auto u32 = [&] {
        std::string s = take(4);
        uint32_t v = 0;
        for (size_t i = 0; i < s.size(); i++)
            v |= static_cast<uint32_t>(static_cast<unsigned char>(s[i])) << (8 * i);
        return v;
    };
    auto u64 = [&] {
        uint64_t lo = u32();
        return lo | static_cast<uint64_t>(u32()) << 32;
    };
    ok = take(8) == std::string(AAPI_WKLD_MAGIC, 8) && ok;
    ok = u32() == AAPI_WKLD_FORMAT_VERSION && ok;
    ok = u32() == 0 && ok;
    std::string snap = take(u32());
    ok = snap.empty() && ok; // this plugin takes no snapshot
    ok = take(u32()) == host && ok;
    std::vector<Record> records;
    for (uint32_t len = u32(); ok && len != 0; len = u32()) {
        size_t end = off + len;
        Record r{};
        r.size = u64();
        r.flags = u32();
        r.path = take(u32());
        ok = ok && off <= end && end <= b.size();
        off = end;
        records.push_back(r);
    }
    ok = ok && u64() == records.size();
    size_t crc_at = off;
    ok = ok && u32() == crc32(b.substr(0, crc_at)) && off == b.size();
    if (!check(__LINE__, ok, "workload file " + file + " is valid (layout, count, CRC-32)"))
        return false;
    out.insert(out.end(), records.begin(), records.end());
    return true;
}

size_t count_entries(const std::string& dir) {
    size_t n = 0;
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d))
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
                n++;
        ::closedir(d);
    }
    return n;
}

void remove_entries(const std::string& dir) {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d))
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
                names.push_back(dir + "/" + e->d_name);
        ::closedir(d);
    }
    for (const auto& n : names)
        ::unlink(n.c_str());
}

// ------------------------------------------------------------------------------------------
// Sections
// ------------------------------------------------------------------------------------------

const char* const kSelections[] = {"/data", "/data/sub", nullptr}; // overlapping on purpose
const char* const kHosts[] = {"h1", "h2", nullptr};
const char* const kSuffix = ".wkld";
const char* const kServer = "srv";

void init_and_claim() {
    aapi_host_info_t h = host_info();
    aapi_plugin_info_t info{};
    info.struct_size = sizeof info;
    RC(P.pgn_init(&h, &info), AAPI_EOK);
    RC(P.pgn_claim("memory"), AAPI_EOK);
}

// Every entry point before aapi_pgn_init, then the handshake and its errors.
void handshake() {
    aapi_server_t sh = kSentinel;
    aapi_object_t oh = kSentinel;
    aapi_session_def_t def = session_def(AAPI_OP_BACKUP);
    aapi_server_info_t si{};
    si.struct_size = sizeof si;
    aapi_object_prop_t prop = empty_prop();
    aapi_restore_info_t ri{};
    ri.struct_size = sizeof ri;
    ri.target_root = "";
    aapi_snapid_t snap{};
    char buf[64];
    size_t n = sizeof buf;
    aapi_time_t t = at(1, 0);
    const uint64_t h = 0x5300000000000001u; // a plausible server handle
    const uint64_t o = 0x4F00000000000001u;

    RC(P.terminate(), AAPI_EOK); // LIFE-7: before init, nothing to do
    RC(P.pgn_claim("memory"), AAPI_ESEQUENCE);
    RC(P.open_server(kServer, &def, &sh), AAPI_ESEQUENCE);
    CHECK(sh == kSentinel);
    RC(P.close_server(h), AAPI_ESEQUENCE);
    RC(P.get_server_prop(h, &si), AAPI_ESEQUENCE);
    RC(P.discovery(h, kSelections, kHosts, "/tmp", kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_ESEQUENCE);
    RC(P.postprocess(h, kSelections, kHosts, "/tmp", kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_ESEQUENCE);
    RC(P.get_snappath(h, "", "/data", buf, &n), AAPI_ESEQUENCE);
    RC(P.open_object(h, "/data", AAPI_OPEN_READ, &oh), AAPI_ESEQUENCE);
    RC(P.create_object(h, "/data", &prop, 0, &oh), AAPI_ESEQUENCE);
    CHECK(oh == kSentinel);
    RC(P.delete_object(h, "/data"), AAPI_ESEQUENCE);
    RC(P.read_object(o, buf, sizeof buf, &n), AAPI_ESEQUENCE);
    RC(P.write_object(o, buf, 1), AAPI_ESEQUENCE);
    RC(P.flush(o), AAPI_ESEQUENCE);
    RC(P.close_object(o), AAPI_ESEQUENCE);
    RC(P.get_object_prop(o, &prop), AAPI_ESEQUENCE);
    RC(P.get_object_prop_byname(h, "/data", &prop), AAPI_ESEQUENCE);
    RC(P.set_object_utimes(h, "/data", &t, &t), AAPI_ESEQUENCE);
    RC(P.restore_preprocess(h, &ri), AAPI_ESEQUENCE);
    RC(P.restore_postprocess(h, AAPI_EOK), AAPI_ESEQUENCE);

    // aapi_pgn_init: NULL arguments, struct sizes, the ABI major (RC-3, ABI-2, ABI-4).
    aapi_host_info_t hi = host_info();
    aapi_plugin_info_t info{};
    info.struct_size = sizeof info;
    info.name = "untouched";
    RC(P.pgn_init(nullptr, &info), AAPI_EINVAL);
    RC(P.pgn_init(&hi, nullptr), AAPI_EINVAL);
    hi.struct_size = 8;
    RC(P.pgn_init(&hi, &info), AAPI_EABI);
    hi = host_info();
    hi.abi_major = AAPI_ABI_MAJOR + 1;
    RC(P.pgn_init(&hi, &info), AAPI_EABI);
    hi = host_info();
    info.struct_size = 8;
    RC(P.pgn_init(&hi, &info), AAPI_EABI);
    CHECK(std::strcmp(info.name, "untouched") == 0); // RC-5: nothing written on failure
    info.struct_size = sizeof info;
    RC(P.pgn_init(&hi, &info), AAPI_EOK);
    CHECK(info.struct_size == sizeof info && info.abi_major == AAPI_ABI_MAJOR &&
          info.abi_minor <= AAPI_ABI_MINOR);
    CHECK(std::strcmp(info.name, "memory-cpp") == 0 &&
          std::strcmp(info.workload_types, "memory") == 0);
    CHECK(info.version != nullptr && info.version[0] != '\0' && info.vendor != nullptr);
    CHECK((info.capabilities & (AAPI_CAP_CONCURRENT_OBJECTS | AAPI_CAP_RESTORE |
                                AAPI_CAP_ALTERNATE_RESTORE)) ==
          (AAPI_CAP_CONCURRENT_OBJECTS | AAPI_CAP_RESTORE | AAPI_CAP_ALTERNATE_RESTORE));
    CHECK(info.max_concurrent_objects >= 1);
    RC(P.pgn_init(&hi, &info), AAPI_ESEQUENCE); // LIFE-2

    // Claim: only "memory"; nothing opens before a successful claim (LIFE-3).
    RC(P.pgn_claim(nullptr), AAPI_EINVAL);
    RC(P.pgn_claim(""), AAPI_EINVAL);
    RC(P.pgn_claim("files"), AAPI_ENOTCLAIMED);
    RC(P.open_server(kServer, &def, &sh), AAPI_ESEQUENCE);
    RC(P.pgn_claim("memory"), AAPI_EOK);
    RC(P.pgn_claim("memory"), AAPI_EOK); // any number of times

    // aapi_open_server: NULLs, struct size, major, operation, callbacks (RC-3, ABI-4).
    RC(P.open_server(nullptr, &def, &sh), AAPI_EINVAL);
    RC(P.open_server(kServer, nullptr, &sh), AAPI_EINVAL);
    RC(P.open_server(kServer, &def, nullptr), AAPI_EINVAL);
    RC(P.open_server("", &def, &sh), AAPI_EINVAL);
    aapi_session_def_t bad = def;
    bad.struct_size = 16;
    RC(P.open_server(kServer, &bad, &sh), AAPI_EABI);
    bad = def;
    bad.abi_major = AAPI_ABI_MAJOR + 1;
    RC(P.open_server(kServer, &bad, &sh), AAPI_EABI);
    bad = def;
    bad.sd_operation = 99;
    RC(P.open_server(kServer, &bad, &sh), AAPI_EINVAL);
    bad = def;
    bad.sd_keepalive_callback = nullptr;
    RC(P.open_server(kServer, &bad, &sh), AAPI_EINVAL);
    bad = def;
    bad.sd_property_count = 1;
    RC(P.open_server(kServer, &bad, &sh), AAPI_EINVAL);
    CHECK(sh == kSentinel); // RC-5
}

// Restore, discovery, backup on four threads, postprocess, alternate restore, failed restore.
void round_trip(const std::string& dir) {
    const std::vector<Obj> originals = seed();
    restore(kServer, "", originals);

    // Discovery: an unsupported schedule fails before anything is written (RC-8), then a full.
    aapi_snapid_t snap{};
    std::memset(snap.id, 'X', sizeof snap.id);
    auto d = open_session(kServer, AAPI_OP_DISCOVERY);
    aapi_server_info_t si{};
    si.struct_size = sizeof si;
    RC(P.get_server_prop(d->h, &si), AAPI_EOK);
    CHECK(si.srv_flags == AAPI_SRVC_FULL_BACKUP_SUPPORT && si.struct_size == sizeof si);
    RC(P.discovery(d->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_INCR, &snap),
       AAPI_ESCHED_NOT_SUPPORTED);
    CHECK(snap.id[0] == 'X' && count_entries(dir) == 0);
    close_session(d);
    d = open_session(kServer, AAPI_OP_DISCOVERY);
    RC(P.discovery(d->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_EOK);
    CHECK(snap.id[0] == '\0'); // no snapshot
    RC(P.discovery(d->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_ESEQUENCE); // once per session
    close_session(d);
    CHECK(count_entries(dir) == 2); // exactly one file per backup host, no temporary left

    // Backup: one session per workload file (a child job each), objects read on four threads.
    std::map<std::string, Read> backed_up;
    size_t listed = 0;
    for (const char* const* host = kHosts; *host != nullptr; host++) {
        std::vector<Record> records;
        if (!parse_workload(dir + "/" + *host + kSuffix, *host, records))
            continue;
        listed += records.size();
        auto s = open_session(kServer, AAPI_OP_BACKUP);
        const size_t threads = 4;
        std::vector<std::vector<std::pair<std::string, Read>>> results(threads);
        std::vector<std::thread> pool;
        std::atomic<size_t> failed_once{0};
        for (size_t t = 0; t < threads; t++) {
            pool.emplace_back([&, t] {
                static const size_t buf_sizes[] = {7000, 4093, 65536, 1 << 20};
                // Each thread fails once; once all have, each still sees its own last-error
                // message (RC-9: one message per thread).
                std::string missing = "/data/missing-" + std::to_string(t);
                aapi_object_t none = kSentinel;
                RC(P.open_object(s->h, missing.c_str(), AAPI_OPEN_READ, &none), AAPI_ENOENT);
                CHECK(none == kSentinel);
                failed_once++;
                while (failed_once.load() < threads)
                    std::this_thread::yield();
                CHECK(last_error().find(missing) != std::string::npos);
                for (size_t i = t; i < records.size(); i += threads) {
                    Read r = read_back(s->h, records[i].path, buf_sizes[t]);
                    CHECK(r.prop.size == records[i].size);
                    CHECK(((records[i].flags & AAPI_WKLD_DIR) != 0) ==
                          (r.prop.obj_type == AAPI_OBJ_DIR));
                    results[t].emplace_back(records[i].path, std::move(r));
                }
            });
        }
        for (auto& th : pool)
            th.join();
        for (auto& rs : results)
            for (auto& r : rs)
                CHECK(backed_up.emplace(std::move(r.first), std::move(r.second)).second); // DISC-2
        close_session(s);
    }

    // The backup holds every object of the selection once, with the bytes restored.
    size_t expected = 0;
    uint64_t bytes = 0;
    for (const Obj& o : originals) {
        if (!under_data(o.path))
            continue;
        expected++;
        auto it = backed_up.find(o.path);
        if (!check(__LINE__, it != backed_up.end() && it->second.ok, "backed up: " + o.path))
            continue;
        check(__LINE__, it->second.data == o.data,
              "bytes read back equal bytes written: " + o.path);
        check_props(__LINE__, it->second.prop, o);
        bytes += it->second.data.size();
    }
    CHECK(backed_up.size() == expected && listed == expected);

    // Postprocess: "" means no snapshot to delete; once per session; an unknown snapshot fails.
    auto pp = open_session(kServer, AAPI_OP_POSTPROCESS);
    RC(P.postprocess(pp->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_EOK);
    RC(P.postprocess(pp->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_ESEQUENCE);
    close_session(pp);
    pp = open_session(kServer, AAPI_OP_POSTPROCESS);
    aapi_snapid_t unknown{};
    std::strcpy(unknown.id, "no-such-snapshot");
    RC(P.postprocess(pp->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &unknown),
       AAPI_ESNAPSHOT);
    close_session(pp);

    // Restore what was backed up under the alternate root, then read the copies back.
    std::vector<Obj> copies;
    for (const Obj& o : originals)
        if (under_data(o.path)) {
            auto it = backed_up.find(o.path);
            Obj c = o;
            c.path = "/restored" + o.path;
            if (it != backed_up.end())
                c.data = it->second.data;
            copies.push_back(c);
        }
    restore(kServer, "/restored", copies);
    auto s = open_session(kServer, AAPI_OP_BACKUP);
    size_t restored_ok = 0;
    for (const Obj& c : copies) {
        Read r = read_back(s->h, c.path, 65536);
        if (check(__LINE__, r.ok && r.data == c.data, "restored copy equals: " + c.path))
            restored_ok++;
        check_props(__LINE__, r.prop, c);
    }
    close_session(s);

    // A failed restore puts back what it replaced and removes what it created (RST-6, RST-7).
    auto r = open_session(kServer, AAPI_OP_RESTORE);
    aapi_restore_info_t ri{};
    ri.struct_size = sizeof ri;
    ri.target_root = "";
    ri.total_bytes = 16;
    ri.object_count = 2;
    RC(P.restore_preprocess(r->h, &ri), AAPI_EOK);
    aapi_object_prop_t file = empty_prop();
    file.obj_type = AAPI_OBJ_FILE;
    aapi_object_t o = kSentinel;
    RC(P.create_object(r->h, "/data/a", &file, 0, &o), AAPI_EEXIST); // RST-3
    CHECK(o == kSentinel);
    RC(P.create_object(r->h, "/data/a", &file, AAPI_CREATE_OVERWRITE, &o), AAPI_EOK);
    write_all(o, "replaced");
    RC(P.close_object(o), AAPI_EOK);
    aapi_object_prop_t q = empty_prop();
    RC(P.get_object_prop_byname(r->h, "/data/a", &q), AAPI_EOK);
    CHECK(q.size == 8);
    RC(P.create_object(r->h, "/data/new", &file, 0, &o), AAPI_EOK);
    write_all(o, "new");
    RC(P.close_object(o), AAPI_EOK);
    RC(P.delete_object(r->h, "/data/sub/c"), AAPI_EOK);
    RC(P.delete_object(r->h, "/data/sub/c"), AAPI_ENOENT);
    RC(P.delete_object(r->h, "/data/sub"), AAPI_EINVAL); // not empty
    RC(P.create_object(r->h, "/data/open-at-the-end", &file, 0, &o), AAPI_EOK);
    write_all(o, "never completed");
    RC(P.restore_postprocess(r->h, AAPI_EIO), AAPI_EOK);
    RC(P.write_object(o, "x", 1), AAPI_EBADHANDLE); // closed by postprocess
    RC(P.restore_postprocess(r->h, AAPI_EOK), AAPI_ESEQUENCE);
    close_session(r);
    s = open_session(kServer, AAPI_OP_BACKUP);
    CHECK(read_back(s->h, "/data/a", 100).data == "hello\n");
    CHECK(read_back(s->h, "/data/sub/c", 100).data == originals[5].data);
    for (const char* gone : {"/data/new", "/data/open-at-the-end"}) {
        RC(P.open_object(s->h, gone, AAPI_OPEN_READ, &o), AAPI_ENOENT);
        q = empty_prop();
        RC(P.get_object_prop_byname(s->h, gone, &q), AAPI_ENOENT);
    }
    close_session(s);

    // A successful restore that deletes an object.
    r = open_session(kServer, AAPI_OP_RESTORE);
    RC(P.restore_preprocess(r->h, &ri), AAPI_EOK);
    RC(P.delete_object(r->h, "/restored/data/empty"), AAPI_EOK);
    RC(P.restore_postprocess(r->h, AAPI_EOK), AAPI_EOK);
    close_session(r);
    s = open_session(kServer, AAPI_OP_BACKUP);
    q = empty_prop();
    RC(P.get_object_prop_byname(s->h, "/restored/data/empty", &q), AAPI_ENOENT);
    close_session(s);

    std::printf("round trip: %zu objects over %zu workload files, %llu bytes backed up and read "
                "back equal; %zu restored under /restored and read back equal\n",
                backed_up.size(), count_entries(dir), static_cast<unsigned long long>(bytes),
                restored_ok);
    remove_entries(dir);
}

// Bad handles on each of the 17 entry points that take one (RC-4): 0, a closed handle, a live
// handle of the other kind, a forged handle with the right tag.
void bad_handles(const std::string& dir) {
    auto live = open_session(kServer, AAPI_OP_BACKUP);
    aapi_object_t live_obj = 0;
    RC(P.open_object(live->h, "/data/a", AAPI_OPEN_READ, &live_obj), AAPI_EOK);
    auto gone = open_session(kServer, AAPI_OP_RESTORE);
    aapi_server_t closed_server = gone->h;
    close_session(gone);
    aapi_object_t closed_obj = 0;
    RC(P.open_object(live->h, "/data/a", AAPI_OPEN_READ, &closed_obj), AAPI_EOK);
    RC(P.close_object(closed_obj), AAPI_EOK);

    const uint64_t servers[] = {0, closed_server, live_obj, closed_server + 1000};
    const uint64_t objects[] = {0, closed_obj, live->h, closed_obj + 1000};
    aapi_server_info_t si{};
    si.struct_size = sizeof si;
    aapi_snapid_t snap{};
    char path[64];
    size_t n = sizeof path;
    aapi_object_prop_t prop = empty_prop();
    prop.obj_type = AAPI_OBJ_FILE;
    aapi_restore_info_t ri{};
    ri.struct_size = sizeof ri;
    ri.target_root = "";
    aapi_time_t t = at(1, 0);
    char buf[16];
    size_t got = kSentinel;
    for (uint64_t h : servers) {
        aapi_object_t o = kSentinel;
        RC(P.get_server_prop(h, &si), AAPI_EBADHANDLE);
        RC(P.discovery(h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
           AAPI_EBADHANDLE);
        RC(P.postprocess(h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
           AAPI_EBADHANDLE);
        RC(P.get_snappath(h, "", "/data/a", path, &n), AAPI_EBADHANDLE);
        CHECK(n == sizeof path);
        RC(P.open_object(h, "/data/a", AAPI_OPEN_READ, &o), AAPI_EBADHANDLE);
        RC(P.create_object(h, "/data/x", &prop, 0, &o), AAPI_EBADHANDLE);
        CHECK(o == kSentinel);
        RC(P.delete_object(h, "/data/a"), AAPI_EBADHANDLE);
        RC(P.get_object_prop_byname(h, "/data/a", &prop), AAPI_EBADHANDLE);
        RC(P.set_object_utimes(h, "/data/a", &t, &t), AAPI_EBADHANDLE);
        RC(P.restore_preprocess(h, &ri), AAPI_EBADHANDLE);
        RC(P.restore_postprocess(h, AAPI_EOK), AAPI_EBADHANDLE);
        RC(P.close_server(h), AAPI_EBADHANDLE); // LIFE-6: a second close changes nothing
    }
    for (uint64_t o : objects) {
        RC(P.read_object(o, buf, sizeof buf, &got), AAPI_EBADHANDLE);
        CHECK(got == kSentinel);
        RC(P.write_object(o, buf, sizeof buf), AAPI_EBADHANDLE);
        RC(P.flush(o), AAPI_EBADHANDLE);
        RC(P.get_object_prop(o, &prop), AAPI_EBADHANDLE);
        RC(P.close_object(o), AAPI_EBADHANDLE);
    }
    CHECK(last_error().find("handle") != std::string::npos);
    CHECK(count_entries(dir) == 0);

    // The live handles were not disturbed; closing the session closes its object (LIFE-6).
    RC(P.read_object(live_obj, buf, sizeof buf, &got), AAPI_EOK);
    CHECK(got == 6 && std::memcmp(buf, "hello\n", 6) == 0);
    close_session(live);
    RC(P.read_object(live_obj, buf, sizeof buf, &got), AAPI_EBADHANDLE);
}

// NULL pointers (RC-3), struct sizes below ABI 1.0 (ABI-4), calls out of order (LIFE-4, LIFE-5)
// and bad values.
void bad_calls(const std::string& dir) {
    auto b = open_session(kServer, AAPI_OP_BACKUP);
    auto r = open_session(kServer, AAPI_OP_RESTORE);
    aapi_server_info_t si{};
    si.struct_size = sizeof si;
    aapi_object_prop_t prop = empty_prop();
    prop.obj_type = AAPI_OBJ_FILE;
    aapi_snapid_t snap{};
    char path[64];
    size_t n = sizeof path;
    char buf[16];
    size_t got = kSentinel;
    aapi_object_t o = kSentinel;
    aapi_time_t t = at(1, 0);

    // Restore calls before aapi_restore_preprocess (LIFE-4).
    RC(P.create_object(r->h, "/data/x", &prop, 0, &o), AAPI_ESEQUENCE);
    RC(P.delete_object(r->h, "/data/a"), AAPI_ESEQUENCE);
    RC(P.set_object_utimes(r->h, "/data/a", &t, &t), AAPI_ESEQUENCE);
    RC(P.get_object_prop_byname(r->h, "/data/a", &prop), AAPI_ESEQUENCE);
    RC(P.restore_postprocess(r->h, AAPI_EOK), AAPI_ESEQUENCE);

    // aapi_restore_preprocess: every check comes before the restore window opens.
    aapi_restore_info_t ri{};
    ri.struct_size = sizeof ri;
    ri.target_root = "";
    RC(P.restore_preprocess(r->h, nullptr), AAPI_EINVAL);
    ri.struct_size = 8;
    RC(P.restore_preprocess(r->h, &ri), AAPI_EABI);
    ri.struct_size = sizeof ri;
    ri.target_root = nullptr;
    RC(P.restore_preprocess(r->h, &ri), AAPI_EINVAL);
    ri.target_root = "/no/such/root";
    RC(P.restore_preprocess(r->h, &ri), AAPI_ENOENT);
    ri.target_root = "/data/a"; // a file, not a directory
    RC(P.restore_preprocess(r->h, &ri), AAPI_ENOENT);
    ri.target_root = "relative";
    RC(P.restore_preprocess(r->h, &ri), AAPI_EINVAL);
    ri.target_root = "/restored";
    ri.total_bytes = uint64_t(1) << 40;
    RC(P.restore_preprocess(r->h, &ri), AAPI_ENOSPC); // RST-1
    ri.total_bytes = 100;
    RC(P.restore_preprocess(r->h, &ri), AAPI_EOK);
    RC(P.restore_preprocess(r->h, &ri), AAPI_ESEQUENCE);

    // The backup session: restore calls, NULLs, values.
    RC(P.restore_preprocess(b->h, &ri), AAPI_ESEQUENCE);
    RC(P.create_object(b->h, "/data/x", &prop, 0, &o), AAPI_ESEQUENCE);
    RC(P.delete_object(b->h, "/data/a"), AAPI_ESEQUENCE);
    RC(P.set_object_utimes(b->h, "/data/a", &t, &t), AAPI_ESEQUENCE);
    RC(P.restore_postprocess(b->h, AAPI_EOK), AAPI_ESEQUENCE);
    RC(P.discovery(b->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_ESEQUENCE);
    RC(P.postprocess(b->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_ESEQUENCE);
    RC(P.get_server_prop(b->h, nullptr), AAPI_EINVAL);
    si.struct_size = 4;
    RC(P.get_server_prop(b->h, &si), AAPI_EABI);
    CHECK(si.srv_flags == 0);
    RC(P.get_snappath(b->h, nullptr, "/data/a", path, &n), AAPI_EINVAL);
    RC(P.get_snappath(b->h, "", nullptr, path, &n), AAPI_EINVAL);
    RC(P.get_snappath(b->h, "", "/data/a", path, nullptr), AAPI_EINVAL);
    RC(P.get_snappath(b->h, "", "/data/a", nullptr, &n), AAPI_EINVAL); // NULL with a size
    RC(P.get_snappath(b->h, "snap-x", "/data/a", path, &n), AAPI_ESNAPSHOT);
    RC(P.get_snappath(b->h, "", "relative", path, &n), AAPI_EINVAL);
    CHECK(n == sizeof path);
    RC(P.open_object(b->h, nullptr, AAPI_OPEN_READ, &o), AAPI_EINVAL);
    RC(P.open_object(b->h, "/data/a", AAPI_OPEN_READ, nullptr), AAPI_EINVAL);
    RC(P.open_object(b->h, "/data/a", 0, &o), AAPI_EINVAL);
    RC(P.open_object(b->h, "", AAPI_OPEN_READ, &o), AAPI_EINVAL);
    RC(P.open_object(b->h, "/data/missing", AAPI_OPEN_READ, &o), AAPI_ENOENT);
    CHECK(o == kSentinel);
    RC(P.get_object_prop_byname(b->h, nullptr, &prop), AAPI_EINVAL);
    RC(P.get_object_prop_byname(b->h, "/data/a", nullptr), AAPI_EINVAL);
    prop.struct_size = 8;
    RC(P.get_object_prop_byname(b->h, "/data/a", &prop), AAPI_EABI);
    prop.struct_size = sizeof prop;

    // An object opened for reading: NULLs, sizes, no writes (LIFE-5).
    aapi_object_t ro = 0;
    RC(P.open_object(b->h, "/data/a", AAPI_OPEN_READ, &ro), AAPI_EOK);
    RC(P.read_object(ro, nullptr, sizeof buf, &got), AAPI_EINVAL);
    RC(P.read_object(ro, buf, sizeof buf, nullptr), AAPI_EINVAL);
    RC(P.read_object(ro, buf, 0, &got), AAPI_EINVAL);
    RC(P.read_object(0, nullptr, sizeof buf, &got), AAPI_EINVAL); // NULL is checked first
    CHECK(got == kSentinel);
    RC(P.write_object(ro, buf, 1), AAPI_ESEQUENCE);
    RC(P.flush(ro), AAPI_ESEQUENCE);
    RC(P.get_object_prop(ro, nullptr), AAPI_EINVAL);
    aapi_object_prop_t small = empty_prop();
    small.struct_size = 8;
    RC(P.get_object_prop(ro, &small), AAPI_EABI);
    CHECK(small.obj_type == 0);
    RC(P.read_object(ro, buf, 2, &got), AAPI_EOK); // still usable, from the start
    CHECK(got == 2 && std::memcmp(buf, "he", 2) == 0);
    RC(P.close_object(ro), AAPI_EOK);

    // The restore session, inside its window.
    RC(P.open_object(r->h, "/data/a", AAPI_OPEN_READ, &o), AAPI_ESEQUENCE);
    RC(P.get_snappath(r->h, "", "/data/a", path, &n), AAPI_ESEQUENCE);
    RC(P.create_object(r->h, nullptr, &prop, 0, &o), AAPI_EINVAL);
    RC(P.create_object(r->h, "/restored/x", nullptr, 0, &o), AAPI_EINVAL);
    RC(P.create_object(r->h, "/restored/x", &prop, 0, nullptr), AAPI_EINVAL);
    prop.struct_size = 8;
    RC(P.create_object(r->h, "/restored/x", &prop, 0, &o), AAPI_EABI);
    prop.struct_size = sizeof prop;
    RC(P.create_object(r->h, "/restored/x", &prop, 0x80, &o), AAPI_EINVAL);
    prop.obj_type = 9;
    RC(P.create_object(r->h, "/restored/x", &prop, 0, &o), AAPI_EINVAL);
    prop.obj_type = AAPI_OBJ_SYMLINK;
    RC(P.create_object(r->h, "/restored/x", &prop, 0, &o), AAPI_ENOTSUP);
    prop.obj_type = AAPI_OBJ_FILE;
    RC(P.create_object(r->h, "/data/outside", &prop, 0, &o), AAPI_EINVAL); // not under the root
    RC(P.create_object(r->h, "relative", &prop, 0, &o), AAPI_EINVAL);
    CHECK(o == kSentinel);
    RC(P.delete_object(r->h, nullptr), AAPI_EINVAL);
    RC(P.set_object_utimes(r->h, nullptr, &t, &t), AAPI_EINVAL);
    aapi_time_t bad_ns = at(1, 1000000000u);
    RC(P.set_object_utimes(r->h, "/restored", &bad_ns, nullptr), AAPI_EINVAL);
    RC(P.set_object_utimes(r->h, "/restored/missing", &t, &t), AAPI_ENOENT);
    RC(P.set_object_utimes(r->h, "/restored", nullptr, nullptr), AAPI_EOK); // both unchanged

    aapi_object_t wo = 0;
    prop.obj_type = AAPI_OBJ_DIR;
    RC(P.create_object(r->h, "/restored/dir", &prop, 0, &wo), AAPI_EOK);
    RC(P.write_object(wo, "x", 1), AAPI_EINVAL); // a directory has no data
    RC(P.close_object(wo), AAPI_EOK);
    prop.obj_type = AAPI_OBJ_FILE;
    RC(P.create_object(r->h, "/restored/x", &prop, 0, &wo), AAPI_EOK);
    RC(P.write_object(wo, nullptr, 1), AAPI_EINVAL);
    got = kSentinel;
    RC(P.read_object(wo, buf, sizeof buf, &got), AAPI_ESEQUENCE); // LIFE-5
    CHECK(got == kSentinel);
    RC(P.close_object(wo), AAPI_EOK);
    RC(P.restore_postprocess(r->h, AAPI_ECANCELLED), AAPI_EOK); // rolled back
    RC(P.create_object(r->h, "/restored/y", &prop, 0, &o), AAPI_ESEQUENCE); // after the window
    close_session(r);
    close_session(b);

    // Discovery: NULLs, hosts, selections; each failure leaves no workload file (DISC-5).
    auto discover = [&](const char* const* sels, const char* const* hosts, const char* out,
                        const char* suffix, aapi_snapid_t* id, int want, int line) {
        auto d = open_session(kServer, AAPI_OP_DISCOVERY);
        check_rc(line, "aapi_discovery",
                 P.discovery(d->h, sels, hosts, out, suffix, AAPI_SCHED_FULL, id), want);
        close_session(d);
    };
    const char* const no_hosts[] = {nullptr};
    const char* const path_host[] = {"a/b", nullptr};
    const char* const missing[] = {"/no/such/selection", nullptr};
    const char* const relative[] = {"data", nullptr};
    discover(nullptr, kHosts, dir.c_str(), kSuffix, &snap, AAPI_EINVAL, __LINE__);
    discover(kSelections, nullptr, dir.c_str(), kSuffix, &snap, AAPI_EINVAL, __LINE__);
    discover(kSelections, kHosts, nullptr, kSuffix, &snap, AAPI_EINVAL, __LINE__);
    discover(kSelections, kHosts, dir.c_str(), nullptr, &snap, AAPI_EINVAL, __LINE__);
    discover(kSelections, kHosts, dir.c_str(), kSuffix, nullptr, AAPI_EINVAL, __LINE__);
    discover(kSelections, no_hosts, dir.c_str(), kSuffix, &snap, AAPI_EINVAL, __LINE__);
    discover(kSelections, path_host, dir.c_str(), kSuffix, &snap, AAPI_EINVAL, __LINE__);
    discover(missing, kHosts, dir.c_str(), kSuffix, &snap, AAPI_ENOENT, __LINE__);
    discover(relative, kHosts, dir.c_str(), kSuffix, &snap, AAPI_EINVAL, __LINE__);
    discover(kSelections, kHosts, (dir + "/no-such-dir").c_str(), kSuffix, &snap, AAPI_EIO,
             __LINE__);
    CHECK(count_entries(dir) == 0);
    auto d = open_session(kServer, AAPI_OP_DISCOVERY);
    RC(P.open_object(d->h, "/data/a", AAPI_OPEN_READ, &o), AAPI_ESEQUENCE);
    RC(P.postprocess(d->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_ESEQUENCE);
    close_session(d);

    // Postprocess: NULLs.
    auto pp = open_session(kServer, AAPI_OP_POSTPROCESS);
    RC(P.postprocess(pp->h, nullptr, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_EINVAL);
    RC(P.postprocess(pp->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, nullptr),
       AAPI_EINVAL);
    RC(P.discovery(pp->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_ESEQUENCE);
    close_session(pp);
}

// Exceptions thrown inside entry points come back as codes with their message (MEM-3).
void exceptions(const std::string& dir) {
    struct Case {
        uint32_t op;
        const char* inject;
        int want;
        const char* message; // in the last error
        bool logged;         // an ERROR line reaches the framework's log
    };
    const Case cases[] = {
        {AAPI_OP_BACKUP, "aapi_get_server_prop:int", AAPI_EINTERNAL, "unknown exception", true},
        {AAPI_OP_DISCOVERY, "aapi_discovery", AAPI_EINTERNAL,
         "injected failure in aapi_discovery", true},
        {AAPI_OP_BACKUP, "aapi_open_object:bad_alloc", AAPI_ENOMEM, "out of memory", false},
        {AAPI_OP_BACKUP, "aapi_read_object", AAPI_EINTERNAL,
         "injected failure in aapi_read_object", true},
        {AAPI_OP_RESTORE, "aapi_create_object:int", AAPI_EINTERNAL, "unknown exception", true},
        {AAPI_OP_RESTORE, "aapi_write_object:bad_alloc", AAPI_ENOMEM, "out of memory", false},
    };
    size_t done = 0;
    for (const Case& c : cases) {
        g_log.clear();
        auto s = open_session(kServer, c.op, c.inject);
        std::string fn = std::string(c.inject).substr(0, std::string(c.inject).find(':'));
        int got = -1;
        aapi_object_t o = kSentinel;
        char buf[16];
        size_t n = kSentinel;
        aapi_restore_info_t ri{};
        ri.struct_size = sizeof ri;
        ri.target_root = "";
        aapi_object_prop_t prop = empty_prop();
        prop.obj_type = AAPI_OBJ_FILE;
        if (fn == "aapi_get_server_prop") {
            aapi_server_info_t si{};
            si.struct_size = sizeof si;
            got = P.get_server_prop(s->h, &si);
            CHECK(si.srv_flags == 0);
        } else if (fn == "aapi_discovery") {
            aapi_snapid_t snap{};
            std::memset(snap.id, 'X', sizeof snap.id);
            got = P.discovery(s->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL,
                              &snap);
            CHECK(snap.id[0] == 'X' && count_entries(dir) == 0);
        } else if (fn == "aapi_open_object") {
            got = P.open_object(s->h, "/data/a", AAPI_OPEN_READ, &o);
            CHECK(o == kSentinel);
        } else if (fn == "aapi_read_object") {
            RC(P.open_object(s->h, "/data/a", AAPI_OPEN_READ, &o), AAPI_EOK);
            got = P.read_object(o, buf, sizeof buf, &n);
            CHECK(n == kSentinel);
            aapi_object_prop_t p = empty_prop();
            RC(P.get_object_prop(o, &p), AAPI_EOK); // the object is intact
            CHECK(p.size == 6);
            RC(P.close_object(o), AAPI_EOK);
        } else if (fn == "aapi_create_object") {
            RC(P.restore_preprocess(s->h, &ri), AAPI_EOK);
            got = P.create_object(s->h, "/data/thrown", &prop, 0, &o);
            CHECK(o == kSentinel);
            RC(P.restore_postprocess(s->h, AAPI_EOK), AAPI_EOK);
        } else if (fn == "aapi_write_object") {
            RC(P.restore_preprocess(s->h, &ri), AAPI_EOK);
            RC(P.create_object(s->h, "/data/thrown", &prop, 0, &o), AAPI_EOK);
            got = P.write_object(o, "abc", 3);
            aapi_object_prop_t p = empty_prop();
            RC(P.get_object_prop(o, &p), AAPI_EOK);
            CHECK(p.size == 0); // OBJ-5: nothing of a failed write is kept
            RC(P.close_object(o), AAPI_EOK);
            RC(P.restore_postprocess(s->h, AAPI_ENOMEM), AAPI_EOK);
        }
        std::string what = std::string(c.inject) + " becomes " + aapi_code_name(c.want);
        bool ok = check(__LINE__, got == c.want, what);
        std::string msg = last_error();
        ok &= check(__LINE__,
                    msg.find(fn) != std::string::npos && msg.find(c.message) != std::string::npos,
                    "last error of " + what + ": " + msg);
        ok &= check(__LINE__, g_log.saw(AAPI_LOG_ERROR, fn, c.message) == c.logged,
                    "an ERROR log line for " + what + (c.logged ? "" : ": none expected"));
        close_session(s);
        done += ok;
    }

    // The plugin is intact: nothing thrown was created, a clean session reads the object.
    auto s = open_session(kServer, AAPI_OP_BACKUP);
    CHECK(read_back(s->h, "/data/a", 16).data == "hello\n");
    aapi_object_prop_t p = empty_prop();
    RC(P.get_object_prop_byname(s->h, "/data/thrown", &p), AAPI_ENOENT);
    close_session(s);
    std::printf("exceptions: %zu of %zu injected exceptions came back as their codes\n", done,
                std::size(cases));
}

// aapi_get_last_error and its in/out size protocol (RC-6, RC-9).
void last_error_protocol() {
    aapi_object_t o = kSentinel;
    auto s = open_session(kServer, AAPI_OP_BACKUP);
    RC(P.open_object(s->h, "/data/nothing-here", AAPI_OPEN_READ, &o), AAPI_ENOENT);
    close_session(s);
    std::string msg = last_error();
    CHECK(msg.find("/data/nothing-here") != std::string::npos);
    size_t n = 0;
    RC(P.get_last_error(nullptr, &n), AAPI_EBUFSIZE);
    CHECK(n == msg.size() + 1);
    std::vector<char> small(msg.size(), 'Z');
    n = small.size();
    RC(P.get_last_error(small.data(), &n), AAPI_EBUFSIZE);
    CHECK(n == msg.size() + 1);
    CHECK(std::all_of(small.begin(), small.end(), [](char c) { return c == 'Z'; }));
    std::vector<char> exact(msg.size() + 1);
    n = exact.size();
    RC(P.get_last_error(exact.data(), &n), AAPI_EOK);
    CHECK(n == msg.size() + 1 && msg == exact.data());
    n = 5;
    RC(P.get_last_error(nullptr, &n), AAPI_EINVAL);
    RC(P.get_last_error(exact.data(), nullptr), AAPI_EINVAL);
    CHECK(last_error() == msg); // its own failures do not replace the message
    // A thread on which nothing failed has an empty message.
    std::thread([] {
        char buf[8] = "xxxxxxx";
        size_t size = sizeof buf;
        RC(P.get_last_error(buf, &size), AAPI_EOK);
        CHECK(size == 1 && buf[0] == '\0');
    }).join();
}

// aapi_terminate closes everything; a new cycle starts empty and old handles stay invalid.
void terminate_and_new_cycle(const std::string& dir) {
    auto s = open_session(kServer, AAPI_OP_BACKUP);
    aapi_object_t o = 0;
    RC(P.open_object(s->h, "/data/a", AAPI_OPEN_READ, &o), AAPI_EOK);
    RC(P.terminate(), AAPI_EOK); // with a session and an object open (LIFE-7, RES-2)
    RC(P.terminate(), AAPI_EOK);
    char buf[8];
    size_t n = 0;
    aapi_snapid_t snap{};
    RC(P.read_object(o, buf, sizeof buf, &n), AAPI_ESEQUENCE);
    RC(P.close_server(s->h), AAPI_ESEQUENCE);
    RC(P.pgn_claim("memory"), AAPI_ESEQUENCE);
    RC(P.discovery(s->h, kSelections, kHosts, dir.c_str(), kSuffix, AAPI_SCHED_FULL, &snap),
       AAPI_ESEQUENCE);

    init_and_claim();
    RC(P.read_object(o, buf, sizeof buf, &n), AAPI_EBADHANDLE);
    RC(P.close_server(s->h), AAPI_EBADHANDLE);
    auto again = open_session(kServer, AAPI_OP_BACKUP);
    CHECK(again->h != s->h); // handles are never reused
    aapi_object_t none = kSentinel;
    RC(P.open_object(again->h, "/data/a", AAPI_OPEN_READ, &none), AAPI_ENOENT); // store released
    close_session(again);
    RC(P.terminate(), AAPI_EOK);
}

// Make a private directory for workload files under $TMPDIR.
std::string make_temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && base[0] != '\0' ? base : "/tmp") +
                       "/aapi-cpp-driver.XXXXXX";
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    if (::mkdtemp(name.data()) == nullptr)
        return "";
    return name.data();
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s path/to/plugin.so\n", argv[0]);
        return 2;
    }
    // Say what this build carries, so a run under the sanitizers cannot pass without them.
    bool asan_runtime = dlsym(RTLD_DEFAULT, "__asan_init") != nullptr;
    bool ubsan_runtime = dlsym(RTLD_DEFAULT, "__ubsan_handle_add_overflow_abort") != nullptr ||
                         dlsym(RTLD_DEFAULT, "__ubsan_handle_add_overflow") != nullptr;
    std::printf("sanitizers: address=%s undefined=%s\n",
                DRIVER_ASAN && asan_runtime ? "on" : "off", ubsan_runtime ? "on" : "off");

    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        std::fprintf(stderr, "driver: cannot load %s: %s\n", argv[1], dlerror());
        return 2;
    }
    // The host never dlcloses a plugin; neither does this driver.
    const auto* marker = static_cast<const aapi_abi_marker_t*>(dlsym(lib, AAPI_MARKER_SYMBOL));
    if (!resolve_all(lib) || marker == nullptr) {
        std::fprintf(stderr, "driver: %s is not an aapi plugin\n", argv[1]);
        return 2;
    }
    CHECK(std::memcmp(marker->magic, AAPI_ABI_MAGIC, 8) == 0 &&
          marker->abi_major == AAPI_ABI_MAJOR && marker->abi_minor <= AAPI_ABI_MINOR &&
          marker->marker_size == sizeof(aapi_abi_marker_t)); // LOAD-2
    std::string dir = make_temp_dir();
    if (dir.empty()) {
        std::fprintf(stderr, "driver: cannot create a directory under $TMPDIR: %s\n",
                     std::strerror(errno));
        return 2;
    }

    handshake();
    round_trip(dir);
    bad_handles(dir);
    bad_calls(dir);
    exceptions(dir);
    last_error_protocol();
    terminate_and_new_cycle(dir);
    CHECK(!g_log.bad_ctx); // every log line came with the framework's context

    remove_entries(dir);
    ::rmdir(dir.c_str());
    std::printf("%d checks, %d failed\n", g_checks.load(), g_failures.load());
    if (g_failures != 0)
        return 1;
    std::printf("all checks passed\n");
    return 0;
}
