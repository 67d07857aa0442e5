// Power-cut scenarios for the hive and the directory store (issue 14), shared by the ctest
// suite (tests/test_powerloss.cpp) and the soak program (tests/soak_powerloss.cpp).
//
// A case is one seed: a fresh directory, then `phases` rounds of [open the engine through a
// powercut_disk armed at a seeded call -> check the state the previous cut left -> run a
// seeded workload until the power goes -> destroy the engine -> materialize a post-crash
// state], then a last open and check on an unarmed disk. So cuts also land in recovery (the
// open of the next round), and every cut's result is checked by the next successful open.
//
// The check is exact: every transaction is recorded as acknowledged or in flight (at most one
// per writer: a writer stops at its first failure), the state must equal the state after
// every acknowledged transaction plus some of the in-flight ones, in commit order, and the
// engine must open (lost: an acknowledged transaction missing; corrupt: any other difference;
// refused: the open or a read failed with no cut).
#pragma once

#include <quorumreg/hive.hpp>
#include <quorumreg/stores/directory_store.hpp>
#include <quorumreg_support/powercut_disk.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace qr_powerloss {

namespace fs = std::filesystem;
namespace qr = quorumreg;
using quorumreg_support::powercut_disk;
using namespace std::chrono_literals;

inline std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) { return mix(a ^ mix(b)); }

enum class engine { hive, dir };

/// The regular scenarios per engine; a seed picks one unless a scenario is named.
inline const std::vector<std::string>& scenarios(engine e) {
    static const std::vector<std::string> h{"hive-1w", "hive-8w", "hive-compact", "hive-fallback", "hive-torn-header"};
    static const std::vector<std::string> d{"dir-cas", "dir-lease", "dir-compact"};
    return e == engine::hive ? h : d;
}
/// Variants where the engine creates its own directory (the parent is never synced by it).
inline std::string fresh_dir_scenario(engine e) { return e == engine::hive ? "hive-fresh-dir" : "dir-fresh-dir"; }
/// Variants where, in each round, the first directory fsync after the open fails with EIO
/// (the power staying on) before the cut: a failure the engine must not absorb and go on
/// acknowledging as if the renames it made were durable.
inline std::string dirsync_eio_scenario(engine e) { return e == engine::hive ? "hive-dirsync-eio" : "dir-dirsync-eio"; }

inline std::string pick_scenario(engine e, std::uint64_t seed) {
    const auto& s = scenarios(e);
    return s[mix(seed, 77) % s.size()];
}

struct failure {
    std::string kind; // lost, corrupt, refused
    std::string scenario;
    std::uint64_t seed = 0;
    std::string cause; // normalized, for grouping
    std::string detail;
};

struct tally {
    std::uint64_t cases = 0, cuts = 0, acked = 0, lost = 0, corrupt = 0, refused = 0;
    std::vector<failure> failures;

    std::string line() const {
        std::ostringstream o;
        o << "cuts=" << cuts << " acked=" << acked << " lost=" << lost << " corrupt=" << corrupt
          << " refused=" << refused;
        return o.str();
    }
    bool ok() const { return lost == 0 && corrupt == 0 && refused == 0; }
    /// Failures grouped by cause: count, scenarios and the first seeds.
    std::string causes() const {
        std::map<std::string, std::pair<int, std::vector<std::uint64_t>>> by;
        for (auto& f : failures) {
            auto& e = by[f.kind + " [" + f.scenario + "]: " + f.cause];
            ++e.first;
            if (e.second.size() < 5) e.second.push_back(f.seed);
        }
        std::ostringstream o;
        for (auto& [k, v] : by) {
            o << "  " << v.first << " x " << k << " (seeds";
            for (auto s : v.second)
                o << " " << s;
            o << ")\n";
        }
        return o.str();
    }
};

/// The soak binary next to the running executable, for replay commands.
inline std::string replay_command(engine e, const std::string& scenario, std::uint64_t seed) {
    char buf[4096];
    auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    fs::path exe = n > 0 ? fs::path(std::string(buf, static_cast<std::size_t>(n))) : fs::path("soak_powerloss");
    return (exe.parent_path() / "soak_powerloss").string() + " 1 --engine " + (e == engine::hive ? "hive" : "dir") +
           " --scenario " + scenario + " --seed " + std::to_string(seed) + " --verbose";
}

