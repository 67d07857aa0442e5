// quorumreg_bench_compare — the comparison driver behind `make bench`.
//
// Runs the Google Benchmark binaries that sit next to it (or in --bench-dir), each ONCE with
//   --benchmark_format=json --benchmark_repetitions=N --benchmark_enable_random_interleaving=true
// and a --benchmark_filter holding just the benchmarks the selected rows need, so quorumreg and
// its peer are measured in the same run of the same binary, alternating between repetitions.
// Every row takes the median over the repetitions of ours and of the peer, computes the ratio the
// goal is stated on, and the driver writes bench/results/latest.json — an array of
//   {metric, unit, ours, peer, peer_value, ratio, goal, met}
// — and prints the same as an aligned table on stdout (progress goes to stderr).
//
//   quorumreg_bench_compare [--repetitions N] [--out FILE] [--filter REGEX] [--bench-dir DIR] [--list]
//                           [--markdown FILE]
//
// --markdown FILE also writes the table as Markdown (for docs/benchmarks.md and the README).
//
// Exit status: 0 when every selected row was measured (met or not), 1 when a binary failed or a
// row's numbers are missing, 2 on bad usage. Goals that are missed do not fail the run: the
// table and the JSON say so.
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

/// How the ratio a goal is stated on is formed from the two medians.
enum class ratio_kind {
    ours_over_peer, ///< rates (higher is better) or times where the goal is "<= x of the peer's time"
    peer_over_ours, ///< times where the goal is "at least x of the peer's speed"
};

/// Where a number comes from: a field of one benchmark's JSON entries. Field "real_time_ms" is
/// the entry's real_time converted to milliseconds; any other name is a counter or a
/// built-in field (items_per_second, ...).
struct source {
    std::string run; ///< run_name in the JSON (as --benchmark_list_tests prints it)
    std::string field;
};

struct row_def {
    std::string metric;
    std::string unit;
    std::string binary;
    source ours;
    std::string peer;               ///< the peer's label
    std::optional<source> peer_src; ///< empty: peer_const is a fixed target
    double peer_const = 0;
    ratio_kind kind = ratio_kind::ours_over_peer;
    std::string op; ///< ">=" or "<="
    double goal = 0;
    double slack = 0;        ///< > 0: goal = (peer_value + slack) / peer_value (the failover row: TTL + 200 ms)
    std::string peer_unit{}; ///< the peer's unit when it differs from the row's
};

