// plugin.cpp: a small aapi workload plugin in C++17, showing two things a C++ plugin must get
// right by hand:
//
//  1. No exception ever leaves an extern "C" entry point (MEM-3). Every entry point is one line,
//     `return boundary("aapi_x", [&] { ... });`, and boundary() catches everything: an expected
//     failure (a Failure carrying an AAPI_E* code) becomes that code, std::bad_alloc becomes
//     AAPI_ENOMEM, and any other exception, standard or not, becomes AAPI_EINTERNAL with a
//     last-error message and an ERROR log line. The process goes on.
//  2. Handle tables and resources with RAII (RC-4, RES-2): sessions and objects live in
//     HandleTable<T>s of shared_ptrs under a mutex, with kind-tagged 64-bit handles that are never
//     reused; closing a handle drops the last reference and the destructor releases what it
//     held. File descriptors are held by an owning Fd.
//
// The workload ("memory") is an in-memory store of objects (files and directories, keyed by
// absolute path), one store per server name, alive until aapi_terminate. A restore writes objects
// into it, a discovery and backup read them back; the store is not persisted, so the plugin is a
// pattern to copy, not a product. A session property injects exceptions for tests:
// memory.throw=<entry point>[:bad_alloc|:int] makes that entry point throw.
//
// Build with the Makefile or CMakeLists.txt beside this file, or from the repository root with
// their flags, as one command: only the aapi_* symbols may leave the library, so the C++
// library's inline and template code is hidden too (-fvisibility-inlines-hidden, exports.map):
//   g++ -std=c++17 -Wall -Wextra -Werror -pthread -O2 -g -fPIC -fvisibility=hidden
//       -fvisibility-inlines-hidden -shared -Wl,--version-script=examples/cpp-plugin/exports.map
//       -I include -o libaapi_cpp_example.so examples/cpp-plugin/plugin.cpp
// `make check` runs the local driver (driver.cpp) on it; `make SANITIZE=1 check` does so under
// AddressSanitizer and UndefinedBehaviorSanitizer.

#include "aapi.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

AAPI_DEFINE_ABI_MARKER(); // LOAD-2

namespace {

constexpr const char* kName = "memory-cpp";
constexpr const char* kWorkload = "memory";
constexpr uint64_t kStoreCapacity = 256u << 20; // bytes a store accepts (RST-1: AAPI_ENOSPC)

// ------------------------------------------------------------------------------------------
// Errors and the exception boundary (MEM-3, RC-9)
// ------------------------------------------------------------------------------------------

// An expected failure: thrown anywhere below an entry point, returned as its code.
struct Failure : std::exception {
    Failure(int c, std::string m) : code(c), message(std::move(m)) {}
    const char* what() const noexcept override { return message.c_str(); }
    int code;
    std::string message;
};

[[noreturn]] void fail(int code, std::string message) { throw Failure(code, std::move(message)); }

void require(bool ok, const char* message) {
    if (!ok)
        fail(AAPI_EINVAL, message);
}

// Per thread, fixed size: writing it can never throw, so the catch handlers below are safe.
thread_local char t_last_error[1024];

void set_last_error(const char* fn, const char* what) noexcept {
    std::snprintf(t_last_error, sizeof t_last_error, "%s: %s", fn, what);
}

void host_log(uint32_t level, const char* fn, const char* what) noexcept;

// The only way into plugin code. Nothing thrown inside `body` crosses the C boundary.
template <class Body>
int boundary(const char* fn, Body&& body) noexcept {
    try {
        return body();
    } catch (const Failure& f) {
        set_last_error(fn, f.what());
        return f.code;
    } catch (const std::bad_alloc&) {
        set_last_error(fn, "out of memory");
        return AAPI_ENOMEM;
    } catch (const std::exception& e) {
        set_last_error(fn, e.what());
        host_log(AAPI_LOG_ERROR, fn, e.what());
        return AAPI_EINTERNAL;
    } catch (...) {
        set_last_error(fn, "unknown exception");
        host_log(AAPI_LOG_ERROR, fn, "unknown exception");
        return AAPI_EINTERNAL;
    }
}

// ------------------------------------------------------------------------------------------
// RAII handle tables (RC-4, THR-2)
// ------------------------------------------------------------------------------------------

// Handles: kind tag in the top byte, a counter that is never reused below it. 0 is never valid,
// a closed or forged handle is not in the map, a handle of the other kind has the other tag.
template <class T>
class HandleTable {
  public:
    explicit HandleTable(uint64_t tag, const char* kind) : tag_(tag << 56), kind_(kind) {}

    uint64_t insert(std::shared_ptr<T> item) {
        std::lock_guard<std::mutex> lock(mu_);
        uint64_t h = tag_ | (++next_ & 0x00FFFFFFFFFFFFFFu);
        items_.emplace(h, std::move(item));
        return h;
    }