/// A scratch directory on tmpfs when there is one (no real syncs are issued anyway).
class scratch {
public:
    scratch() {
        std::random_device rd;
        auto tag = "quorumreg-powerloss-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
        std::error_code ec;
        if (fs::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0) {
            path_ = fs::path("/dev/shm") / tag;
        } else {
            const char* base = std::getenv("QUORUMREG_TEST_TMP");
            path_ = fs::path(base ? base : fs::temp_directory_path().string()) / tag;
        }
        fs::create_directories(path_);
    }
    ~scratch() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    scratch(const scratch&) = delete;
    scratch& operator=(const scratch&) = delete;
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

/// Numbers and the case directory out of a message, so failures group by cause.
inline std::string normalize(std::string s, const fs::path& root) {
    auto r = root.string();
    for (std::size_t p; !r.empty() && (p = s.find(r)) != std::string::npos;)
        s.replace(p, r.size(), "<dir>");
    return std::regex_replace(s, std::regex("[0-9a-f]{16}|[0-9]+"), "#");
}

/// State shared by the steps of one case.
struct case_ctx {
    engine eng;
    std::string scenario;
    std::uint64_t seed;
    fs::path root;
    tally& t;
    bool verbose;
    std::mt19937_64 rng;
    int phase = 0;
    std::string last_crash; // what the last materialize chose
    std::string last_site;
    bool failed = false;
    bool lying_disk = false; // the disk ignores syncs: the checks must catch losses

    case_ctx(engine e, std::string sc, std::uint64_t s, fs::path r, tally& tl, bool v)
        : eng(e), scenario(std::move(sc)), seed(s), root(std::move(r)), t(tl), verbose(v), rng(mix(s, 1)) {}

    std::uint64_t uniform(std::uint64_t lo, std::uint64_t hi) {
        return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
    }
    bool chance(double p) { return std::bernoulli_distribution(p)(rng); }

    void fail(const std::string& kind, const std::string& cause, const std::string& detail) {
        failed = true;
        if (kind == "lost")
            ++t.lost;
        else if (kind == "refused")
            ++t.refused;
        else
            ++t.corrupt;
        t.failures.push_back({kind, scenario, seed, normalize(cause, root), detail});
        if (lying_disk) return; // expected: the caller counts them
        std::ostringstream o;
        o << "FAIL " << kind << " scenario=" << scenario << " seed=" << seed << " after cut " << phase << " ("
          << last_site << "): " << cause << "\n";
        if (!detail.empty()) o << "  " << detail << "\n";
        if (verbose && !last_crash.empty()) o << "  crash state chosen:\n" << last_crash;
        o << "  replay: " << replay_command(eng, scenario, seed) << "\n";
        std::cerr << o.str() << std::flush;
    }

    /// The seed of the disk of this phase (distinct per phase, reproducible).
    std::uint64_t disk_seed() const { return mix(seed, 1000 + static_cast<std::uint64_t>(phase)); }

    /// Cut position: a quarter of the cuts in the first calls (the open, i.e. recovery of the
    /// previous cut), the rest anywhere in the expected workload.
    std::uint64_t cut_point(std::uint64_t expected_calls) {
        if (chance(0.25)) return uniform(1, 14);
        return uniform(1, std::max<std::uint64_t>(expected_calls, 2));
    }