std::vector<row_def> rows() {
    const std::string hive = "bench_hive", commit1 = "BM_hive_commit/real_time/threads:1";
    std::vector<row_def> r;
    r.push_back({"hive durable commits/s, 1 writer",
                 "commits/s",
                 hive,
                 {commit1, "items_per_second"},
                 "raw 4 KiB overwrite+fdatasync",
                 source{"BM_raw_fdatasync_4k/real_time", "items_per_second"},
                 0,
                 ratio_kind::ours_over_peer,
                 ">=",
                 0.9});
    r.push_back({"hive durable commits/s, 1 writer",
                 "commits/s",
                 hive,
                 {commit1, "items_per_second"},
                 "SQLite WAL synchronous=FULL",
                 source{"BM_sqlite_commit/real_time", "items_per_second"},
                 0,
                 ratio_kind::ours_over_peer,
                 ">=",
                 1.0});
    r.push_back({"hive durable commits/s, 1 writer",
                 "commits/s",
                 hive,
                 {commit1, "items_per_second"},
                 "LMDB durable commit",
                 source{"BM_lmdb_commit/real_time", "items_per_second"},
                 0,
                 ratio_kind::ours_over_peer,
                 ">=",
                 1.0});
    r.push_back({"hive commits/s, 32 writers",
                 "commits/s",
                 hive,
                 {"BM_hive_commit/real_time/threads:32", "items_per_second"},
                 "hive, 1 writer",
                 source{commit1, "items_per_second"},
                 0,
                 ratio_kind::ours_over_peer,
                 ">=",
                 10.0});
    r.push_back({"hive commits/s with metrics on, 1 writer",
                 "commits/s",
                 hive,
                 {"BM_hive_commit_metrics/real_time/threads:1", "items_per_second"},
                 "hive, metrics off",
                 source{commit1, "items_per_second"},
                 0,
                 ratio_kind::ours_over_peer,
                 ">=",
                 0.99});
    r.push_back({"hive commits per fdatasync, 32 writers",
                 "commits/sync",
                 hive,
                 {"BM_hive_commit_metrics/real_time/threads:32", "commits_per_sync"},
                 "target",
                 std::nullopt,
                 16,
                 ratio_kind::ours_over_peer,
                 ">=",
                 1.0});
    r.push_back({"hive point reads/s",
                 "reads/s",
                 hive,
                 {"BM_hive_get", "items_per_second"},
                 "LMDB point reads",
                 source{"BM_lmdb_get", "items_per_second"},
                 0,
                 ratio_kind::ours_over_peer,
                 ">=",
                 1.0});
    const std::string cp = "BM_checkpoint_save_restore/100000/iterations:3";
    r.push_back({"checkpoint save, 100k values",
                 "ms",
                 "bench_checkpoint",
                 {cp, "save_ms"},
                 "raw sequential write+fsync, same bytes",
                 source{cp, "raw_ms"},
                 0,
                 ratio_kind::peer_over_ours,
                 ">=",
                 0.5});
    r.push_back({"checkpoint restore, 100k values",
                 "ms",
                 "bench_checkpoint",
                 {cp, "restore_ms"},
                 "raw sequential write+fsync, same bytes",
                 source{cp, "raw_ms"},
                 0,
                 ratio_kind::peer_over_ours,
                 ">=",
                 0.5});
    r.push_back({"etcd_store single puts/s",
                 "puts/s",
                 "bench_etcd",
                 {"put_single/real_time", "store_puts_per_s"},
                 "raw keep-alive gateway put loop",
                 source{"put_single/real_time", "raw_puts_per_s"},
                 0,
                 ratio_kind::ours_over_peer,
                 ">=",
                 0.9});
    r.push_back({"etcd_store batched puts/s (64 per txn)",
                 "puts/s",
                 "bench_etcd",
                 {"put_batched/64/real_time", "batched_puts_per_s"},
                 "etcd_store single puts",
                 source{"put_single/real_time", "store_puts_per_s"},
                 0,
                 ratio_kind::ours_over_peer,
                 ">=",
                 10.0});
    r.push_back({"start waves, 1M nodes / 3M edges",
                 "ms",
                 "bench_dependency_graph",
                 {"waves/1000000", "ours_ms"},
                 "Boost.Graph topological_sort",
                 source{"waves/1000000", "boost_ms"},
                 0,
                 ratio_kind::ours_over_peer,
                 "<=",
                 0.5});
    r.push_back({"add_dependency with cycle check, 100k nodes, shuffled, median",
                 "ns",
                 "bench_dependency_graph",
                 {"insert_shuffled/100000/iterations:1/repeats:1", "median_ns"},
                 "target 2000 ns",
                 std::nullopt,
                 2000,
                 ratio_kind::ours_over_peer,
                 "<=",
                 1.0});
    r.push_back({"monitor crash -> 100 resources online, median",
                 "ms",
                 "bench_monitor",
                 {"BM_monitor_recovery/100/iterations:1/repeats:9/manual_time", "real_time_ms"},
                 "target 50 ms",
                 std::nullopt,
                 50,
                 ratio_kind::ours_over_peer,
                 "<=",
                 1.0});
    const std::string fo = "BM_failover_directory/1000/iterations:1/manual_time";
    r.push_back({"failover, owner kill -9 -> standby online with data (directory store)",
                 "ms",
                 "bench_failover",
                 {fo, "real_time_ms"},
                 "lease TTL (+200 ms allowed)",
                 source{fo, "ttl_ms"},
                 0,
                 ratio_kind::ours_over_peer,
                 "<=",
                 0,
                 200});
    return r;
}

double median(std::vector<double> v) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    auto n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double to_ms(double t, const std::string& unit) {
    if (unit == "ns") return t / 1e6;
    if (unit == "us") return t / 1e3;
    if (unit == "s") return t * 1e3;
    return t;
}