    std::shared_ptr<T> get(uint64_t h) const {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = items_.find(h);
        if (it == items_.end())
            fail(AAPI_EBADHANDLE, describe(h));
        return it->second;
    }

    std::shared_ptr<T> remove(uint64_t h) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = items_.find(h);
        if (it == items_.end())
            fail(AAPI_EBADHANDLE, describe(h));
        auto item = std::move(it->second);
        items_.erase(it);
        return item;
    }

    // Remove every item `pred` selects; the caller finishes them outside the lock.
    template <class Pred>
    std::vector<std::shared_ptr<T>> remove_if(Pred pred) {
        std::lock_guard<std::mutex> lock(mu_);
        std::vector<std::shared_ptr<T>> out;
        for (auto it = items_.begin(); it != items_.end();) {
            if (pred(*it->second)) {
                out.push_back(std::move(it->second));
                it = items_.erase(it);
            } else {
                ++it;
            }
        }
        return out;
    }

  private:
    std::string describe(uint64_t h) const {
        if (h == 0)
            return std::string(kind_) + " handle 0 is never valid";
        return std::string(kind_) + " handle " + std::to_string(h) +
               ((h & 0xFF00000000000000u) == tag_ ? " is closed or was never issued"
                                                  : " is not a " + std::string(kind_) + " handle");
    }

    mutable std::mutex mu_;
    std::unordered_map<uint64_t, std::shared_ptr<T>> items_;
    uint64_t tag_;
    uint64_t next_ = 0;
    const char* kind_;
};

// An owned file descriptor: closed by the destructor on every path, exceptions included.
class Fd {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    int get() const { return fd_; }
    int release_and_close() {
        int rc = ::close(fd_);
        fd_ = -1;
        return rc;
    }

  private:
    int fd_;
};

// ------------------------------------------------------------------------------------------
// The workload: stores, sessions, objects
// ------------------------------------------------------------------------------------------

struct Entry {
    uint32_t type = AAPI_OBJ_FILE;
    std::string data;
    uint32_t mode = 0600;
    aapi_time_t atime{};
    aapi_time_t mtime{};
};

using Store = std::map<std::string, Entry>; // absolute path -> object, in path-byte order

struct Session {
    std::string server;
    const aapi_session_def_t* def = nullptr; // framework-owned, valid until close (MEM-1)
    std::string throw_at;                     // memory.throw: entry point that throws
    std::string throw_kind;
    // Guarded by the global mutex:
    bool discovered = false;
    bool postprocessed = false;
    int restore_phase = 0; // 0 before preprocess, 1 open, 2 finished
    std::string target_root;
    struct Undo {
        std::string path;
        bool existed;
        Entry old;
    };
    std::vector<Undo> undo; // what this restore changed, to roll back (RST-6, RST-7)

    void log(uint32_t level, const std::string& message) const {
        def->sd_log_callback(def->sd_callback_ctx, level, message.c_str());
    }

    // Fault injection for the tests of the boundary.
    void maybe_throw(const char* fn) const {
        if (throw_at != fn)
            return;
        if (throw_kind == "bad_alloc")
            throw std::bad_alloc();
        if (throw_kind == "int")
            throw 42;
        throw std::runtime_error(std::string("injected failure in ") + fn);
    }
};

struct Object {
    std::shared_ptr<Session> session;
    bool writing = false;
    bool overwrite = false;
    std::string path;
    Entry entry; // read: a copy taken at open (never torn, OBJ-4); write: being built
    size_t pos = 0;
};

struct Global {
    std::mutex mu; // the cycle state, the stores and the sessions' mutable state
    bool initialized = false;
    bool claimed = false;
    aapi_log_fn log = nullptr;
    void* log_ctx = nullptr;
    std::map<std::string, Store> stores;
};

Global& global() {
    static Global g; // built on first use: loading the library does nothing (LOAD-4)
    return g;
}

HandleTable<Session>& sessions() {
    static HandleTable<Session> t(0x53, "server");
    return t;
}

HandleTable<Object>& objects() {
    static HandleTable<Object> t(0x4F, "object");
    return t;
}

void host_log(uint32_t level, const char* fn, const char* what) noexcept {
    char line[1100];
    std::snprintf(line, sizeof line, "%s: %s: %s", kName, fn, what);
    std::lock_guard<std::mutex> lock(global().mu);
    if (global().log != nullptr)
        global().log(global().log_ctx, level, line);
}

// Call order (LIFE-1, LIFE-3).
void require_claimed(const char* fn) {
    std::lock_guard<std::mutex> lock(global().mu);
    if (!global().initialized)
        fail(AAPI_ESEQUENCE, std::string(fn) + " before aapi_pgn_init");
    if (!global().claimed)
        fail(AAPI_ESEQUENCE, std::string(fn) + " before a successful aapi_pgn_claim");
}

