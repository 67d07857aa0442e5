// Metrics: counters, gauges and fixed-bucket histograms, rendered in the Prometheus text
// exposition format (version 0.0.4).
//
//   quorumreg::metrics_registry m;
//   auto& commits = m.add_counter("quorumreg_hive_commits_total", "Durable hive commits.");
//   auto& latency = m.add_histogram("quorumreg_hive_commit_seconds", "Commit latency.",
//                                   quorumreg::latency_buckets());
//   commits.inc();  latency.observe(0.0021);
//   std::string text = m.render();   // what GET /metrics serves (see metrics_http.hpp)
//
// - Hot path: inc()/set()/add()/observe() are one or two relaxed atomic operations on an object
//   whose address never changes; no lock, no allocation. Registration and render() take the
//   registry's mutex (cold path).
// - Naming follows Prometheus conventions and is checked at registration: metric names match
//   [a-zA-Z_:][a-zA-Z0-9_:]*, counters end in `_total`, label names match [a-zA-Z_][a-zA-Z0-9_]*
//   and do not start with `__`; `le` is reserved for histograms. A bad name, or one metric name
//   registered again with another type, help text or label names, throws quorumreg::error
//   (errc::invalid_argument) and changes nothing.
// - add_*() is idempotent: the same name and label values return the same object, so
//   components can register what they use without coordinating.
// - Collectors (add_collector) report values that are already counted elsewhere (for example
//   the hive's shared counters) at render time, so they cost nothing between scrapes.
// - Threading: every member is thread-safe. Metric objects live as long as their registry.
#pragma once

#include <quorumreg/error.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace quorumreg {

/// Label name/value pairs of one series, e.g. `{{"resource", "SQL"}, {"backend", "etcd"}}`.
using metric_labels = std::vector<std::pair<std::string, std::string>>;

/// A monotonically increasing count.
class counter {
public:
    /// Adds `n` (lock-free).
    void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
    /// The count so far.
    std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

/// A value that goes up and down.
class gauge {
public:
    /// Sets the value.
    void set(double v) noexcept { v_.store(v, std::memory_order_relaxed); }
    /// Adds `d` (negative: subtracts).
    void add(double d) noexcept { v_.fetch_add(d, std::memory_order_relaxed); }
    /// The value now.
    double value() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> v_{0.0};
};

/// Observations counted into fixed buckets (upper bounds, inclusive), plus their sum.
class histogram {
public:
    /// Buckets with these upper bounds (ascending), plus +Inf.
    explicit histogram(std::vector<double> upper_bounds)
        : bounds_(std::move(upper_bounds)),
          counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

    /// Counts `v` into its bucket and adds it to the sum (lock-free).
    void observe(double v) noexcept {
        // First bound >= v: Prometheus buckets are "less than or equal".
        auto i = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
        counts_[i].fetch_add(1, std::memory_order_relaxed);
        sum_.fetch_add(v, std::memory_order_relaxed);
    }

    /// The bounds given at construction.
    const std::vector<double>& upper_bounds() const noexcept { return bounds_; }
    /// Observations in bucket i alone (i == upper_bounds().size() is the +Inf overflow bucket).
    std::uint64_t bucket_count(std::size_t i) const noexcept { return counts_[i].load(std::memory_order_relaxed); }
    /// Every observation so far.
    std::uint64_t count() const noexcept {
        std::uint64_t n = 0;
        for (std::size_t i = 0; i <= bounds_.size(); ++i)
            n += bucket_count(i);
        return n;
    }
    /// The sum of every observation so far.
    double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
    std::atomic<double> sum_{0.0};
};

/// Buckets for latencies in seconds: 50 µs to 10 s, about three per decade.
inline std::vector<double> latency_buckets() {
    return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
            0.05,    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0};
}

/// Buckets for sizes and counts: 1, 2, 4, ... 4096.
inline std::vector<double> power_of_two_buckets(unsigned up_to_exponent = 12) {
    std::vector<double> b;
    for (unsigned e = 0; e <= up_to_exponent; ++e)
        b.push_back(std::ldexp(1.0, static_cast<int>(e)));
    return b;
}

