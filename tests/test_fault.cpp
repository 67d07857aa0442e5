// Systematic fault injection (issue 10): every write, fsync/fdatasync, truncate, rename,
// unlink, mkdir, open, mmap and lock-attach call that the hive and the directory store make
// through file_io fails in turn, with ENOSPC, EIO and EACCES.
//
// Method: a fixed workload runs once with a counting seam to learn how many calls of each
// kind it makes (kind, ordinal) — the call sites as the workload reaches them. Then, for every
// (kind, ordinal) x errno, the workload runs again on a fresh directory with exactly that one
// call failing. Each step records whether it was acknowledged. Checks:
// - a step that fails reports a quorumreg error whose code matches the errno (no_space,
//   io_error, access_denied) and whose message names the failed operation's path and the
//   system error text;
// - a clean reopen (no injection) shows exactly the acknowledged changes: every acknowledged
//   one, nothing that was not (a failed commit is absent: the hive and the directory store
//   cut a failed append back before reporting it);
// - the store object stays usable after a failed write (the following steps still run and
//   are checked).
// A failure that hits a best-effort call (removing a temporary file or an old generation,
// renaming a corrupt snapshot aside, the automatic compaction) may be absorbed: then the
// operation succeeds and only consistency is checked. Calls made by background threads are
// neither counted nor failed, so ordinals are deterministic.
#include <quorumreg/detail/file_io.hpp>
#include <quorumreg/hive.hpp>
#include <quorumreg/stores/directory_store.hpp>

#include "test_support.hpp"

#include <array>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

using namespace quorumreg;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

enum class kind { open, pwrite, fsync, fdatasync, ftruncate, rename, unlink, mkdir, mmap, lock, count_ };
constexpr std::size_t kind_count = static_cast<std::size_t>(kind::count_);
const char* kind_name(kind k) {
    static const char* names[] = {"open",   "pwrite", "fsync", "fdatasync", "ftruncate",
                                  "rename", "unlink", "mkdir", "mmap",      "lock"};
    return names[static_cast<std::size_t>(k)];
}

/// Counts the calls of each kind made by the test's own thread and fails one chosen call.
class fault_io : public file_io {
public:
    fault_io() : owner_(std::this_thread::get_id()) {}

    void arm(kind k, int ordinal, int err) {
        std::lock_guard g(mu_);
        target_ = k;
        ordinal_ = ordinal;
        errno_ = err;
    }
    std::array<int, kind_count> counts() const {
        std::lock_guard g(mu_);
        return counts_;
    }
    bool fired() const {
        std::lock_guard g(mu_);
        return fired_;
    }
    std::string fired_path() const {
        std::lock_guard g(mu_);
        return fired_path_;
    }

    int open(const char* p, int f, mode_t m) override { return hit(kind::open, p) ? -1 : file_io::open(p, f, m); }
    ssize_t pwrite(int fd, const void* b, std::size_t n, off_t o) override {
        return hit(kind::pwrite) ? -1 : file_io::pwrite(fd, b, n, o);
    }
    int fsync(int fd) override { return hit(kind::fsync) ? -1 : file_io::fsync(fd); }
    int fdatasync(int fd) override { return hit(kind::fdatasync) ? -1 : file_io::fdatasync(fd); }
    int ftruncate(int fd, off_t l) override { return hit(kind::ftruncate) ? -1 : file_io::ftruncate(fd, l); }
    int rename(const char* a, const char* b) override { return hit(kind::rename, a) ? -1 : file_io::rename(a, b); }
    int unlink(const char* p) override { return hit(kind::unlink, p) ? -1 : file_io::unlink(p); }
    int mkdir(const char* p, mode_t m) override { return hit(kind::mkdir, p) ? -1 : file_io::mkdir(p, m); }
    void* mmap_shared(int fd, std::size_t len) override {
        return hit(kind::mmap) ? MAP_FAILED : file_io::mmap_shared(fd, len);
    }
    int attach_lock(const char* p) override { return hit(kind::lock, p) ? -1 : file_io::attach_lock(p); }

private:
    bool hit(kind k, const char* path = nullptr) {
        if (std::this_thread::get_id() != owner_) return false;
        std::lock_guard g(mu_);
        int n = counts_[static_cast<std::size_t>(k)]++;
        if (k != target_ || n != ordinal_) return false;
        fired_ = true;
        if (path) fired_path_ = path;
        errno = errno_;
        return true;
    }