std::shared_ptr<Session> session_for(aapi_server_t h, uint32_t op, const char* fn) {
    auto s = sessions().get(h);
    if (op != 0 && s->def->sd_operation != op)
        fail(AAPI_ESEQUENCE, std::string(fn) + " is not legal in this session's operation");
    return s;
}

// LIFE-4: restore object calls only between restore_preprocess and restore_postprocess.
void require_restore_window(const Session& s, const char* fn) {
    std::lock_guard<std::mutex> lock(global().mu);
    if (s.restore_phase != 1)
        fail(AAPI_ESEQUENCE, std::string(fn) + (s.restore_phase == 0
                                                    ? " before aapi_restore_preprocess"
                                                    : " after aapi_restore_postprocess"));
}

std::string absolute_path(const char* p, const char* what) {
    require(p[0] != '\0', "path is empty");
    if (p[0] != '/')
        fail(AAPI_EINVAL, std::string(what) + " \"" + p + "\" is not absolute");
    std::string s(p);
    while (s.size() > 1 && s.back() == '/')
        s.pop_back();
    return s;
}

// "under" in path terms: `p` is `root` or below it.
bool is_under(const std::string& p, const std::string& root) {
    if (root == "/")
        return true;
    return p == root || (p.size() > root.size() && p.compare(0, root.size(), root) == 0 &&
                         p[root.size()] == '/');
}

void check_struct(uint32_t size, size_t need, const char* what) {
    if (size < need)
        fail(AAPI_EABI, std::string(what) + "->struct_size " + std::to_string(size) +
                            " is smaller than the ABI 1.0 size " + std::to_string(need));
}

aapi_object_prop_t props_of(const Entry& e, uint32_t caller_size) {
    aapi_object_prop_t p{};
    p.struct_size = caller_size; // ABI-5: the caller's size stays as it was
    p.obj_type = e.type;
    p.size = e.type == AAPI_OBJ_DIR ? 0 : e.data.size();
    p.mode = e.mode;
    p.atime = e.atime;
    p.mtime = e.mtime;
    p.valid = AAPI_PROP_SIZE | AAPI_PROP_MODE | AAPI_PROP_ATIME | AAPI_PROP_MTIME; // OBJ-7
    return p;
}

// ------------------------------------------------------------------------------------------
// Workload files (docs/workload-file.md), with an owned descriptor and an atomic rename
// ------------------------------------------------------------------------------------------

uint32_t crc32(const std::string& bytes) {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : bytes)
        c = table[(c ^ b) & 0xFFu] ^ (c >> 8);
    return ~c;
}

void put32(std::string& b, uint32_t v) {
    for (int i = 0; i < 4; i++)
        b.push_back(static_cast<char>(v >> (8 * i)));
}

void put64(std::string& b, uint64_t v) {
    for (int i = 0; i < 8; i++)
        b.push_back(static_cast<char>(v >> (8 * i)));
}

void write_workload(const std::string& path, const std::string& host,
                    const std::vector<std::pair<std::string, const Entry*>>& records) {
    std::string b(AAPI_WKLD_MAGIC, 8);
    put32(b, AAPI_WKLD_FORMAT_VERSION);
    put32(b, 0);
    put32(b, 0); // no snapshot
    put32(b, static_cast<uint32_t>(host.size()));
    b += host;
    for (const auto& r : records) {
        put32(b, static_cast<uint32_t>(16 + r.first.size()));
        put64(b, r.second->type == AAPI_OBJ_DIR ? 0 : r.second->data.size());
        put32(b, r.second->type == AAPI_OBJ_DIR ? AAPI_WKLD_DIR : 0);
        put32(b, static_cast<uint32_t>(r.first.size()));
        b += r.first;
    }
    put32(b, 0);
    put64(b, records.size());
    put32(b, crc32(b));

    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)); // DISC-4
    if (fd.get() < 0)
        fail(AAPI_EIO, "cannot create " + tmp + ": " + std::strerror(errno));
    size_t off = 0;
    while (off < b.size()) {
        ssize_t n = ::write(fd.get(), b.data() + off, b.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ::unlink(tmp.c_str());
            fail(AAPI_EIO, "cannot write " + tmp + ": " + std::strerror(errno));
        }
        off += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0 || fd.release_and_close() != 0 ||
        ::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        fail(AAPI_EIO, "cannot write " + path + ": " + std::strerror(err));
    }
}

// Copy `bytes` and a NUL into a caller buffer with the in/out size protocol (RC-6).
int copy_out(const std::string& bytes, char* buf, size_t* size) {
    size_t need = bytes.size() + 1;
    if (*size < need || buf == nullptr) {
        std::string message = "the buffer holds " + std::to_string(*size) + " bytes, " +
                              std::to_string(need) + " are needed";
        *size = need;
        fail(AAPI_EBUFSIZE, std::move(message));
    }
    std::memcpy(buf, bytes.c_str(), need);
    *size = need;
    return AAPI_EOK;
}