    void crashed(powercut_disk& d) {
        last_site = d.cut_site();
        d.materialize();
        last_crash = d.crash_log();
        ++t.cuts;
        if (verbose) std::cerr << "cut " << phase + 1 << " " << last_site << "\n" << last_crash << std::flush;
    }
};

// ---- hive ---------------------------------------------------------------------------------

/// Writer w's n-th transaction sets n<n> (a binary of seeded size: most fit a sector, some
/// span several) and c = n, and every 4th deletes n<n-2>; so the state of writer w after its
/// first c transactions is known exactly.
/// Pad lengths chosen at run time (hive-torn-header), by (writer << 32 | n); others are seeded.
using pad_lengths = std::map<std::uint64_t, std::size_t>;

inline std::string hive_pad(std::uint64_t seed, int w, std::uint32_t n, const pad_lengths& chosen) {
    auto h = mix(mix(seed, static_cast<std::uint64_t>(w)), n);
    std::size_t len = h % 10 < 6 ? h % 41 : h % 10 < 9 ? 200 + h % 1300 : 1500 + h % 3500;
    if (auto it = chosen.find(static_cast<std::uint64_t>(w) << 32 | n); it != chosen.end()) len = it->second;
    std::string s(len, '\0');
    for (std::size_t i = 0; i < len; ++i)
        s[i] = static_cast<char>(mix(h, i) & 0xff);
    if (len) s.back() = static_cast<char>(s.back() | 1); // a record ends in a non-zero byte (see journal_end)
    return s;
}

inline std::string hive_key(int w) { return "Software/P/W" + std::to_string(w); }

inline qr::transaction hive_txn(std::uint64_t seed, int w, std::uint32_t n, const pad_lengths& chosen) {
    qr::transaction t;
    auto k = hive_key(w);
    t.set_value(k, "c", qr::value::dword(n));
    if (n % 4 == 0) t.delete_value(k, "n" + std::to_string(n - 2));
    t.set_value(k, "n" + std::to_string(n), qr::value::binary(hive_pad(seed, w, n, chosen)));
    return t;
}

inline std::map<std::string, qr::value> hive_expected(std::uint64_t seed, int w, std::uint32_t c,
                                                      const pad_lengths& chosen) {
    std::map<std::string, qr::value> m;
    for (std::uint32_t k = 1; k <= c; ++k) {
        if (k % 4 == 2 && k + 2 <= c) continue;
        m.emplace("n" + std::to_string(k), qr::value::binary(hive_pad(seed, w, k, chosen)));
    }
    if (c > 0) m.emplace("c", qr::value::dword(c));
    return m;
}

/// Where the records of the newest journal end, read from the real file: after its last
/// non-zero byte (the preallocated tail is zeros; a record ends in its pad's non-zero last
/// byte). 0 if there is no journal. Only used to aim the next record, never to check.
inline std::uint64_t journal_end(const fs::path& dir) {
    fs::path newest;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir, ec)) {
        auto n = e.path().filename().string();
        if (n.rfind("journal.", 0) == 0 && n.find('.', 8) == std::string::npos && e.path() > newest) newest = e.path();
    }
    if (newest.empty()) return 0;
    std::ifstream in(newest, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto last = data.find_last_not_of('\0');
    return last == std::string::npos ? 0 : last + 1;
}

struct hive_model {
    std::vector<std::uint32_t> acked;    // per writer: transactions known present
    std::vector<std::uint32_t> inflight; // per writer: 0 or 1 attempted, outcome unknown
    pad_lengths pads;
    std::atomic<std::uint64_t> max_rev{0}; // highest revision a commit acknowledged
};

/// Checks the open hive against the model; adopts what it found. False: stop the case.
inline bool hive_verify(case_ctx& c, qr::hive& h, hive_model& m) {
    std::uint64_t total = 0;
    std::vector<std::uint32_t> found(m.acked.size());
    for (std::size_t w = 0; w < m.acked.size(); ++w) {
        std::error_code ec;
        auto vals = h.values(hive_key(static_cast<int>(w)), ec);
        if (ec && ec != qr::errc::key_not_found) {
            c.fail("refused", "read failed: " + ec.message(), "");
            return false;
        }
        std::map<std::string, qr::value> got;
        for (auto& v : vals)
            got.emplace(v.name, v.data);
        std::uint32_t cnt = 0;
        if (auto it = got.find("c"); it != got.end()) {
            std::error_code tec;
            cnt = it->second.as_dword(tec);
            if (tec) {
                c.fail("corrupt", "counter of writer has the wrong type", "writer " + std::to_string(w));
                return false;
            }
        }
        std::ostringstream where;
        where << "writer " << w << ": counter " << cnt << ", acknowledged " << m.acked[w] << ", in flight "
              << m.inflight[w];
        if (cnt < m.acked[w]) {
            c.fail("lost", "acknowledged transactions missing (counter behind the last acknowledged)", where.str());
            return false;
        }
        if (cnt > m.acked[w] + m.inflight[w]) {
            c.fail("corrupt", "counter ahead of every attempted transaction", where.str());
            return false;
        }
        auto want = hive_expected(c.seed, static_cast<int>(w), cnt, m.pads);
        if (got != want) {
            std::string diff;
            for (auto& [k, v] : want)
                if (!got.count(k) || !(got.at(k) == v)) diff += " " + k + (got.count(k) ? "(differs)" : "(missing)");
            for (auto& [k, v] : got)
                if (!want.count(k)) diff += " " + k + "(extra)";
            c.fail("corrupt", "values are not the prefix the counter names", where.str() + ";" + diff);
            return false;
        }
        found[w] = cnt;
        total += cnt;
    }
    auto rev = h.revision();
    if (rev < m.max_rev) {
        c.fail("lost", "revision behind the highest acknowledged one",
               std::to_string(rev) + " < " + std::to_string(m.max_rev.load()));
        return false;
    }
    if (rev != total) {
        c.fail("corrupt", "revision is not the number of transactions present (a gap in commit order)",
               "revision " + std::to_string(rev) + ", transactions " + std::to_string(total));
        return false;
    }
    m.acked = found;
    std::fill(m.inflight.begin(), m.inflight.end(), 0u);
    return true;
}