enum class metric_type { counter, gauge, histogram };

namespace detail {

inline bool valid_metric_name(std::string_view n) {
    if (n.empty()) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        char c = n[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

inline bool valid_label_name(std::string_view n) {
    if (n.empty() || n.substr(0, 2) == "__") return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        char c = n[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

/// A sample value in the text format: integers exactly, others shortest round-trip, and
/// +Inf/-Inf/NaN spelled as Prometheus expects.
inline void append_number(std::string& out, double v) {
    if (std::isnan(v)) {
        out += "NaN";
    } else if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
    } else {
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof buf, v);
        out.append(buf, r.ptr);
    }
}

inline void append_number(std::string& out, std::uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

/// Label values escape backslash, double quote and newline; HELP escapes backslash and newline.
inline void append_escaped(std::string& out, std::string_view s, bool quote) {
    for (char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (quote && c == '"') {
            out += "\\\"";
        } else {
            out += c;
        }
    }
}

inline void append_labels(std::string& out, const metric_labels& labels, std::string_view le = {}) {
    if (labels.empty() && le.empty()) return;
    out += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
        if (!first) out += ',';
        first = false;
        out += k;
        out += "=\"";
        append_escaped(out, v, true);
        out += '"';
    }
    if (!le.empty()) {
        if (!first) out += ',';
        out += "le=\"";
        out += le;
        out += '"';
    }
    out += '}';
}

[[noreturn]] inline void bad_metric(const std::string& what) {
    throw error(make_error_code(errc::invalid_argument), "metrics: " + what);
}

} // namespace detail

/// What a collector writes into at render time.
class metric_writer {
public:
    /// One counter sample (`name` ends in _total).
    void counter(std::string_view name, std::string_view help, const metric_labels& labels, std::uint64_t value) {
        add(name, help, metric_type::counter, labels, static_cast<double>(value), true, value);
    }
    /// One gauge sample.
    void gauge(std::string_view name, std::string_view help, const metric_labels& labels, double value) {
        add(name, help, metric_type::gauge, labels, value, false, 0);
    }

private:
    friend class metrics_registry;
    struct sample {
        metric_labels labels;
        double value;
        bool integral;
        std::uint64_t ivalue;
    };
    struct family {
        std::string help;
        metric_type type;
        std::vector<sample> samples;
    };
    void add(std::string_view name, std::string_view help, metric_type type, const metric_labels& labels, double v,
             bool integral, std::uint64_t iv);
    std::map<std::string, family, std::less<>> families_;
};

/// The set of metrics one process exposes.
class metrics_registry {
public:
    metrics_registry() = default;
    metrics_registry(const metrics_registry&) = delete;
    metrics_registry& operator=(const metrics_registry&) = delete;

    /// The counter of series (`name`, `labels`), created on first use; `name` must end in _total.
    /// The reference stays valid as long as the registry.
    counter& add_counter(std::string_view name, std::string_view help, const metric_labels& labels = {}) {
        if (name.size() < 6 || name.substr(name.size() - 6) != "_total") {
            detail::bad_metric("counter \"" + std::string(name) + "\" must end in _total");
        }
        return std::get<counter>(*series(name, help, metric_type::counter, labels, {}).value);
    }

    /// The gauge of series (`name`, `labels`), created on first use.
    gauge& add_gauge(std::string_view name, std::string_view help, const metric_labels& labels = {}) {
        return std::get<gauge>(*series(name, help, metric_type::gauge, labels, {}).value);
    }

    /// `upper_bounds` must be finite and strictly increasing; +Inf is implicit. Every series of
    /// one histogram name has the same bounds.
    histogram& add_histogram(std::string_view name, std::string_view help, std::vector<double> upper_bounds,
                             const metric_labels& labels = {}) {
        if (upper_bounds.empty()) detail::bad_metric("histogram \"" + std::string(name) + "\" needs buckets");
        for (std::size_t i = 0; i < upper_bounds.size(); ++i) {
            if (!std::isfinite(upper_bounds[i]) || (i > 0 && !(upper_bounds[i] > upper_bounds[i - 1]))) {
                detail::bad_metric("histogram \"" + std::string(name) +
                                   "\": bucket bounds must be finite and strictly increasing");
            }
        }
        for (const auto& [k, v] : labels) {
            if (k == "le") detail::bad_metric("histogram \"" + std::string(name) + "\": label \"le\" is reserved");
        }
        return std::get<histogram>(*series(name, help, metric_type::histogram, labels, std::move(upper_bounds)).value);
    }

    /// Registers a function called by render() to report values kept elsewhere. Returns an id
    /// for remove_collector(); a collector must be removed before what it reads goes away.
    std::uint64_t add_collector(std::function<void(metric_writer&)> fn) {
        std::lock_guard lk(mu_);
        collectors_.emplace(++next_collector_, std::move(fn));
        return next_collector_;
    }
    /// After return, the collector `id` is not called again.
    void remove_collector(std::uint64_t id) {
        std::lock_guard lk(mu_);
        collectors_.erase(id);
    }

    /// The Prometheus text exposition format (0.0.4), families sorted by name.
    std::string render() const {
        std::lock_guard lk(mu_);
        metric_writer w;
        for (const auto& [id, fn] : collectors_)
            fn(w);
        std::string out;
        auto fi = families_.begin();
        auto ci = w.families_.begin();
        // Merge the two sorted maps: output ordered by name, each family once. A collector
        // reporting a registered metric's name is a programming error.
        while (fi != families_.end() || ci != w.families_.end()) {
            if (ci == w.families_.end() || (fi != families_.end() && fi->first < ci->first)) {
                render_family(out, fi->first, fi->second);
                ++fi;
            } else if (fi == families_.end() || ci->first < fi->first) {
                render_collected(out, ci->first, ci->second);
                ++ci;
            } else {
                detail::bad_metric("collector reports \"" + ci->first + "\", which is also a registered metric");
            }
        }
        return out;
    }

    /// Content type of render()'s output, for HTTP.
    static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

private:
    using value_type = std::variant<counter, gauge, histogram>;
    struct series_t {
        metric_labels labels;
        std::unique_ptr<value_type> value;
    };
    struct family_t {
        std::string help;
        metric_type type;
        std::vector<std::string> label_names;
        std::vector<double> bounds;
        std::deque<series_t> series;
    };

    static const char* type_name(metric_type t) {
        switch (t) {
        case metric_type::counter: return "counter";
        case metric_type::gauge: return "gauge";
        case metric_type::histogram: return "histogram";
        }
        return "untyped";
    }

    series_t& series(std::string_view name, std::string_view help, metric_type type, const metric_labels& labels,
                     std::vector<double> bounds) {
        if (!detail::valid_metric_name(name)) detail::bad_metric("invalid metric name \"" + std::string(name) + "\"");
        std::vector<std::string> names;
        for (const auto& [k, v] : labels) {
            if (!detail::valid_label_name(k)) {
                detail::bad_metric("invalid label name \"" + k + "\" on \"" + std::string(name) + "\"");
            }
            if (std::find(names.begin(), names.end(), k) != names.end()) {
                detail::bad_metric("label \"" + k + "\" given twice on \"" + std::string(name) + "\"");
            }
            names.push_back(k);
        }
        std::lock_guard lk(mu_);
        auto it = families_.find(name);
        if (it == families_.end()) {
            it = families_.emplace(std::string(name), family_t{std::string(help), type, names, bounds, {}}).first;
        } else {
            const auto& f = it->second;
            if (f.type != type || f.help != help || f.label_names != names || f.bounds != bounds) {
                detail::bad_metric("\"" + std::string(name) + "\" is already registered as a " + type_name(f.type) +
                                   " with other help, label names or buckets");
            }
        }
        for (auto& s : it->second.series) {
            if (s.labels == labels) return s;
        }
        auto value = type == metric_type::histogram
                         ? std::make_unique<value_type>(std::in_place_type<histogram>, bounds)
                     : type == metric_type::gauge ? std::make_unique<value_type>(std::in_place_type<gauge>)
                                                  : std::make_unique<value_type>(std::in_place_type<counter>);
        return it->second.series.emplace_back(series_t{labels, std::move(value)});
    }

    static void header(std::string& out, const std::string& name, const std::string& help, metric_type t) {
        out += "# HELP ";
        out += name;
        out += ' ';
        detail::append_escaped(out, help, false);
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += type_name(t);
        out += '\n';
    }

    static void render_family(std::string& out, const std::string& name, const family_t& f) {
        header(out, name, f.help, f.type);
        for (const auto& s : f.series) {
            if (const auto* c = std::get_if<counter>(s.value.get())) {
                out += name;
                detail::append_labels(out, s.labels);
                out += ' ';
                detail::append_number(out, c->value());
                out += '\n';
            } else if (const auto* g = std::get_if<gauge>(s.value.get())) {
                out += name;
                detail::append_labels(out, s.labels);
                out += ' ';
                detail::append_number(out, g->value());
                out += '\n';
            } else if (const auto* h = std::get_if<histogram>(s.value.get())) {
                // Read the buckets once so _count equals the +Inf bucket even while observe() runs.
                std::uint64_t cumulative = 0;
                const auto& b = h->upper_bounds();
                for (std::size_t i = 0; i <= b.size(); ++i) {
                    cumulative += h->bucket_count(i);
                    std::string le;
                    if (i < b.size()) {
                        detail::append_number(le, b[i]);
                    } else {
                        le = "+Inf";
                    }
                    out += name;
                    out += "_bucket";
                    detail::append_labels(out, s.labels, le);
                    out += ' ';
                    detail::append_number(out, cumulative);
                    out += '\n';
                }
                out += name;
                out += "_sum";
                detail::append_labels(out, s.labels);
                out += ' ';
                detail::append_number(out, h->sum());
                out += '\n';
                out += name;
                out += "_count";
                detail::append_labels(out, s.labels);
                out += ' ';
                detail::append_number(out, cumulative);
                out += '\n';
            }
        }
    }

    static void render_collected(std::string& out, const std::string& name, const metric_writer::family& f) {
        header(out, name, f.help, f.type);
        for (const auto& s : f.samples) {
            out += name;
            detail::append_labels(out, s.labels);
            out += ' ';
            if (s.integral) {
                detail::append_number(out, s.ivalue);
            } else {
                detail::append_number(out, s.value);
            }
            out += '\n';
        }
    }

    mutable std::mutex mu_;
    std::map<std::string, family_t, std::less<>> families_;
    std::map<std::uint64_t, std::function<void(metric_writer&)>> collectors_;
    std::uint64_t next_collector_ = 0;
};

inline void metric_writer::add(std::string_view name, std::string_view help, metric_type type,
                               const metric_labels& labels, double v, bool integral, std::uint64_t iv) {
    if (!detail::valid_metric_name(name)) detail::bad_metric("invalid metric name \"" + std::string(name) + "\"");
    if (type == metric_type::counter && (name.size() < 6 || name.substr(name.size() - 6) != "_total")) {
        detail::bad_metric("counter \"" + std::string(name) + "\" must end in _total");
    }
    for (const auto& [k, val] : labels) {
        if (!detail::valid_label_name(k)) detail::bad_metric("invalid label name \"" + k + "\"");
    }
    auto it = families_.find(name);
    if (it == families_.end()) {
        it = families_.emplace(std::string(name), family{std::string(help), type, {}}).first;
    } else if (it->second.type != type || it->second.help != help) {
        detail::bad_metric("collector reports \"" + std::string(name) + "\" with two types or help texts");
    }
    for (const auto& s : it->second.samples) {
        if (s.labels == labels)
            detail::bad_metric("collector reports one series of \"" + std::string(name) + "\" twice");
    }
    it->second.samples.push_back({labels, v, integral, iv});
}

/// The process-wide registry the library's components report into unless given another.
inline metrics_registry& default_metrics() {
    static metrics_registry r;
    return r;
}

} // namespace quorumreg