void close_session(const std::shared_ptr<Session>& s) {
    // LIFE-6: objects still open on it are dropped; their destructors free them.
    objects().remove_if([&](const Object& o) { return o.session == s; });
}

} // namespace

// ------------------------------------------------------------------------------------------
// The 22 entry points (LOAD-1). Each is `return boundary(name, [&] { ... });`.
// ------------------------------------------------------------------------------------------

int aapi_pgn_init(const aapi_host_info_t* host_info, aapi_plugin_info_t* plugin_info) {
    return boundary("aapi_pgn_init", [&] {
        std::lock_guard<std::mutex> lock(global().mu);
        if (global().initialized) // LIFE-2
            fail(AAPI_ESEQUENCE, "aapi_pgn_init called again without aapi_terminate");
        require(host_info != nullptr && plugin_info != nullptr, "NULL argument");
        check_struct(host_info->struct_size, sizeof(aapi_host_info_t), "host_info");
        if (host_info->abi_major != AAPI_ABI_MAJOR) // ABI-2
            fail(AAPI_EABI, "framework ABI major " + std::to_string(host_info->abi_major) +
                                " differs from this plugin's");
        check_struct(plugin_info->struct_size, sizeof(aapi_plugin_info_t), "plugin_info");
        require(host_info->log_callback != nullptr, "host_info->log_callback is NULL");
        global().initialized = true;
        global().claimed = false;
        global().log = host_info->log_callback;
        global().log_ctx = host_info->callback_ctx;
        plugin_info->abi_major = AAPI_ABI_MAJOR;
        plugin_info->abi_minor = AAPI_ABI_MINOR;
        plugin_info->name = kName;
        plugin_info->version = "0.1.0";
        plugin_info->vendor = "aapi project";
        plugin_info->workload_types = kWorkload;
        plugin_info->capabilities =
            AAPI_CAP_CONCURRENT_OBJECTS | AAPI_CAP_RESTORE | AAPI_CAP_ALTERNATE_RESTORE;
        plugin_info->max_concurrent_objects = 4;
        plugin_info->reserved = 0;
        return AAPI_EOK;
    });
}

int aapi_pgn_claim(const char* workload_type) {
    return boundary("aapi_pgn_claim", [&] {
        std::lock_guard<std::mutex> lock(global().mu);
        if (!global().initialized)
            fail(AAPI_ESEQUENCE, "aapi_pgn_claim before aapi_pgn_init");
        require(workload_type != nullptr && workload_type[0] != '\0', "workload_type is empty");
        if (std::strcmp(workload_type, kWorkload) != 0)
            fail(AAPI_ENOTCLAIMED, std::string("workload type \"") + workload_type +
                                       "\" is not handled");
        global().claimed = true;
        return AAPI_EOK;
    });
}

int aapi_open_server(const char* server, const aapi_session_def_t* session,
                     aapi_server_t* server_handle) {
    return boundary("aapi_open_server", [&] {
        require_claimed("aapi_open_server");
        require(server != nullptr && session != nullptr && server_handle != nullptr,
                "NULL argument");
        check_struct(session->struct_size, sizeof(aapi_session_def_t), "session");
        require(server[0] != '\0', "the server name is empty");
        if (session->abi_major != AAPI_ABI_MAJOR)
            fail(AAPI_EABI, "session ABI major differs from this plugin's");
        require(session->sd_operation >= AAPI_OP_DISCOVERY &&
                    session->sd_operation <= AAPI_OP_RESTORE,
                "session->sd_operation is unknown");
        require(session->sd_log_callback != nullptr && session->sd_keepalive_callback != nullptr &&
                    session->sd_credential_callback != nullptr,
                "a session callback is NULL");
        require(session->sd_property_count == 0 || session->sd_properties != nullptr,
                "session->sd_properties is NULL");
        auto s = std::make_shared<Session>();
        s->server = server;
        s->def = session;
        for (size_t i = 0; i < session->sd_property_count; i++) {
            const aapi_property_t& p = session->sd_properties[i];
            require(p.key != nullptr && p.value != nullptr, "a property is NULL");
            if (std::strcmp(p.key, "memory.throw") == 0) {
                std::string v = p.value;
                auto colon = v.find(':');
                s->throw_at = v.substr(0, colon);
                s->throw_kind = colon == std::string::npos ? "" : v.substr(colon + 1);
            }
        }
        *server_handle = sessions().insert(std::move(s)); // RC-5: on success only
        return AAPI_EOK;
    });
}

int aapi_close_server(aapi_server_t server) {
    return boundary("aapi_close_server", [&] {
        require_claimed("aapi_close_server");
        close_session(sessions().remove(server)); // a second close: AAPI_EBADHANDLE
        return AAPI_EOK;
    });
}