std::optional<double> number_of(const json::object& o, const std::string& field) {
    if (field == "real_time_ms") {
        auto* t = o.if_contains("real_time");
        auto* u = o.if_contains("time_unit");
        if (!t) return std::nullopt;
        return to_ms(t->to_number<double>(), u && u->is_string() ? std::string(u->as_string()) : "ns");
    }
    auto* v = o.if_contains(field);
    if (!v || !(v->is_number())) return std::nullopt;
    return v->to_number<double>();
}

/// The parsed "benchmarks" array of one binary's run.
struct run_result {
    bool ok = false;
    std::string error;
    json::array entries;
    /// Median over the repetitions (run_type "iteration"); if the binary reported aggregates
    /// only, the "median" aggregate.
    std::optional<double> value(const source& s, std::string& why) const {
        std::vector<double> values;
        std::optional<double> agg;
        for (auto& e : entries) {
            auto& o = e.as_object();
            auto* rn = o.if_contains("run_name");
            if (!rn || !rn->is_string() || rn->as_string() != s.run) continue;
            if (auto* err = o.if_contains("error_occurred"); err && err->is_bool() && err->as_bool()) {
                auto* msg = o.if_contains("error_message");
                why = s.run + ": " + (msg && msg->is_string() ? std::string(msg->as_string()) : "error");
                return std::nullopt;
            }
            auto* rt = o.if_contains("run_type");
            std::string type = rt && rt->is_string() ? std::string(rt->as_string()) : "iteration";
            auto x = number_of(o, s.field);
            if (!x) continue;
            if (type == "iteration")
                values.push_back(*x);
            else if (auto* an = o.if_contains("aggregate_name"); an && an->is_string() && an->as_string() == "median")
                agg = x;
        }
        if (!values.empty()) return median(values);
        if (agg) return agg;
        why = s.run + ": no \"" + s.field + "\" in the results";
        return std::nullopt;
    }
};

std::string regex_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (std::strchr("\\^$.|?*+()[]{}", c)) out += '\\';
        out += c;
    }
    return out;
}

/// Runs `exe args...` with stdout into `out_file`; returns the exit status (-1: could not run).
int run_child(const std::string& exe, const std::vector<std::string>& args, const fs::path& out_file) {
    pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ::dup2(fd, 1) < 0) ::_exit(127);
        std::vector<char*> argv;
        argv.push_back(const_cast<char*>(exe.c_str()));
        for (auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(exe.c_str(), argv.data());
        ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

run_result run_binary(const fs::path& exe, const std::set<std::string>& runs, int repetitions) {
    run_result r;
    if (!fs::exists(exe)) {
        r.error = exe.string() + " not found (build the quorumreg_bench_all target)";
        return r;
    }
    std::string filter;
    for (auto& n : runs)
        filter += (filter.empty() ? "" : "|") + regex_escape(n);
    std::vector<std::string> args{"--benchmark_format=json", "--benchmark_repetitions=" + std::to_string(repetitions),
                                  "--benchmark_enable_random_interleaving=true",
                                  "--benchmark_filter=^(" + filter + ")$"};
    auto out = fs::temp_directory_path() /
               ("qr-bench-compare-" + std::to_string(::getpid()) + "-" + exe.filename().string() + ".json");
    std::cerr << "[compare] " << exe.filename().string() << ": " << runs.size() << " benchmark(s) x " << repetitions
              << " repetitions, interleaved..." << std::endl;
    auto t0 = std::chrono::steady_clock::now();
    int rc = run_child(exe.string(), args, out);
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::ifstream in(out);
    std::stringstream ss;
    ss << in.rdbuf();
    std::error_code rm;
    fs::remove(out, rm);
    std::string text = ss.str();
    std::cerr << "[compare] " << exe.filename().string() << ": exit " << rc << " after " << static_cast<int>(secs)
              << " s" << std::endl;
    // Anything a binary prints on stdout before Google Benchmark's JSON is skipped.
    auto start = text.find("{\n  \"context\"");
    if (start == std::string::npos) start = text.find('{');
    if (rc != 0 || start == std::string::npos) {
        r.error = exe.filename().string() + " exited with status " + std::to_string(rc);
        if (start == std::string::npos) return r;
    }
    std::error_code ec;
    auto v = json::parse(std::string_view(text).substr(start), ec);
    if (ec || !v.is_object() || !v.as_object().contains("benchmarks")) {
        if (r.error.empty()) r.error = exe.filename().string() + ": unreadable JSON output";
        return r;
    }
    r.entries = v.as_object()["benchmarks"].as_array();
    r.ok = r.error.empty();
    return r;
}

std::string fmt(double x) {
    if (std::isnan(x)) return "n/a";
    char buf[64];
    double a = std::fabs(x);
    if (a >= 1e6)
        std::snprintf(buf, sizeof buf, "%.3gM", x / 1e6);
    else if (a >= 1e4)
        std::snprintf(buf, sizeof buf, "%.0f", x);
    else if (a >= 100)
        std::snprintf(buf, sizeof buf, "%.1f", x);
    else
        std::snprintf(buf, sizeof buf, "%.3g", x);
    return buf;
}

/// A JSON number people can read: no exponent, about six significant digits.
std::string json_number(double x) {
    char buf[64];
    double a = std::fabs(x);
    if (a >= 1e5)
        std::snprintf(buf, sizeof buf, "%.0f", x);
    else if (a >= 1)
        std::snprintf(buf, sizeof buf, "%.6g", x);
    else
        std::snprintf(buf, sizeof buf, "%.6f", x);
    return buf;
}

std::string fmt_goal(const std::string& op, double g) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.3g", op.c_str(), g);
    return buf;
}