/// Corrupts the newest snapshot when an older generation can replace it (the hive must fall
/// back, not refuse): outside the seam, before the disk of the next phase adopts the files.
inline void corrupt_newest_snapshot(const fs::path& dir) {
    std::vector<fs::path> snaps;
    std::set<std::string> names;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir, ec)) {
        auto n = e.path().filename().string();
        names.insert(n);
        if (n.rfind("snapshot.", 0) == 0 && n.size() == 25) snaps.push_back(e.path());
    }
    if (snaps.empty()) return;
    std::sort(snaps.begin(), snaps.end());
    auto g = std::stoull(snaps.back().filename().string().substr(9), nullptr, 16);
    if (g == 0) return;
    auto prev = qr::detail::gen_name("journal", g - 1), prev_snap = qr::detail::gen_name("snapshot", g - 1);
    if (!names.count(prev) || !names.count(qr::detail::gen_name("journal", g))) return;
    if (g - 1 != 0 && !names.count(prev_snap)) return;
    auto size = fs::file_size(snaps.back(), ec);
    if (ec || size < 16) return;
    std::fstream f(snaps.back(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.write("XXXX", 4);
}

inline void run_hive_case(case_ctx& c, int phases) {
    const bool fresh = c.scenario == "hive-fresh-dir";
    const int writers = c.scenario == "hive-8w" ? 8 : 1;
    const bool dirsync_eio = c.scenario == "hive-dirsync-eio";
    const bool small = c.scenario == "hive-compact" || c.scenario == "hive-fallback" || dirsync_eio;
    const bool aim = c.scenario == "hive-torn-header";
    const fs::path dir = c.root / "h";
    if (!fresh) fs::create_directories(dir); // made and synced before the run, as an installer would
    hive_model m;
    m.acked.assign(static_cast<std::size_t>(writers), 0);
    m.inflight.assign(static_cast<std::size_t>(writers), 0);
    bool created = false; // an open that created the hive returned
    for (c.phase = 0; c.phase <= phases && !c.failed; ++c.phase) {
        const bool last = c.phase == phases;
        if (c.scenario == "hive-fallback" && c.phase > 0 && c.chance(0.5)) corrupt_newest_snapshot(dir);
        powercut_disk disk(c.root, c.disk_seed());
        disk.ignore_syncs(c.lying_disk);
        if (writers > 1) disk.sync_delay(200us); // a flush takes time: batches of several records form
        std::uint64_t txns = c.uniform(1, writers == 1 ? 24 : 6);
        // Mutating calls the round makes (measured): a commit is a write and a sync, a batch of
        // 8 writers shares them, a compaction adds about ten; past the end the cut is on request.
        if (!last) disk.arm(c.cut_point(14 + (writers > 1 ? txns * writers / 2 : txns * 2) + (small ? txns * 4 : 0)));
        qr::hive_options o;
        o.io = &disk;
        o.create = !created; // once a create was acknowledged, a missing hive is a failure
        if (small) o.snapshot_threshold = 4096;
        if (aim) o.snapshot_threshold = 64 * 1024; // a small zero tail: journal_end() reads it all
        std::unique_ptr<qr::hive> h;
        try {
            h = std::make_unique<qr::hive>(dir, o);
            created = true;
        } catch (const qr::error& e) {
            if (!disk.was_cut()) {
                c.fail("refused", e.what(), "");
                return;
            }
        }
        if (h && !hive_verify(c, *h, m)) return;
        if (last) return;
        if (dirsync_eio) disk.fail_directory_syncs(1);
        if (h) {
            if (writers == 1) {
                std::uint64_t overhead = 60; // record bytes besides the pad, learnt as we go
                for (std::uint64_t i = 0; i < txns; ++i) {
                    auto n = m.acked[0] + 1;
                    std::uint64_t end = 0;
                    std::size_t pad = 0;
                    if (aim) {
                        // This record ends 4 bytes before a sector boundary, so the next one (the
                        // one a cut may tear) has its header split across two sectors.
                        end = journal_end(dir);
                        pad = static_cast<std::size_t>(
                            (508 + 2 * powercut_disk::sector - (end + overhead) % powercut_disk::sector) %
                            powercut_disk::sector);
                        m.pads[n] = pad;
                    }
                    bool attempted = !disk.was_cut();
                    try {
                        auto r = h->commit(hive_txn(c.seed, 0, n, m.pads));
                        m.max_rev = std::max<std::uint64_t>(m.max_rev, r);
                        if (aim && end) {
                            auto now = journal_end(dir);
                            if (now > end + pad && now - end - pad < 400) overhead = now - end - pad;
                        }
                        m.acked[0] = n;
                        ++c.t.acked;
                    } catch (const qr::error& e) {
                        if (attempted) m.inflight[0] = 1;
                        // With an injected EIO the hive may refuse further commits: not a failure.
                        if (!disk.was_cut() && !dirsync_eio)
                            c.fail("corrupt", std::string("commit failed with no cut: ") + e.what(), "");
                        break;
                    }
                    if (small && c.chance(0.15)) {
                        try {
                            h->compact();
                        } catch (const qr::error&) {
                            if (!disk.was_cut() && !dirsync_eio) c.fail("corrupt", "compact failed with no cut", "");
                            if (!dirsync_eio) break;
                        }
                    }
                }
            } else {
                std::atomic<std::uint64_t> acked{0};
                std::atomic<bool> unexpected{false};
                std::vector<std::thread> ts;
                for (int w = 0; w < writers; ++w)
                    ts.emplace_back([&, w] {
                        for (std::uint64_t i = 0; i < txns; ++i) {
                            auto n = m.acked[w] + 1;
                            bool attempted = !disk.was_cut();
                            std::error_code ec;
                            auto r = h->commit(hive_txn(c.seed, w, n, m.pads), ec);
                            if (ec) {
                                if (attempted) m.inflight[w] = 1;
                                if (!disk.was_cut()) unexpected = true;
                                return;
                            }
                            m.acked[w] = n;
                            for (auto prev = m.max_rev.load(); prev < r && !m.max_rev.compare_exchange_weak(prev, r);) {
                            }
                            ++acked;
                        }
                    });
                for (auto& t : ts)
                    t.join();
                c.t.acked += acked;
                if (unexpected) c.fail("corrupt", "a group commit failed with no cut", "");
            }
        }
        if (c.failed) return;
        disk.cut();
        h.reset(); // the destructor's writes fail: the power is off
        c.crashed(disk);
    }
}

// ---- directory store ----------------------------------------------------------------------

struct dkv {
    std::string value;
    qr::lease_id lease = 0;
    qr::store_revision mod = 0; // 0: unknown (written by an in-flight operation)
};

/// What the store must show: keys, live leases (short ones are expired by check time).
struct dmodel {
    std::map<std::string, dkv> kvs;
    std::map<qr::lease_id, bool> leases; // id -> short
    qr::lease_id max_id = 0;
    bool extra_long_lease = false; // an in-flight long grant that may be present (id unknown)
    std::uint64_t next_txn = 1;
};

struct dop {
    enum kind_t { txn, put, grant, keep, revoke, erase } kind;
    std::vector<std::pair<std::string, std::string>> puts;
    std::vector<std::string> erases;
    qr::lease_id lease = 0;
    bool short_lease = false;
    qr::store_revision rev = 0;
    bool acked = false;
};

inline void dapply(dmodel& m, const dop& op) {
    switch (op.kind) {
    case dop::txn:
    case dop::put:
        for (auto& [k, v] : op.puts)
            m.kvs[k] = {v, op.lease, op.acked ? op.rev : 0};
        for (auto& k : op.erases)
            m.kvs.erase(k);
        if (op.kind == dop::txn) ++m.next_txn;
        break;
    case dop::erase:
        for (auto& k : op.erases)
            m.kvs.erase(k);
        break;
    case dop::grant:
        if (op.acked) {
            m.leases[op.lease] = op.short_lease;
            m.max_id = std::max(m.max_id, op.lease);
        } else if (!op.short_lease) {
            m.extra_long_lease = true;
        }
        break;
    case dop::keep: break;
    case dop::revoke:
        m.leases.erase(op.lease);
        for (auto it = m.kvs.begin(); it != m.kvs.end();)
            it = it->second.lease == op.lease ? m.kvs.erase(it) : std::next(it);
        break;
    }
}

/// The model with expired (short) leases and their keys gone.
inline dmodel dvisible(dmodel m) {
    for (auto it = m.leases.begin(); it != m.leases.end();)
        it = it->second ? m.leases.erase(it) : std::next(it);
    for (auto it = m.kvs.begin(); it != m.kvs.end();)
        it = it->second.lease && !m.leases.count(it->second.lease) ? m.kvs.erase(it) : std::next(it);
    return m;
}

struct dstate {
    std::map<std::string, qr::key_value> kvs;
    std::set<qr::lease_id> live;
    qr::store_revision rev = 0;
};

/// Where `want` and `got` differ; empty when `got` is a state `want` allows.
inline std::string ddiff(const dmodel& want, const dstate& got, bool* missing) {
    std::ostringstream o;
    *missing = false;
    for (auto& [k, v] : want.kvs) {
        auto it = got.kvs.find(k);
        if (it == got.kvs.end()) {
            o << " " << k << "(missing)";
            *missing = true;
        } else if (it->second.value != v.value || it->second.lease != v.lease) {
            o << " " << k << "(differs)";
            *missing = true;
        } else if (v.mod && it->second.mod_revision != v.mod) {
            o << " " << k << "(mod_revision " << it->second.mod_revision << ", acknowledged " << v.mod << ")";
        }
    }
    for (auto& [k, v] : got.kvs)
        if (!want.kvs.count(k)) o << " " << k << "(extra)";
    std::set<qr::lease_id> extra;
    for (auto id : got.live)
        if (!want.leases.count(id)) extra.insert(id);
    for (auto& [id, s] : want.leases)
        if (!got.live.count(id)) {
            o << " lease " << id << "(missing)";
            *missing = true;
        }
    if (!(extra.empty() || (want.extra_long_lease && extra.size() == 1 && *extra.begin() > want.max_id)))
        for (auto id : extra) {
            // A known id that is not live was revoked (or expired) with an acknowledgement.
            o << " lease " << id << (id <= want.max_id ? "(resurrected after an acknowledged revoke)" : "(extra)");
            if (id <= want.max_id) *missing = true;
        }
    return o.str();
}

/// Reads the whole visible state. False if a read failed (ec set).
inline bool dread(qr::directory_store& s, qr::lease_id max_id, dstate& out, std::error_code& ec) {
    auto all = s.list("", ec);
    if (ec) return false;
    for (auto& kv : all)
        out.kvs[kv.key] = kv;
    for (qr::lease_id id = 1; id <= max_id + 8; ++id) {
        s.lease_ttl(id, ec);
        if (!ec)
            out.live.insert(id);
        else if (ec != qr::errc::lease_expired)
            return false;
    }
    ec.clear();
    out.rev = s.revision(ec);
    return !ec;
}

struct dir_case_state {
    dmodel base;          // at the last check
    std::vector<dop> ops; // since: acknowledged, then at most one in flight
    qr::store_revision max_acked_rev = 0;
    std::int64_t short_expiry_ms = 0; // wall-clock time after which every short lease has expired
    bool created = false;             // the store's creation was acknowledged (an open returned)
};

inline std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// Checks the open store against the candidates (with and without the in-flight operation).
/// 1: ok (adopted), 0: failure recorded, -1: the power went during the check.
inline int dir_verify(case_ctx& c, qr::directory_store& s, dir_case_state& st, powercut_disk& disk) {
    // Short leases must be past their expiry so that the expected state is unambiguous.
    while (wall_ms() <= st.short_expiry_ms + 2)
        std::this_thread::sleep_for(1ms);
    dmodel acked = st.base;
    std::optional<dmodel> with_inflight;
    for (auto& op : st.ops) {
        if (op.acked) {
            dapply(acked, op);
        } else {
            with_inflight = acked;
            dapply(*with_inflight, op);
        }
    }
    auto max_id = std::max(acked.max_id, with_inflight ? with_inflight->max_id : 0);
    dstate got;
    std::error_code ec;
    if (!dread(s, max_id, got, ec)) {
        if (disk.was_cut()) return -1;
        c.fail("refused", "read failed: " + ec.message(), "");
        return 0;
    }
    if (got.rev < st.max_acked_rev) {
        c.fail("lost", "revision behind the last acknowledged",
               std::to_string(got.rev) + " < " + std::to_string(st.max_acked_rev));
        return 0;
    }
    bool missing = false, m2 = false;
    auto va = dvisible(acked);
    auto d1 = ddiff(va, got, &missing);
    std::string d2 = "-";
    std::optional<dmodel> chosen;
    if (d1.empty()) chosen = va;
    if (!chosen && with_inflight) {
        auto vb = dvisible(*with_inflight);
        d2 = ddiff(vb, got, &m2);
        if (d2.empty()) chosen = vb;
    }
    if (!chosen) {
        std::string in =
            st.ops.empty() || st.ops.back().acked ? "none" : std::to_string(static_cast<int>(st.ops.back().kind));
        c.fail(missing && (!with_inflight || m2) ? "lost" : "corrupt",
               missing ? "acknowledged changes undone (keys or leases missing, or a revoked lease back)"
                       : "state is not a prefix of the committed operations",
               "against acknowledged:" + d1 + "; with the in-flight op (kind " + in + "):" + d2);
        return 0;
    }
    // Adopt: revisions of keys the in-flight operation wrote are known now.
    for (auto& [k, v] : chosen->kvs)
        v.mod = got.kvs.at(k).mod_revision;
    if (chosen->extra_long_lease) {
        for (auto id : got.live)
            if (!chosen->leases.count(id)) {
                chosen->leases[id] = false;
                chosen->max_id = std::max(chosen->max_id, id);
            }
        chosen->extra_long_lease = false;
    }
    st.base = *chosen;
    st.ops.clear();
    return 1;
}

inline void run_dir_case(case_ctx& c, int phases) {
    const bool fresh = c.scenario == "dir-fresh-dir";
    const fs::path dir = c.root / "s";
    if (!fresh) fs::create_directories(dir);
    // Weights: txn, put_if, erase, grant long, keep-alive, revoke, short lease, expiry read.
    std::vector<double> w = c.scenario == "dir-cas"     ? std::vector<double>{5, 3, 1, 1, 0.5, 0.5, 0.3, 0.2}
                            : c.scenario == "dir-lease" ? std::vector<double>{2, 1, 0.5, 2, 2, 1.5, 1, 1}
                                                        : std::vector<double>{3, 2, 1, 1, 1, 1, 0.5, 0.5};
    dir_case_state st;
    for (c.phase = 0; c.phase <= phases && !c.failed; ++c.phase) {
        const bool last = c.phase == phases;
        auto disk = std::make_shared<powercut_disk>(c.root, c.disk_seed());
        disk->ignore_syncs(c.lying_disk);
        disk->count_only(std::this_thread::get_id()); // the poller's calls go through, uncounted
        std::uint64_t nops = c.uniform(1, 20);
        if (!last) disk->arm(c.cut_point(10 + nops * 2)); // an append is a write and an fsync
        qr::directory_store_options o;
        o.io = disk;
        o.create = !st.created;
        o.poll_interval = 3600s; // the poller runs only when woken: calls stay in the test's order
        o.deadline = 10s;
        o.keep_revisions = c.scenario == "dir-compact" || c.scenario == "dir-dirsync-eio" ? 2
                           : c.scenario == "dir-lease"                                    ? 4
                                                                                          : 10000;
        std::unique_ptr<qr::directory_store> s;
        try {
            s = std::make_unique<qr::directory_store>(dir, o);
            st.created = true;
            // A store object times leases from when it first sees them (issue 15, defect 10).
            st.short_expiry_ms = std::max(st.short_expiry_ms, wall_ms() + 3 + 5);
        } catch (const std::system_error& e) {
            if (!disk->was_cut()) {
                c.fail("refused", e.what(), "");
                return;
            }
        }
        if (s) {
            int v = dir_verify(c, *s, st, *disk);
            if (v == 0) return;
            if (v < 0) s.reset();
        }
        if (last) return;
        if (c.scenario == "dir-dirsync-eio") disk->fail_directory_syncs(1);
        std::discrete_distribution<int> pick(w.begin(), w.end());
        for (std::uint64_t i = 0; s && i < nops && !disk->was_cut(); ++i) {
            auto model = st.base;
            for (auto& op : st.ops)
                dapply(model, op);
            std::vector<qr::lease_id> longs, shorts;
            for (auto& [id, sh] : model.leases)
                (sh ? shorts : longs).push_back(id);
            dop op{};
            std::error_code ec;
            bool definite_failure_ok = false; // a short lease may expire before its put
            auto stamp_short = [&](std::int64_t ttl) {
                st.short_expiry_ms = std::max(st.short_expiry_ms, wall_ms() + ttl + 5);
            };
            const int kind = pick(c.rng);
            switch (kind) {
            case 0: { // multi-key CAS transaction on the counter
                auto n = model.next_txn;
                qr::store_txn t;
                auto it = model.kvs.find("cnt");
                t.compares.push_back(it == model.kvs.end() ? qr::key_compare::absent("cnt")
                                                           : qr::key_compare::mod_revision_is("cnt", it->second.mod));
                op.kind = dop::txn;
                op.puts = {
                    {"cnt", std::to_string(n)},
                    {"t/" + std::to_string(n), std::string(c.uniform(0, 1500), 'a' + static_cast<char>(n % 26))}};
                for (auto& [k, v] : model.kvs)
                    if (k.rfind("t/", 0) == 0 && c.chance(0.2)) {
                        op.erases.push_back(k);
                        break;
                    }
                for (auto& [k, v] : op.puts)
                    t.on_success.push_back(qr::store_op::put(k, v));
                for (auto& k : op.erases)
                    t.on_success.push_back(qr::store_op::erase(k));
                t.on_failure.push_back(qr::store_op::put("compare-failed", std::to_string(n)));
                auto r = s->commit(t, ec);
                if (!ec && !r.succeeded) {
                    c.fail("corrupt", "a compare on the acknowledged counter failed", "txn " + std::to_string(n));
                    return;
                }
                op.rev = r.revision;
                break;
            }
            case 1: { // put_if on one of a few keys
                auto k = "p/" + std::to_string(c.uniform(0, 4));
                auto it = model.kvs.find(k);
                op.kind = dop::put;
                op.puts = {{k, "v" + std::to_string(c.uniform(0, 1u << 30))}};
                op.rev = s->put_if(k, op.puts[0].second, it == model.kvs.end() ? 0 : it->second.mod, 0, ec);
                if (ec == qr::errc::compare_failed) {
                    c.fail("corrupt", "put_if against the acknowledged mod_revision failed", k);
                    return;
                }
                break;
            }
            case 2: { // erase
                std::vector<std::string> ks;
                for (auto& [k, v] : model.kvs)
                    if (!v.lease) ks.push_back(k);
                if (ks.empty()) continue;
                op.kind = dop::erase;
                op.erases = {ks[c.uniform(0, ks.size() - 1)]};
                op.rev = s->erase(op.erases[0], ec);
                break;
            }
            case 3:
            case 6: { // grant a lease (long, or short enough to expire during the case) and put a key under it
                const bool sh = op.short_lease = kind == 6;
                op.kind = dop::grant;
                auto ttl = sh ? 3ms : 600s;
                op.lease = s->grant_lease(ttl, ec);
                if (sh) stamp_short(3); // after the call: the store's expiry is at most now + ttl
                if (!ec) {
                    op.acked = true;
                    st.ops.push_back(op);
                    ++c.t.acked;
                    dop put{};
                    put.kind = dop::put;
                    put.lease = op.lease;
                    put.short_lease = sh;
                    put.puts = {{(sh ? "s/" : "l/") + std::to_string(op.lease), "owned"}};
                    op = put;
                    op.rev = s->put(put.puts[0].first, "owned", op.lease, ec);
                    definite_failure_ok = sh;
                }
                break;
            }
            case 4: { // keep-alive
                if (longs.empty()) continue;
                op.kind = dop::keep;
                op.lease = longs[c.uniform(0, longs.size() - 1)];
                s->keep_alive(op.lease, ec);
                break;
            }
            case 5: { // revoke: its keys go, and must never come back
                if (longs.empty()) continue;
                op.kind = dop::revoke;
                op.lease = longs[c.uniform(0, longs.size() - 1)];
                s->revoke_lease(op.lease, ec);
                break;
            }
            case 7: { // an expired lease's key is never visible
                std::string k;
                for (auto& [key, v] : model.kvs)
                    if (v.lease && model.leases.count(v.lease) && model.leases.at(v.lease)) k = key;
                if (k.empty()) continue;
                while (wall_ms() <= st.short_expiry_ms + 2)
                    std::this_thread::sleep_for(1ms);
                auto got = s->get(k, ec);
                if (!ec && got) {
                    c.fail("corrupt", "a key of an expired lease is visible", k);
                    return;
                }
                if (ec && !disk->was_cut()) {
                    c.fail("refused", "read failed: " + ec.message(), k);
                    return;
                }
                continue; // a read; nothing to record
            }
            }
            if (ec) {
                // With an injected EIO the store may report it (in flight) instead of a cut.
                if (disk->was_cut() || c.scenario == "dir-dirsync-eio") {
                    op.acked = false;
                    st.ops.push_back(op); // in flight: may or may not have reached the disk
                    break;
                }
                if (definite_failure_ok) continue; // the short lease expired first: nothing applied
                c.fail("corrupt", "operation failed with no cut: " + ec.message(), "");
                return;
            }
            op.acked = true;
            st.max_acked_rev = std::max(st.max_acked_rev, op.rev);
            st.ops.push_back(op);
            ++c.t.acked;
        }
        disk->cut();
        s.reset();
        c.crashed(*disk);
    }
}

/// Runs one case (seed) of `scenario` in a fresh directory under `base`.
inline void run_case(engine e, const std::string& scenario, std::uint64_t seed, const fs::path& base, tally& t,
                     bool verbose = false, int phases = 3, bool lying_disk = false) {
    auto root = base / ("case-" + std::to_string(seed));
    std::error_code ec;
    fs::remove_all(root, ec);
    fs::create_directories(root);
    {
        case_ctx c(e, scenario, seed, root, t, verbose);
        c.lying_disk = lying_disk;
        if (e == engine::hive)
            run_hive_case(c, phases);
        else
            run_dir_case(c, phases);
    }
    ++t.cases;
    fs::remove_all(root, ec);
}

} // namespace qr_powerloss