    mutable std::mutex mu_;
    std::thread::id owner_;
    std::array<int, kind_count> counts_{};
    kind target_ = kind::count_;
    int ordinal_ = -1;
    int errno_ = 0;
    bool fired_ = false;
    std::string fired_path_;
};

errc expected_code(int err) {
    return err == ENOSPC ? errc::no_space : err == EACCES ? errc::access_denied : errc::io_error;
}

/// What one injected run saw.
struct run_report {
    int failed_steps = 0; // steps that reported the injected error
};

/// Checks one reported failure: code from the errno, a message with the system error text
/// and a path inside the store's directory.
void check_reported(const std::error_code& ec, const std::string& what, int err, const fs::path& dir,
                    const std::string& step) {
    INFO("step: " << step << "; error: " << what);
    CHECK(ec == expected_code(err));
    CHECK(what.find(std::strerror(err)) != std::string::npos);
    CHECK(what.find(dir.string()) != std::string::npos);
}

/// Runs `workload(io, report)` once per call site and errno, then `verify`.
template <class Workload, class Verify>
void for_every_site(const char* label, Workload&& workload, Verify&& verify, std::map<std::string, int>& summary) {
    std::array<int, kind_count> sites{};
    {
        qr_test::temp_dir dir(std::string(label) + "-count");
        fault_io counting;
        run_report rep;
        workload(dir.path() / "s", counting, rep, 0);
        REQUIRE(rep.failed_steps == 0);
        verify(dir.path() / "s");
        sites = counting.counts();
    }
    for (std::size_t k = 0; k < kind_count; ++k) {
        MESSAGE(std::string(label) << ": " << std::string(kind_name(static_cast<kind>(k))) << " x" << sites[k]);
        for (int ord = 0; ord < sites[k]; ++ord) {
            for (int err : {ENOSPC, EIO, EACCES}) {
                std::string site = kind_name(static_cast<kind>(k));
                CAPTURE(site);
                CAPTURE(ord);
                CAPTURE(err);
                qr_test::temp_dir dir(label);
                fault_io io;
                io.arm(static_cast<kind>(k), ord, err);
                run_report rep;
                workload(dir.path() / "s", io, rep, err);
                CHECK(io.fired());
                CAPTURE(io.fired_path());
                verify(dir.path() / "s");
                auto key = std::string(label) + " " + kind_name(static_cast<kind>(k));
                summary[key + (rep.failed_steps ? " reported" : " absorbed")]++;
            }
        }
    }
}

// ---- hive -----------------------------------------------------------------------------------

using value_model = std::map<std::string, std::uint32_t>;