int aapi_get_server_prop(aapi_server_t server, aapi_server_info_t* server_info) {
    return boundary("aapi_get_server_prop", [&] {
        require_claimed("aapi_get_server_prop");
        require(server_info != nullptr, "server_info is NULL");
        auto s = session_for(server, 0, "aapi_get_server_prop");
        s->maybe_throw("aapi_get_server_prop");
        check_struct(server_info->struct_size, sizeof(aapi_server_info_t), "server_info");
        server_info->reserved = 0;
        server_info->srv_flags = AAPI_SRVC_FULL_BACKUP_SUPPORT; // RC-8: full backups only
        return AAPI_EOK;
    });
}

int aapi_discovery(aapi_server_t server, const char* const* selections,
                   const char* const* backuphosts, const char* wkldoutdir,
                   const char* wkldfilesuffix, uint32_t schedtype, aapi_snapid_t* snapid) {
    return boundary("aapi_discovery", [&] {
        const char* fn = "aapi_discovery";
        require_claimed(fn);
        require(selections != nullptr && backuphosts != nullptr && wkldoutdir != nullptr &&
                    wkldfilesuffix != nullptr && snapid != nullptr,
                "NULL argument");
        auto s = session_for(server, AAPI_OP_DISCOVERY, fn);
        s->maybe_throw(fn);
        {
            std::lock_guard<std::mutex> lock(global().mu);
            if (s->discovered)
                fail(AAPI_ESEQUENCE, "aapi_discovery called twice in one session");
            s->discovered = true;
        }
        std::vector<std::string> hosts;
        for (size_t i = 0; backuphosts[i] != nullptr; i++) {
            std::string h = backuphosts[i];
            require(!h.empty() && h.find('/') == std::string::npos && h != "." && h != "..",
                    "a backup host cannot be a file name");
            hosts.push_back(h);
        }
        require(!hosts.empty() && selections[0] != nullptr, "no selection or no backup host");
        if (schedtype != AAPI_SCHED_FULL) // RC-8: before anything is written
            fail(AAPI_ESCHED_NOT_SUPPORTED, "only full backups are supported");

        // Select under the lock, copy the entries out, write the files without it.
        std::map<std::string, Entry> chosen;
        {
            std::lock_guard<std::mutex> lock(global().mu);
            const Store& store = global().stores[s->server];
            for (size_t i = 0; selections[i] != nullptr; i++) {
                std::string sel = absolute_path(selections[i], "selection");
                bool found = false;
                for (const auto& kv : store)
                    if (is_under(kv.first, sel)) {
                        chosen.emplace(kv.first, kv.second); // DISC-2: each object once
                        found = true;
                    }
                if (!found)
                    fail(AAPI_ENOENT, "selection " + sel + " does not exist");
            }
        }
        // DISC-9: largest first, each to the host with the fewest bytes so far.
        std::vector<const std::pair<const std::string, Entry>*> order;
        for (const auto& kv : chosen)
            order.push_back(&kv);
        std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) {
            return a->second.data.size() > b->second.data.size();
        });
        std::vector<uint64_t> bytes(hosts.size());
        std::vector<std::vector<std::pair<std::string, const Entry*>>> files(hosts.size());
        for (auto* kv : order) {
            size_t best = std::min_element(bytes.begin(), bytes.end()) - bytes.begin();
            bytes[best] += kv->second.data.size();
            files[best].emplace_back(kv->first, &kv->second);
        }
        std::vector<std::string> written;
        try {
            for (size_t h = 0; h < hosts.size(); h++) {
                std::sort(files[h].begin(), files[h].end()); // path order (DISC-3)
                std::string path = std::string(wkldoutdir) + "/" + hosts[h] + wkldfilesuffix;
                write_workload(path, hosts[h], files[h]);
                written.push_back(path);
            }
        } catch (...) {
            for (const auto& p : written) // DISC-5: no workload file is left behind
                ::unlink(p.c_str());
            throw;
        }
        std::memset(snapid->id, 0, sizeof snapid->id); // no snapshot: ""
        return AAPI_EOK;
    });
}

int aapi_postprocess(aapi_server_t server, const char* const* selections,
                     const char* const* backuphosts, const char* wkldoutdir,
                     const char* wkldfilesuffix, uint32_t schedtype, const aapi_snapid_t* snapid) {
    return boundary("aapi_postprocess", [&] {
        (void)schedtype;
        require_claimed("aapi_postprocess");
        require(selections != nullptr && backuphosts != nullptr && wkldoutdir != nullptr &&
                    wkldfilesuffix != nullptr && snapid != nullptr,
                "NULL argument");
        auto s = session_for(server, AAPI_OP_POSTPROCESS, "aapi_postprocess");
        std::lock_guard<std::mutex> lock(global().mu);
        if (s->postprocessed)
            fail(AAPI_ESEQUENCE, "aapi_postprocess called twice in one session");
        s->postprocessed = true;
        if (snapid->id[0] != '\0') // this plugin takes no snapshots
            fail(AAPI_ESNAPSHOT, std::string("unknown snapshot ") + snapid->id);
        return AAPI_EOK; // DISC-7: "" means nothing to delete
    });
}

