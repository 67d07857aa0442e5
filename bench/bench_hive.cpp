// Hive: durable commits/s with 1, 8 and 32 writers and point reads/s, and — in the same binary,
// on the same file system, so that random interleaving alternates them within one run — its
// peers:
// - the physical limit: a 4 KiB overwrite + fdatasync loop on a preallocated file (the fastest
//   durable-write pattern; appending costs a metadata flush as well);
// - SQLite in WAL mode with synchronous=FULL: one small-row INSERT OR REPLACE per (autocommit)
//   transaction;
// - LMDB with its default, durable commit (no MDB_NOSYNC / MDB_NOMETASYNC): one put per write
//   transaction; and LMDB point reads (one read transaction per get, reset/renew as LMDB
//   recommends) against hive point reads on the same 10,000 keys.
//
// The directory is $QUORUMREG_BENCH_DIR if set, else the system temp directory (not tmpfs here;
// check before trusting the raw loop: on tmpfs fdatasync is free).
#include <quorumreg/hive.hpp>

#include <benchmark/benchmark.h>
#include <lmdb.h>
#include <sqlite3.h>

#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;

constexpr int read_keys = 10000;

fs::path bench_dir(const std::string& tag) {
    std::random_device rd;
    const char* env = std::getenv("QUORUMREG_BENCH_DIR");
    fs::path base = env ? fs::path(env) : fs::temp_directory_path();
    auto p = base / ("qr-bench-" + tag + "-" + std::to_string(rd()));
    fs::create_directories(p);
    return p;
}

/// The key/value names of point read k, the same for the hive and LMDB.
std::string read_key(int k) { return "Bench/K" + std::to_string(k % 100); }
std::string read_name(int k) { return "v" + std::to_string(k); }

void BM_raw_fdatasync_4k(benchmark::State& state) {
    auto dir = bench_dir("raw");
    int fd = ::open((dir / "f").c_str(), O_CREAT | O_RDWR, 0600);
    std::string block(4096, 'x');
    if (::pwrite(fd, block.data(), block.size(), 0) != 4096 || ::fdatasync(fd) != 0) state.SkipWithError("write");
    for (auto _ : state) {
        if (::pwrite(fd, block.data(), block.size(), 0) != 4096 || ::fdatasync(fd) != 0) state.SkipWithError("write");
    }
    ::close(fd);
    fs::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_raw_fdatasync_4k)->UseRealTime();

void BM_hive_commit(benchmark::State& state) {
    static std::unique_ptr<quorumreg::hive> h;
    static fs::path dir;
    if (state.thread_index() == 0) {
        dir = bench_dir("hive");
        h = std::make_unique<quorumreg::hive>(dir / "h");
    }
    // Google Benchmark synchronizes threads at the start of the loop.
    std::uint32_t i = 0;
    auto key = "Bench/T" + std::to_string(state.thread_index());
    for (auto _ : state)
        h->set_value(key, "v", quorumreg::value::dword(++i));
    state.SetItemsProcessed(state.iterations());
    if (state.thread_index() == 0) {
        h.reset();
        fs::remove_all(dir);
    }
}
BENCHMARK(BM_hive_commit)->Threads(1)->Threads(8)->Threads(32)->UseRealTime();

// The same commits with the hive reporting into a metrics registry (docs/metrics.md): what
// metrics cost on the commit path, and commits per fdatasync as the registry counts them.
void BM_hive_commit_metrics(benchmark::State& state) {
    static std::unique_ptr<quorumreg::metrics_registry> m;
    static std::unique_ptr<quorumreg::hive> h;
    static fs::path dir;
    if (state.thread_index() == 0) {
        dir = bench_dir("hive-metrics");
        m = std::make_unique<quorumreg::metrics_registry>();
        quorumreg::hive_options o;
        o.metrics = m.get();
        o.metrics_name = "bench";
        h = std::make_unique<quorumreg::hive>(dir / "h", o);
    }
    std::uint32_t i = 0;
    auto key = "Bench/T" + std::to_string(state.thread_index());
    for (auto _ : state)
        h->set_value(key, "v", quorumreg::value::dword(++i));
    state.SetItemsProcessed(state.iterations());
    if (state.thread_index() == 0) {
        const quorumreg::metric_labels l{{"hive", "bench"}};
        auto& commits =
            m->add_counter("quorumreg_hive_commits_total", "Hive transactions committed by this process.", l);
        auto& syncs =
            m->add_counter("quorumreg_hive_syncs_total", "fdatasync calls on the hive journal by this process.", l);
        state.counters["commits_per_sync"] =
            syncs.value() ? static_cast<double>(commits.value()) / static_cast<double>(syncs.value()) : 0.0;
        h.reset();
        m.reset();
        fs::remove_all(dir);
    }
}
BENCHMARK(BM_hive_commit_metrics)->Threads(1)->Threads(32)->UseRealTime();