/// The hive workload. Phase A: create, commit, compact twice, commit. Between the phases (no
/// seam): a torn tail on the newest journal and a corrupt newest snapshot, so phase B's open
/// runs the recovery paths (truncate the tail, fall back a generation, set the bad snapshot
/// aside). Phase B: recover, commit, compact, commit. `model` ends with the acknowledged state.
void hive_workload(const fs::path& dir, fault_io& io, run_report& rep, int err, value_model& model) {
    hive_options opts;
    opts.io = &io;
    int n = 0;
    auto step = [&](const std::string& name, auto&& f) {
        try {
            f();
            return true;
        } catch (const quorumreg::error& e) {
            ++rep.failed_steps;
            if (err == 0) FAIL("unexpected failure in " << name << ": " << e.what());
            check_reported(e.code(), e.what(), err, dir, name);
            return false;
        }
    };
    auto set = [&](hive& h) {
        ++n;
        auto name = "v" + std::to_string(n);
        if (step("set " + name, [&] { h.set_value("Software/F", name, value::dword(static_cast<std::uint32_t>(n))); }))
            model[name] = static_cast<std::uint32_t>(n);
        else
            CHECK_FALSE(h.find_value("Software/F", name)); // not applied in memory either
    };
    auto del = [&](hive& h, const std::string& name) {
        if (!model.count(name)) return;
        if (step("delete " + name, [&] { h.delete_value("Software/F", name); })) model.erase(name);
    };
    {
        std::unique_ptr<hive> h;
        if (step("open (create)", [&] { h = std::make_unique<hive>(dir, opts); })) {
            set(*h);
            set(*h);
            step("compact 1", [&] { h->compact(); });
            set(*h);
            del(*h, "v1");
            step("compact 2", [&] { h->compact(); });
            set(*h);
        }
    }
    // Damage the newest files the way a crash and a bad sector would (outside the seam).
    std::vector<fs::path> journals, snapshots;
    std::error_code dec;
    for (auto& e : fs::directory_iterator(dir, dec)) {
        auto name = e.path().filename().string();
        if (name.rfind("journal.", 0) == 0 && name.size() == 24) journals.push_back(e.path());
        if (name.rfind("snapshot.", 0) == 0 && name.size() == 25) snapshots.push_back(e.path());
    }
    std::sort(journals.begin(), journals.end());
    std::sort(snapshots.begin(), snapshots.end());
    if (!journals.empty()) std::ofstream(journals.back(), std::ios::app | std::ios::binary) << "QRJR\x07torn";
    if (snapshots.size() >= 2) {
        std::fstream f(snapshots.back(), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(-6, std::ios::end);
        f.write("XXXX", 4);
    }
    {
        std::unique_ptr<hive> h;
        if (step("open (recover)", [&] { h = std::make_unique<hive>(dir, opts); })) {
            set(*h);
            step("compact 3", [&] { h->compact(); });
            set(*h);
        }
    }
}

void hive_verify(const fs::path& dir, const value_model& model) {
    hive h(dir);
    value_model got;
    for (auto& v : h.values("Software/F"))
        got[v.name] = v.data.as_dword();
    CHECK(got == model);
}

// ---- directory store ------------------------------------------------------------------------

using kv_model = std::map<std::string, std::string>;

/// The directory store workload: create, puts, a transaction, an erase, a leased key whose
/// lease expires and is reaped by the next read, enough frames to compact the log (twice),
/// close, reopen (recovery), more writes.
void store_workload(const fs::path& dir, fault_io& io, run_report& rep, int err, kv_model& model) {
    directory_store_options o;
    o.io = std::shared_ptr<file_io>(std::shared_ptr<file_io>(), &io);
    o.keep_revisions = 2;    // compact after more than 4 frames
    o.poll_interval = 3600s; // the poller only runs when woken; reaping happens in the foreground
    o.deadline = 30s;
    auto step = [&](const std::string& name, auto&& f) {
        try {
            f();
            return true;
        } catch (const quorumreg::error& e) {
            ++rep.failed_steps;
            if (err == 0) FAIL("unexpected failure in " << name << ": " << e.what());
            check_reported(e.code(), e.what(), err, dir, name);
            return false;
        }
    };
    o.create = true; // the first open creates the store (opens never create by default)
    int n = 0;
    auto put = [&](directory_store& s) {
        ++n;
        auto k = "k/" + std::to_string(n);
        auto v = "value " + std::to_string(n);
        if (step("put " + k, [&] { s.put(k, v); })) model[k] = v;
    };
    {
        std::unique_ptr<directory_store> s;
        if (step("open (create)", [&] { s = std::make_unique<directory_store>(dir, o); })) {
            put(*s);
            put(*s);
            store_txn t;
            t.on_success = {store_op::put("t/a", "A"), store_op::put("t/b", "B")};
            if (step("txn", [&] { s->commit(t); })) {
                model["t/a"] = "A";
                model["t/b"] = "B";
            }
            if (model.count("k/1") && step("erase k/1", [&] { s->erase("k/1"); })) model.erase("k/1");
            lease_id lease = 0;
            if (step("grant_lease", [&] { lease = s->grant_lease(100ms); }))
                step("put leased", [&] { s->put("lease/x", "gone soon", lease); });
            put(*s);
            put(*s);
            std::this_thread::sleep_for(150ms);
            // The lease expired: this read reaps it (a write) before answering.
            std::optional<key_value> leased;
            if (step("get after expiry", [&] { leased = s->get("lease/x"); })) CHECK_FALSE(leased);
            put(*s);
            put(*s);
        }
    }
    // A writer that died mid-append leaves a torn frame; the next write cuts it off.
    if (fs::exists(dir / directory_store::log_file_name))
        std::ofstream(dir / directory_store::log_file_name, std::ios::app | std::ios::binary) << "torn frame";
    {
        std::unique_ptr<directory_store> s;
        o.create = false;
        if (model.empty() && !fs::exists(dir / directory_store::log_file_name)) o.create = true;
        if (step("open (recover)", [&] { s = std::make_unique<directory_store>(dir, o); })) {
            put(*s);
            put(*s);
            put(*s);
        }
    }
}

void store_verify(const fs::path& dir, const kv_model& model) {
    directory_store_options o;
    o.poll_interval = 3600s;
    if (model.empty() && !fs::exists(dir / directory_store::log_file_name)) return; // creation itself failed
    directory_store s(dir, o);
    kv_model got;
    for (auto& kv : s.list(""))
        got[kv.key] = kv.value;
    if (got.count("lease/x")) {
        // Its reap failed. A store object times leases from when it first sees them (issue 15,
        // defect 10): this one takes the lease for expired only after its TTL.
        std::this_thread::sleep_for(150ms);
        got.clear();
        for (auto& kv : s.list(""))
            got[kv.key] = kv.value;
    }
    CHECK(got == model); // the leased key is gone either way: its lease expired
}

void print_summary(const std::map<std::string, int>& summary) {
    std::ostringstream out;
    for (auto& [k, v] : summary)
        out << "\n  " << k << ": " << v;
    MESSAGE("outcomes per call kind (x3 errnos):" << out.str());
}

} // namespace