int aapi_get_snappath_from_realpath(aapi_server_t server, const char* snapname,
                                    const char* realpath, char* snappath,
                                    size_t* snappath_size) {
    return boundary("aapi_get_snappath_from_realpath", [&] {
        const char* fn = "aapi_get_snappath_from_realpath";
        require_claimed(fn);
        require(snapname != nullptr && realpath != nullptr && snappath_size != nullptr,
                "NULL argument");
        require(snappath != nullptr || *snappath_size == 0, "snappath is NULL with a size");
        auto s = session_for(server, AAPI_OP_BACKUP, fn);
        if (snapname[0] != '\0')
            fail(AAPI_ESNAPSHOT, std::string("unknown snapshot ") + snapname);
        return copy_out(absolute_path(realpath, "realpath"), snappath, snappath_size);
    });
}

int aapi_open_object(aapi_server_t server, const char* path, uint32_t flags,
                     aapi_object_t* object) {
    return boundary("aapi_open_object", [&] {
        const char* fn = "aapi_open_object";
        require_claimed(fn);
        require(path != nullptr && object != nullptr, "NULL argument");
        auto s = session_for(server, AAPI_OP_BACKUP, fn);
        s->maybe_throw(fn);
        require(flags == AAPI_OPEN_READ, "flags must be AAPI_OPEN_READ");
        auto o = std::make_shared<Object>();
        o->session = s;
        o->path = absolute_path(path, "path");
        {
            std::lock_guard<std::mutex> lock(global().mu);
            const Store& store = global().stores[s->server];
            auto it = store.find(o->path);
            if (it == store.end())
                fail(AAPI_ENOENT, o->path + " does not exist");
            o->entry = it->second; // the object as of its open
        }
        *object = objects().insert(std::move(o));
        return AAPI_EOK;
    });
}

int aapi_read_object(aapi_object_t object, void* buf, size_t buf_size, size_t* bytes_read) {
    return boundary("aapi_read_object", [&] {
        require_claimed("aapi_read_object");
        require(buf != nullptr && bytes_read != nullptr, "NULL argument");
        auto o = objects().get(object);
        o->session->maybe_throw("aapi_read_object");
        if (o->writing) // LIFE-5
            fail(AAPI_ESEQUENCE, "aapi_read_object on an object created for writing");
        require(buf_size > 0, "buf_size is 0");
        size_t n = std::min(buf_size, o->entry.data.size() - o->pos); // 0 at the end (OBJ-1)
        std::memcpy(buf, o->entry.data.data() + o->pos, n);
        o->pos += n;
        *bytes_read = n;
        return AAPI_EOK;
    });
}

int aapi_get_object_prop(aapi_object_t object, aapi_object_prop_t* prop) {
    return boundary("aapi_get_object_prop", [&] {
        require_claimed("aapi_get_object_prop");
        require(prop != nullptr, "prop is NULL");
        auto o = objects().get(object);
        check_struct(prop->struct_size, sizeof(aapi_object_prop_t), "prop");
        *prop = props_of(o->entry, prop->struct_size);
        return AAPI_EOK;
    });
}

int aapi_get_object_prop_byname(aapi_server_t server, const char* path,
                                aapi_object_prop_t* prop) {
    return boundary("aapi_get_object_prop_byname", [&] {
        const char* fn = "aapi_get_object_prop_byname";
        require_claimed(fn);
        require(path != nullptr && prop != nullptr, "NULL argument");
        auto s = session_for(server, 0, fn);
        uint32_t op = s->def->sd_operation;
        if (op == AAPI_OP_RESTORE)
            require_restore_window(*s, fn);
        else if (op != AAPI_OP_BACKUP)
            fail(AAPI_ESEQUENCE, std::string(fn) + " is not legal in this session's operation");
        check_struct(prop->struct_size, sizeof(aapi_object_prop_t), "prop");
        std::string p = absolute_path(path, "path");
        std::lock_guard<std::mutex> lock(global().mu);
        const Store& store = global().stores[s->server];
        auto it = store.find(p);
        if (it == store.end())
            fail(AAPI_ENOENT, p + " does not exist");
        *prop = props_of(it->second, prop->struct_size);
        return AAPI_EOK;
    });
}