/// SQLite, WAL, synchronous=FULL: every INSERT OR REPLACE is its own durable transaction.
void BM_sqlite_commit(benchmark::State& state) {
    auto dir = bench_dir("sqlite");
    sqlite3* db = nullptr;
    sqlite3_stmt* st = nullptr;
    auto check = [&](int rc, const char* what) {
        if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
            state.SkipWithError((std::string(what) + ": " + sqlite3_errstr(rc)).c_str());
            return false;
        }
        return true;
    };
    if (check(sqlite3_open((dir / "db.sqlite").c_str(), &db), "open") &&
        check(sqlite3_exec(db,
                           "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                           "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)",
                           nullptr, nullptr, nullptr),
              "setup") &&
        check(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv(k, v) VALUES ('Bench/T0\\v', ?1)", -1, &st, nullptr),
              "prepare")) {
        std::int64_t i = 0;
        for (auto _ : state) {
            sqlite3_bind_int64(st, 1, ++i);
            if (!check(sqlite3_step(st), "insert")) break;
            sqlite3_reset(st);
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    fs::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_sqlite_commit)->UseRealTime();

/// An LMDB environment with default (durable) flags and one database.
struct lmdb_env {
    MDB_env* env = nullptr;
    MDB_dbi dbi = 0;
    int rc = 0;
    explicit lmdb_env(const fs::path& dir) {
        if ((rc = mdb_env_create(&env)) != 0) return;
        if ((rc = mdb_env_set_mapsize(env, std::size_t{1} << 30)) != 0) return;
        if ((rc = mdb_env_open(env, dir.c_str(), 0, 0600)) != 0) return;
        MDB_txn* txn = nullptr;
        if ((rc = mdb_txn_begin(env, nullptr, 0, &txn)) != 0) return;
        if ((rc = mdb_dbi_open(txn, nullptr, 0, &dbi)) != 0) {
            mdb_txn_abort(txn);
            return;
        }
        rc = mdb_txn_commit(txn);
    }
    ~lmdb_env() {
        if (env) mdb_env_close(env);
    }
    lmdb_env(const lmdb_env&) = delete;
    lmdb_env& operator=(const lmdb_env&) = delete;
    int put(std::string_view k, std::string_view v) {
        MDB_txn* txn = nullptr;
        if (int r = mdb_txn_begin(env, nullptr, 0, &txn)) return r;
        MDB_val key{k.size(), const_cast<char*>(k.data())}, val{v.size(), const_cast<char*>(v.data())};
        if (int r = mdb_put(txn, dbi, &key, &val, 0)) {
            mdb_txn_abort(txn);
            return r;
        }
        return mdb_txn_commit(txn); // fsyncs (no MDB_NOSYNC)
    }
};

void BM_lmdb_commit(benchmark::State& state) {
    auto dir = bench_dir("lmdb");
    {
        lmdb_env db(dir);
        if (db.rc != 0) state.SkipWithError(mdb_strerror(db.rc));
        std::uint32_t i = 0;
        for (auto _ : state) {
            ++i;
            if (int rc = db.put("Bench/T0\\v", std::string_view(reinterpret_cast<const char*>(&i), sizeof i))) {
                state.SkipWithError(mdb_strerror(rc));
                break;
            }
        }
    }
    fs::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_lmdb_commit)->UseRealTime();

void BM_hive_get(benchmark::State& state) {
    auto dir = bench_dir("get");
    {
        quorumreg::hive h(dir / "h");
        quorumreg::transaction txn;
        for (int i = 0; i < read_keys; ++i)
            txn.set_value(read_key(i), read_name(i), quorumreg::value::dword(static_cast<std::uint32_t>(i)));
        h.commit(txn);
        int i = 0;
        for (auto _ : state) {
            int k = i++ % read_keys;
            auto v = h.get_value(read_key(k), read_name(k));
            benchmark::DoNotOptimize(v);
        }
    }
    fs::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_hive_get);

/// LMDB point reads of the same keys: a read-only transaction per get (renewed, not re-created,
/// as LMDB recommends for read loops) and the value copied out, as the hive's get returns a copy.
void BM_lmdb_get(benchmark::State& state) {
    auto dir = bench_dir("lmdbget");
    {
        lmdb_env db(dir);
        if (db.rc != 0) state.SkipWithError(mdb_strerror(db.rc));
        MDB_txn* txn = nullptr;
        mdb_txn_begin(db.env, nullptr, 0, &txn);
        for (int i = 0; i < read_keys; ++i) {
            auto k = read_key(i) + "\\" + read_name(i);
            auto v = static_cast<std::uint32_t>(i);
            MDB_val key{k.size(), k.data()}, val{sizeof v, &v};
            mdb_put(txn, db.dbi, &key, &val, 0);
        }
        mdb_txn_commit(txn);
        MDB_txn* rtxn = nullptr;
        mdb_txn_begin(db.env, nullptr, MDB_RDONLY, &rtxn);
        mdb_txn_reset(rtxn);
        int i = 0;
        std::size_t found = 0;
        for (auto _ : state) {
            int k = i++ % read_keys;
            auto name = read_key(k) + "\\" + read_name(k);
            mdb_txn_renew(rtxn);
            MDB_val key{name.size(), name.data()}, val{};
            if (mdb_get(rtxn, db.dbi, &key, &val) == 0) {
                std::string copy(static_cast<const char*>(val.mv_data), val.mv_size);
                benchmark::DoNotOptimize(copy);
                ++found;
            }
            mdb_txn_reset(rtxn);
        }
        mdb_txn_abort(rtxn);
        if (found != static_cast<std::size_t>(state.iterations())) state.SkipWithError("lmdb: key missing");
    }
    fs::remove_all(dir);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_lmdb_get);

} // namespace

BENCHMARK_MAIN();