TEST_SUITE("fault") {
    TEST_CASE("hive: every call site fails in turn (ENOSPC, EIO, EACCES)") {
        std::map<std::string, int> summary;
        value_model model;
        for_every_site(
            "hive",
            [&](const fs::path& d, fault_io& io, run_report& rep, int err) {
                model.clear();
                hive_workload(d, io, rep, err, model);
            },
            [&](const fs::path& d) { hive_verify(d, model); }, summary);
        print_summary(summary);
        // Every kind of call the hive makes on its write paths was reached and, somewhere,
        // reported as an error to the caller.
        for (const char* k : {"open", "pwrite", "fsync", "fdatasync", "ftruncate", "rename", "mkdir", "mmap", "lock"})
            CHECK_MESSAGE(summary["hive " + std::string(k) + " reported"] > 0, k);
    }

    TEST_CASE("directory_store: every call site fails in turn (ENOSPC, EIO, EACCES)") {
        std::map<std::string, int> summary;
        kv_model model;
        for_every_site(
            "dirstore",
            [&](const fs::path& d, fault_io& io, run_report& rep, int err) {
                model.clear();
                store_workload(d, io, rep, err, model);
            },
            [&](const fs::path& d) { store_verify(d, model); }, summary);
        print_summary(summary);
        for (const char* k : {"open", "pwrite", "fsync", "ftruncate", "rename", "mkdir", "lock"})
            CHECK_MESSAGE(summary["dirstore " + std::string(k) + " reported"] > 0, k);
    }
}