int aapi_restore_preprocess(aapi_server_t server, const aapi_restore_info_t* restore_info) {
    return boundary("aapi_restore_preprocess", [&] {
        const char* fn = "aapi_restore_preprocess";
        require_claimed(fn);
        require(restore_info != nullptr, "restore_info is NULL");
        auto s = session_for(server, AAPI_OP_RESTORE, fn);
        std::lock_guard<std::mutex> lock(global().mu);
        if (s->restore_phase != 0)
            fail(AAPI_ESEQUENCE, "aapi_restore_preprocess called twice");
        check_struct(restore_info->struct_size, sizeof(aapi_restore_info_t), "restore_info");
        require(restore_info->target_root != nullptr, "target_root is NULL");
        const Store& store = global().stores[s->server];
        std::string root;
        if (restore_info->target_root[0] != '\0') {
            root = absolute_path(restore_info->target_root, "target_root");
            auto it = store.find(root);
            if (root != "/" && (it == store.end() || it->second.type != AAPI_OBJ_DIR))
                fail(AAPI_ENOENT, "target root " + root + " is not an existing directory");
        }
        uint64_t used = 0;
        for (const auto& kv : store)
            used += kv.second.data.size();
        if (restore_info->total_bytes > kStoreCapacity - std::min(used, kStoreCapacity))
            fail(AAPI_ENOSPC, "the store cannot hold " +
                                  std::to_string(restore_info->total_bytes) + " more bytes");
        s->target_root = root;
        s->restore_phase = 1;
        return AAPI_EOK;
    });
}

int aapi_create_object(aapi_server_t server, const char* path, const aapi_object_prop_t* prop,
                       uint32_t flags, aapi_object_t* object) {
    return boundary("aapi_create_object", [&] {
        const char* fn = "aapi_create_object";
        require_claimed(fn);
        require(path != nullptr && prop != nullptr && object != nullptr, "NULL argument");
        auto s = session_for(server, AAPI_OP_RESTORE, fn);
        require_restore_window(*s, fn);
        s->maybe_throw(fn);
        check_struct(prop->struct_size, sizeof(aapi_object_prop_t), "prop");
        require((flags & ~static_cast<uint32_t>(AAPI_CREATE_OVERWRITE)) == 0, "unknown flags");
        auto o = std::make_shared<Object>();
        o->session = s;
        o->writing = true;
        o->overwrite = (flags & AAPI_CREATE_OVERWRITE) != 0;
        o->path = absolute_path(path, "path");
        require(prop->obj_type >= AAPI_OBJ_FILE && prop->obj_type <= AAPI_OBJ_SYMLINK,
                "unknown object type");
        if (prop->obj_type == AAPI_OBJ_SYMLINK)
            fail(AAPI_ENOTSUP, "the memory workload has no symbolic links");
        if (!s->target_root.empty() && !is_under(o->path, s->target_root))
            fail(AAPI_EINVAL, o->path + " is outside the alternate root " + s->target_root);
        o->entry.type = prop->obj_type;
        if (prop->valid & AAPI_PROP_MODE)
            o->entry.mode = prop->mode & 07777;
        if (prop->valid & AAPI_PROP_ATIME)
            o->entry.atime = prop->atime;
        if (prop->valid & AAPI_PROP_MTIME)
            o->entry.mtime = prop->mtime;
        {
            std::lock_guard<std::mutex> lock(global().mu);
            const Store& store = global().stores[s->server];
            auto it = store.find(o->path);
            bool reuse = it != store.end() && it->second.type == AAPI_OBJ_DIR &&
                         o->entry.type == AAPI_OBJ_DIR;
            if (it != store.end() && !reuse && !o->overwrite) // RST-3
                fail(AAPI_EEXIST, o->path + " already exists");
        }
        *object = objects().insert(std::move(o));
        return AAPI_EOK;
    });
}

int aapi_write_object(aapi_object_t object, const void* buf, size_t len) {
    return boundary("aapi_write_object", [&] {
        require_claimed("aapi_write_object");
        require(buf != nullptr || len == 0, "buf is NULL");
        auto o = objects().get(object);
        if (!o->writing) // LIFE-5
            fail(AAPI_ESEQUENCE, "aapi_write_object on an object opened for reading");
        if (len == 0)
            return AAPI_EOK;
        require(o->entry.type != AAPI_OBJ_DIR, "a directory has no data");
        o->session->maybe_throw("aapi_write_object");
        // OBJ-5: append() either takes all bytes or throws (bad_alloc -> AAPI_ENOMEM), and a
        // throw leaves the string as it was.
        o->entry.data.append(static_cast<const char*>(buf), len);
        return AAPI_EOK;
    });
}

int aapi_flush(aapi_object_t object) {
    return boundary("aapi_flush", [&] {
        require_claimed("aapi_flush");
        auto o = objects().get(object);
        if (!o->writing)
            fail(AAPI_ESEQUENCE, "aapi_flush on an object opened for reading");
        return AAPI_EOK; // the bytes are in the store's memory already
    });
}