void usage() {
    std::cerr << "usage: quorumreg_bench_compare [--repetitions N] [--out FILE] [--filter REGEX] [--bench-dir DIR]"
                 " [--list] [--markdown FILE]\n";
}

} // namespace

int main(int argc, char** argv) {
    int repetitions = 5;
#ifdef QR_BENCH_RESULTS
    fs::path out_path = QR_BENCH_RESULTS;
#else
    fs::path out_path = "bench/results/latest.json";
#endif
    std::string filter;
    fs::path dir = fs::read_symlink("/proc/self/exe").parent_path();
    bool list = false;
    std::string markdown;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage();
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--repetitions") {
            repetitions = std::atoi(next().c_str());
            if (repetitions < 1) {
                usage();
                return 2;
            }
        } else if (a == "--out") {
            out_path = next();
        } else if (a == "--filter") {
            filter = next();
        } else if (a == "--bench-dir") {
            dir = next();
        } else if (a == "--markdown") {
            markdown = next();
        } else if (a == "--list") {
            list = true;
        } else {
            usage();
            return 2;
        }
    }
    std::regex re(filter.empty() ? ".*" : filter, std::regex::icase | std::regex::ECMAScript);
    std::vector<row_def> selected;
    for (auto& r : rows())
        if (std::regex_search(r.metric + " vs " + r.peer, re)) selected.push_back(r);
    if (list) {
        for (auto& r : selected)
            std::cout << r.binary << ": " << r.metric << " vs " << r.peer << "\n";
        return 0;
    }
    if (selected.empty()) {
        std::cerr << "no metric matches --filter " << filter << "\n";
        return 2;
    }

    // One run per binary, holding every benchmark its selected rows need.
    std::map<std::string, std::set<std::string>> needed;
    for (auto& r : selected) {
        needed[r.binary].insert(r.ours.run);
        if (r.peer_src) needed[r.binary].insert(r.peer_src->run);
    }
    std::map<std::string, run_result> results;
    for (auto& [bin, runs] : needed)
        results[bin] = run_binary(dir / bin, runs, repetitions);

    json::array out;
    bool complete = true;
    struct line {
        std::string metric, unit, ours, peer, peer_value, ratio, goal, met;
    };
    std::vector<line> table;
    for (auto& r : selected) {
        auto& res = results[r.binary];
        std::string why;
        auto ours = res.value(r.ours, why);
        std::optional<double> peer_value =
            r.peer_src ? res.value(*r.peer_src, why) : std::optional<double>(r.peer_const);
        double ratio = std::nan("");
        if (ours && peer_value && *ours > 0 && *peer_value > 0)
            ratio = r.kind == ratio_kind::ours_over_peer ? *ours / *peer_value : *peer_value / *ours;
        double goal = r.goal;
        if (r.slack > 0 && peer_value && *peer_value > 0) goal = (*peer_value + r.slack) / *peer_value;
        bool met = !std::isnan(ratio) && (r.op == ">=" ? ratio >= goal : ratio <= goal);
        if (!ours || !peer_value) {
            complete = false;
            if (why.empty()) why = res.error;
            std::cerr << "[compare] " << r.metric << ": " << (why.empty() ? res.error : why) << "\n";
        }
        json::object o;
        o["metric"] = r.metric;
        o["unit"] = r.unit;
        o["ours"] = ours ? json::value(*ours) : json::value(nullptr);
        o["peer"] = r.peer;
        o["peer_value"] = peer_value ? json::value(*peer_value) : json::value(nullptr);
        o["ratio"] = std::isnan(ratio) ? json::value(nullptr) : json::value(ratio);
        o["goal"] = fmt_goal(r.op, goal);
        o["met"] = met;
        out.push_back(std::move(o));
        table.push_back({r.metric, r.unit, ours ? fmt(*ours) : "n/a", r.peer, peer_value ? fmt(*peer_value) : "n/a",
                         std::isnan(ratio) ? "n/a" : fmt(ratio), fmt_goal(r.op, goal), met ? "yes" : "NO"});
    }

    // One object per line: readable, and diffs of the committed file stay small.
    std::error_code ec;
    if (out_path.has_parent_path()) fs::create_directories(out_path.parent_path(), ec);
    {
        std::ofstream f(out_path);
        f << "[\n";
        for (std::size_t i = 0; i < out.size(); ++i) {
            auto& o = out[i].as_object();
            f << "  {";
            bool first = true;
            for (auto& [k, v] : o) {
                f << (first ? "" : ", ") << json::serialize(json::string(k)) << ": "
                  << (v.is_double() ? json_number(v.as_double()) : json::serialize(v));
                first = false;
            }
            f << (i + 1 < out.size() ? "},\n" : "}\n");
        }
        f << "]\n";
        if (!f) {
            std::cerr << "[compare] cannot write " << out_path << "\n";
            return 1;
        }
    }

    line head{"metric", "unit", "ours", "peer", "peer value", "ratio", "goal", "met"};
    if (!markdown.empty()) {
        std::ofstream mdf(markdown);
        auto md = [&](const line& l) {
            mdf << "| " << l.metric << " | " << l.unit << " | " << l.ours << " | " << l.peer << " | " << l.peer_value
                << " | " << l.ratio << " | " << l.goal << " | " << l.met << " |\n";
        };
        md(head);
        mdf << "|---|---|---:|---|---:|---:|---|---|\n";
        for (auto& l : table)
            md(l);
    }
    std::vector<std::size_t> w(8, 0);
    auto widths = [&](const line& l) {
        const std::string* f[] = {&l.metric, &l.unit, &l.ours, &l.peer, &l.peer_value, &l.ratio, &l.goal, &l.met};
        for (int i = 0; i < 8; ++i)
            w[i] = std::max(w[i], f[i]->size());
    };
    widths(head);
    for (auto& l : table)
        widths(l);
    auto print = [&](const line& l) {
        const std::string* f[] = {&l.metric, &l.unit, &l.ours, &l.peer, &l.peer_value, &l.ratio, &l.goal, &l.met};
        std::string s;
        for (int i = 0; i < 8; ++i) {
            bool right = i == 2 || i == 4 || i == 5;
            std::string pad(w[i] - f[i]->size(), ' ');
            s += right ? pad + *f[i] : *f[i] + pad;
            if (i < 7) s += "  ";
        }
        while (!s.empty() && s.back() == ' ')
            s.pop_back();
        std::cout << s << "\n";
    };
    print(head);
    std::size_t total = 0;
    for (auto x : w)
        total += x + 2;
    std::cout << std::string(total - 2, '-') << "\n";
    for (auto& l : table)
        print(l);
    std::size_t met = 0;
    for (auto& o : out)
        met += o.as_object()["met"].as_bool();
    std::cout << "\n"
              << met << " of " << out.size() << " goals met; " << repetitions
              << " interleaved repetitions, medians; written to " << out_path.string() << "\n";
    return complete ? 0 : 1;
}