int aapi_close_object(aapi_object_t object) {
    return boundary("aapi_close_object", [&] {
        require_claimed("aapi_close_object");
        auto o = objects().remove(object); // OBJ-8: gone whatever happens next
        if (!o->writing)
            return AAPI_EOK; // the shared_ptr's destructor frees the copy
        // OBJ-6: the object becomes visible only now; RST-6: remember what it replaced.
        std::lock_guard<std::mutex> lock(global().mu);
        Store& store = global().stores[o->session->server];
        auto it = store.find(o->path);
        Session::Undo undo{o->path, it != store.end(), it != store.end() ? it->second : Entry{}};
        o->session->undo.push_back(std::move(undo));
        store[o->path] = std::move(o->entry);
        return AAPI_EOK;
    });
}

int aapi_set_object_utimes(aapi_server_t server, const char* path, const aapi_time_t* atime,
                           const aapi_time_t* mtime) {
    return boundary("aapi_set_object_utimes", [&] {
        const char* fn = "aapi_set_object_utimes";
        require_claimed(fn);
        require(path != nullptr, "path is NULL");
        auto s = session_for(server, AAPI_OP_RESTORE, fn);
        require_restore_window(*s, fn);
        require((atime == nullptr || atime->nsec < 1000000000u) &&
                    (mtime == nullptr || mtime->nsec < 1000000000u),
                "nanoseconds out of range");
        std::string p = absolute_path(path, "path");
        std::lock_guard<std::mutex> lock(global().mu);
        Store& store = global().stores[s->server];
        auto it = store.find(p);
        if (it == store.end())
            fail(AAPI_ENOENT, p + " does not exist");
        if (atime != nullptr)
            it->second.atime = *atime;
        if (mtime != nullptr)
            it->second.mtime = *mtime;
        return AAPI_EOK;
    });
}

int aapi_delete_object(aapi_server_t server, const char* path) {
    return boundary("aapi_delete_object", [&] {
        const char* fn = "aapi_delete_object";
        require_claimed(fn);
        require(path != nullptr, "path is NULL");
        auto s = session_for(server, AAPI_OP_RESTORE, fn);
        require_restore_window(*s, fn);
        std::string p = absolute_path(path, "path");
        std::lock_guard<std::mutex> lock(global().mu);
        Store& store = global().stores[s->server];
        auto it = store.find(p);
        if (it == store.end())
            fail(AAPI_ENOENT, p + " does not exist");
        auto next = std::next(it);
        if (it->second.type == AAPI_OBJ_DIR && next != store.end() && is_under(next->first, p))
            fail(AAPI_EINVAL, "directory " + p + " is not empty");
        s->undo.push_back(Session::Undo{p, true, it->second});
        store.erase(it);
        return AAPI_EOK;
    });
}

int aapi_restore_postprocess(aapi_server_t server, int status) {
    return boundary("aapi_restore_postprocess", [&] {
        const char* fn = "aapi_restore_postprocess";
        require_claimed(fn);
        auto s = session_for(server, AAPI_OP_RESTORE, fn);
        {
            std::lock_guard<std::mutex> lock(global().mu);
            if (s->restore_phase != 1)
                fail(AAPI_ESEQUENCE, s->restore_phase == 0
                                         ? "aapi_restore_postprocess before preprocess"
                                         : "aapi_restore_postprocess called twice");
            s->restore_phase = 2;
        }
        // Objects still open were never completed: they are dropped, never made visible.
        objects().remove_if([&](const Object& o) { return o.session == s; });
        std::lock_guard<std::mutex> lock(global().mu);
        if (status != AAPI_EOK) { // RST-6, RST-7: undo newest first
            Store& store = global().stores[s->server];
            for (auto it = s->undo.rbegin(); it != s->undo.rend(); ++it) {
                if (it->existed)
                    store[it->path] = it->old;
                else
                    store.erase(it->path);
            }
        }
        s->undo.clear();
        return AAPI_EOK;
    });
}

int aapi_terminate(void) {
    return boundary("aapi_terminate", [&] {
        // LIFE-7, RES-2: every handle closed, every store released; idempotent.
        sessions().remove_if([](const Session&) { return true; });
        objects().remove_if([](const Object&) { return true; });
        std::lock_guard<std::mutex> lock(global().mu);
        global().stores.clear();
        global().initialized = false;
        global().claimed = false;
        global().log = nullptr;
        return AAPI_EOK;
    });
}

int aapi_get_last_error(char* buf, size_t* buf_size) {
    // Not through boundary(): it must not replace the message it reports, and nothing here
    // can throw.
    if (buf_size == nullptr || (buf == nullptr && *buf_size != 0))
        return AAPI_EINVAL;
    size_t need = std::strlen(t_last_error) + 1;
    if (*buf_size < need || buf == nullptr) {
        *buf_size = need;
        return AAPI_EBUFSIZE;
    }
    std::memcpy(buf, t_last_error, need);
    *buf_size = need;
    return AAPI_EOK;
}
