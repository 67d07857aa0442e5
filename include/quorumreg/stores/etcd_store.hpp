// quorumreg — etcd v3 backend of the quorum store, through etcd's HTTP/JSON gateway.
//
// Opt-in: link quorumreg::etcd (Boost.JSON, OpenSSL::SSL); the core headers never include Beast.
//
// How it maps the quorum_store contract onto etcd (reference: docs/etcd_store.md):
// - Every call is a POST to the member's /v3/... gateway over a pooled keep-alive connection,
//   under one deadline for the whole call (default 5 s, etcd_store_options::deadline).
// - Failover: a request that could not have been applied (connection refused/reset before
//   sending, "etcdserver: no leader", a stale pooled connection) is retried on the next member
//   until the deadline. Reads are retried on any failure. A write that was sent and then timed
//   out or got an ambiguous 503 is reported as errc::unknown_outcome and never retried (etcd
//   was seen committing such writes once quorum returned).
// - Every request carries gRPC metadata hasleader=true, so a member that lost its leader
//   refuses at once (a definite "not applied") instead of queueing the proposal.
// - Values over etcd's request limit are stored in chunks behind a manifest (see
//   detail/etcd_codec.hpp); reads, ranges and watches reassemble them and hide the chunk keys.
#pragma once

#include <quorumreg/detail/config.hpp>
#include <quorumreg/detail/etcd_codec.hpp>
#include <quorumreg/detail/etcd_http.hpp>
#include <quorumreg/detail/etcd_watch_guard.hpp>
#include <quorumreg/detail/watch_hub.hpp>
#include <quorumreg/error.hpp>
#include <quorumreg/quorum_store.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace quorumreg {

/// TLS settings of the etcd client (used for https:// endpoints).
struct etcd_tls_options {
    std::string ca_file;   ///< PEM CA bundle to verify members with (empty: system default paths)
    std::string cert_file; ///< client certificate (PEM), for clusters that require client auth
    std::string key_file;  ///< its private key (PEM)
    bool verify = true;    ///< verify the member's certificate chain and host name
};

/// Configuration of an etcd_store.
struct etcd_store_options {
    /// Client URLs of the members ("http://host:port" or "https://host:port"); requests fail
    /// over between them in order.
    std::vector<std::string> endpoints{"http://127.0.0.1:2379"};
    /// Deadline of each operation, all retries and chunks included.
    std::chrono::milliseconds deadline{5000};
    etcd_tls_options tls; ///< TLS to the members (https:// endpoints)
    /// etcd user name and password (empty: authentication off). The token is fetched from
    /// /v3/auth/authenticate and refreshed when etcd reports it invalid.
    std::string username; ///< see above
    std::string password; ///< see above
    /// Idle keep-alive connections kept per member.
    std::size_t pool_size = 8;
    /// Values larger than this are stored in chunks (etcd rejects requests of 1.5 MiB or more).
    std::size_t inline_limit = 1024 * 1024;
    /// Size of one chunk.
    std::size_t chunk_size = 1024 * 1024;
    /// Largest value accepted at all (errc::value_too_large above it).
    std::size_t max_value_size = std::size_t(512) * 1024 * 1024;
    /// Key and inline value bytes allowed in one transaction request (compares and both branches
    /// together, as etcd counts them) before its largest values are chunked and its largest
    /// value compares are evaluated by reading the key and pinning its mod_revision.
    std::size_t txn_budget = 1024 * 1024;
    /// Key prefix reserved for chunks; hidden from range, list and watch.
    std::string chunk_prefix = std::string("\xff\xffquorumreg-chunks/");
    /// A watch stream with no byte (no event, no progress notification) for this long has its
    /// member probed (GET /health, at most watch_probe_timeout); if the probe fails the stream
    /// is dead and the watch resumes on the next member. A silent member is therefore left
    /// within watch_silence_timeout + watch_probe_timeout (default 4 s).
    std::chrono::milliseconds watch_silence_timeout{3000};
    std::chrono::milliseconds watch_probe_timeout{1000}; ///< see watch_silence_timeout
};
/// The old name, kept for one release (option structs are named after their class).
using etcd_options [[deprecated("renamed etcd_store_options")]] = etcd_store_options;

namespace detail::etcd {

/// What kind of request is being made: decides which failures may be retried.
enum class call_kind {
    read,        ///< no effect: retry anywhere on any failure
    idempotent,  ///< repeating it is harmless (chunk puts, lease keep-alive/revoke)
    conditional, ///< a write guarded by compares: like write, but repeated after a token renewal
    write        ///< may not be repeated once it may have been applied
};

inline bool is_write(call_kind k) { return k == call_kind::write || k == call_kind::conditional; }

/// etcd refused the request because of its token: "invalid auth token" (expired, code 16) or
/// "revision of authentication store is old" (the auth store changed, code 3). Both are
/// refusals before anything is applied.
inline bool token_refused(std::int64_t code, std::string_view msg) {
    return code == 16 || msg.find("invalid auth token") != std::string_view::npos ||
           msg.find("revision of authentication store is old") != std::string_view::npos;
}

struct call_result {
    std::error_code ec;
    json::object body;
};

/// Shared state of a store and its watch threads (which may outlive the store object).
class core : public std::enable_shared_from_this<core> {
public:
    explicit core(etcd_store_options o) : opts(std::move(o)) {}

    etcd_store_options opts;
    std::vector<endpoint> endpoints;
    std::shared_ptr<ssl::context> tls;
    std::atomic<std::int64_t> deadline_ms{5000};
    std::atomic<std::size_t> preferred{0};
    std::atomic<std::uint64_t> watch_reconnects{0};

    std::error_code init(std::string& detail) {
        if (opts.endpoints.empty()) {
            detail = "no endpoints";
            return errc::invalid_argument;
        }
        bool any_tls = false;
        for (auto& u : opts.endpoints) {
            auto e = parse_endpoint(u);
            if (!e) {
                detail = "bad endpoint URL \"" + u + "\" (want http://host:port or https://host:port)";
                return errc::invalid_argument;
            }
            any_tls = any_tls || e->tls;
            endpoints.push_back(std::move(*e));
        }
        if (opts.chunk_size == 0 || opts.chunk_prefix.empty() || opts.deadline.count() <= 0) {
            detail = "chunk_size, chunk_prefix and deadline must be set";
            return errc::invalid_argument;
        }
        deadline_ms = opts.deadline.count();
        if (any_tls) {
            tls = make_tls_context(opts.tls.ca_file, opts.tls.cert_file, opts.tls.key_file, opts.tls.verify, detail);
            if (!tls) return errc::invalid_argument;
        }
        return {};
    }

    std::chrono::milliseconds deadline() const { return std::chrono::milliseconds(deadline_ms.load()); }

    // ---- connection pool ------------------------------------------------------------------------
    std::unique_ptr<connection> acquire(std::size_t i) {
        {
            std::lock_guard lk(pool_mu_);
            auto& idle = pool_[i];
            while (!idle.empty()) {
                auto c = std::move(idle.back());
                idle.pop_back();
                if (c->reusable()) return c;
            }
        }
        return std::make_unique<connection>(endpoints[i], i, tls);
    }
    void release(std::unique_ptr<connection> c) {
        if (!c || !c->is_open()) return;
        std::lock_guard lk(pool_mu_);
        auto& idle = pool_[c->endpoint_index()];
        if (idle.size() < opts.pool_size) idle.push_back(std::move(c));
    }
    void drop_pool(std::size_t i) {
        std::lock_guard lk(pool_mu_);
        pool_[i].clear();
    }

    // ---- authentication -----------------------------------------------------------------------
    std::vector<std::pair<std::string, std::string>> headers() {
        std::vector<std::pair<std::string, std::string>> h{{"Grpc-Metadata-hasleader", "true"}};
        std::lock_guard lk(auth_mu_);
        if (!token_.empty()) h.emplace_back("Authorization", token_);
        return h;
    }
    bool auth_enabled() const { return !opts.username.empty(); }
    std::string token() {
        std::lock_guard lk(auth_mu_);
        return token_;
    }
    void set_token(std::string t) {
        std::lock_guard lk(auth_mu_);
        token_ = std::move(t);
    }

    /// POSTs `body` to `path` with failover, retries allowed by `kind`, and error mapping.
    call_result call(std::string_view path, const json::object& body, call_kind kind, clock::time_point end,
                     std::string& detail) {
        call_result out;
        if (auth_enabled() && token().empty() && path != "/v3/auth/authenticate") {
            out.ec = authenticate(end, detail);
            if (out.ec) return out;
        }
        std::string payload = json::serialize(body);
        const std::size_t n = endpoints.size();
        auto total = end - clock::now();
        auto reserve = std::min<clock::duration>(total / 4, std::chrono::milliseconds(500));
        auto attempt_end = end - reserve;
        enum class last_kind { none, unreachable, no_quorum, timeout } last = last_kind::none;
        std::size_t last_ep = preferred.load() % n;
        bool reauthed = false;
        auto backoff = std::chrono::milliseconds(25);
        while (clock::now() < attempt_end) {
            std::size_t start = preferred.load() % n;
            for (std::size_t k = 0; k < n && clock::now() < attempt_end; ++k) {
                std::size_t i = (start + k) % n;
                last_ep = i;
                auto conn = acquire(i);
                // A read gets half the remaining time on one member, so a frozen member does
                // not eat the whole deadline; a write is not retried after a timeout anyway.
                auto now = clock::now();
                auto step_end = attempt_end;
                if (!is_write(kind) && n > 1 && k + 1 < n)
                    step_end = now + std::max<clock::duration>((attempt_end - now) / 2, std::chrono::milliseconds(200));
                step_end = std::min(step_end, attempt_end);
                auto res = conn->exchange(method::post, path, payload, headers(), step_end);
                if (res.net) {
                    detail = endpoints[i].url + ": " + res.net.message();
                    if (res.reached == stage::sent && is_write(kind)) {
                        drop_pool(i);
                        if (i == preferred.load() % n) preferred = (i + 1) % n; // next call elsewhere
                        out.ec = errc::unknown_outcome;
                        detail += " (the write was sent; it may still be applied)";
                        return out;
                    }
                    last = res.timed_out() ? last_kind::timeout : last_kind::unreachable;
                    drop_pool(i);
                    if (i == preferred.load() % n) preferred = (i + 1) % n;
                    continue;
                }
                release(std::move(conn));
                boost::system::error_code jec;
                auto parsed = json::parse(res.body, jec);
                if (res.status == 200 && !jec && parsed.is_object()) {
                    preferred = i;
                    out.body = std::move(parsed.get_object());
                    return out;
                }
                std::int64_t code = 0;
                std::string msg;
                if (!jec && parsed.is_object()) {
                    code = get_i64(parsed.get_object(), "code");
                    msg = get_str(parsed.get_object(), "message");
                    if (msg.empty()) msg = get_str(parsed.get_object(), "error");
                } else {
                    msg = res.body.substr(0, 200);
                }
                detail = endpoints[i].url + ": HTTP " + std::to_string(res.status) + ", gRPC code " +
                         std::to_string(code) + ": " + msg;
                if (token_refused(code, msg) && auth_enabled() && !reauthed) { // refused: not applied
                    reauthed = true;
                    set_token({});
                    auto refused = detail;
                    out.ec = authenticate(end, detail);
                    if (out.ec) return out;
                    if (kind == call_kind::write) {
                        // Not repeated behind the caller's back: the caller decides (it was not
                        // applied, etcd refused it before applying anything).
                        out.ec = errc::unauthenticated;
                        detail = refused + " (token renewed; the write was not applied: repeat it if still wanted)";
                        return out;
                    }
                    --k;
                    continue;
                }
                bool no_leader = msg.find("no leader") != std::string::npos ||
                                 msg.find("not capable") != std::string::npos ||
                                 msg.find("not supported for learner") != std::string::npos;
                bool unavailable = code == 14 || res.status == 503 || code == 2 || code == 4 ||
                                   msg.find("timed out") != std::string::npos ||
                                   msg.find("leader changed") != std::string::npos;
                if (no_leader) { // refused before proposing: safe to try elsewhere
                    last = last_kind::no_quorum;
                    continue;
                }
                if (unavailable) {
                    if (is_write(kind)) {
                        out.ec = errc::unknown_outcome;
                        return out;
                    }
                    last = last_kind::no_quorum;
                    continue;
                }
                out.ec = map_code(code, msg, res.status);
                return out;
            }
            auto now = clock::now();
            if (now >= attempt_end) break;
            std::this_thread::sleep_for(std::min<clock::duration>(backoff, attempt_end - now));
            backoff = std::min(backoff * 2, std::chrono::milliseconds(400));
        }
        // Out of time: say why as precisely as the cluster lets us.
        switch (last) {
        case last_kind::none:
            out.ec = errc::deadline_exceeded;
            if (detail.empty()) detail = "deadline too short to send the request";
            break;
        case last_kind::unreachable:
        case last_kind::no_quorum: out.ec = errc::quorum_unavailable; break;
        case last_kind::timeout: {
            // Did the member time out because it has no quorum? /health says so at once.
            auto h = health(last_ep, end);
            out.ec = h ? errc::deadline_exceeded : errc::quorum_unavailable;
            detail += h ? " (cluster healthy: slow answer)" : " (cluster reports no quorum)";
            break;
        }
        }
        return out;
    }

    /// GET /health of member i before `end`: true only if it answers {"health":"true"}.
    bool health(std::size_t i, clock::time_point end) {
        if (clock::now() + std::chrono::milliseconds(20) >= end) return false;
        connection c(endpoints[i], i, tls);
        auto r = c.exchange(method::get, "/health", {}, {}, end);
        if (r.net || r.status != 200) return false;
        return r.body.find("\"true\"") != std::string::npos;
    }

    static std::error_code map_code(std::int64_t code, const std::string& msg, unsigned status) {
        auto has = [&](const char* s) { return msg.find(s) != std::string::npos; };
        switch (code) {
        case 3:
            if (has("too large")) return errc::value_too_large;
            if (has("user name is empty") || has("invalid auth") || has("authentication store is old"))
                return errc::unauthenticated;
            return errc::invalid_argument;
        case 8: // resource exhausted: gRPC's own message size limit, or quota / rate limit
            if (has("larger than max")) return errc::value_too_large;
            return errc::quota_exceeded;
        case 5:
            if (has("lease")) return errc::lease_expired;
            return errc::not_found;
        case 6: return errc::already_exists;
        case 16: return errc::unauthenticated;
        case 7: return errc::permission_denied;
        case 11: return errc::watch_canceled;
        case 9:
            if (has("authentication failed") || has("invalid auth")) return errc::unauthenticated;
            return errc::backend_error;
        default: break;
        }
        if (status == 413) return errc::value_too_large;
        if (status == 429) return has("larger than max") ? errc::value_too_large : errc::quota_exceeded;
        if (status == 401) return errc::unauthenticated;
        if (status == 403) return errc::permission_denied;
        return errc::backend_error;
    }

    std::error_code authenticate(clock::time_point end, std::string& detail) {
        json::object b{{"name", opts.username}, {"password", opts.password}};
        auto r = call("/v3/auth/authenticate", b, call_kind::read, end, detail);
        if (r.ec) {
            if (r.ec == errc::invalid_argument || r.ec == errc::backend_error) return errc::unauthenticated;
            return r.ec;
        }
        auto t = get_str(r.body, "token");
        if (t.empty()) {
            detail = "etcd returned no token (authentication disabled on the cluster?)";
            return errc::unauthenticated;
        }
        set_token(std::move(t));
        return {};
    }

    // ---- chunk reassembly -----------------------------------------------------------------------

    /// Replaces a manifest value by the bytes it describes, reading chunks at `rev`.
    std::error_code resolve(key_value& kv, store_revision rev, clock::time_point end, std::string& detail) {
        if (!is_manifest(kv.value)) return {};
        auto m = parse_manifest(kv.value);
        if (!m) {
            detail = "malformed chunk manifest";
            return errc::corrupt_data;
        }
        std::string value;
        value.reserve(m->size);
        std::string start = chunk_key(opts.chunk_prefix, m->id, 0);
        std::string stop = prefix_end(opts.chunk_prefix + m->id + "/");
        std::uint64_t count = 0;
        while (count < m->chunks) {
            json::object b{{"key", base64_encode(start)}, {"range_end", base64_encode(stop)}, {"limit", 2}};
            if (rev > 0) b["revision"] = std::to_string(rev);
            auto r = call("/v3/kv/range", b, call_kind::read, end, detail);
            if (r.ec) return r.ec;
            auto kvs = get_arr(r.body, "kvs");
            if (!kvs || kvs->empty()) break;
            for (auto& v : *kvs) {
                if (!v.is_object()) continue;
                auto c = kv_from_json(v.get_object());
                if (c.key != chunk_key(opts.chunk_prefix, m->id, count)) {
                    detail = "chunk " + std::to_string(count) + " of " + m->id + " missing";
                    return errc::corrupt_data;
                }
                value += c.value;
                ++count;
                start = c.key + std::string(1, '\0');
            }
        }
        if (count != m->chunks || value.size() != m->size || sha256_hex(value) != m->sha256) {
            detail = "chunked value " + m->id + " incomplete or corrupt (" + std::to_string(count) + "/" +
                     std::to_string(m->chunks) + " chunks)";
            return errc::corrupt_data;
        }
        kv.value = std::move(value);
        return {};
    }

    /// Deletes the chunks of each chunk-set id (best effort: garbage is harmless, only space).
    void delete_chunks(const std::set<std::string>& ids, clock::time_point end) {
        if (ids.empty()) return;
        json::array ops;
        std::string detail;
        auto flush = [&] {
            if (ops.empty()) return;
            json::object b{{"success", std::move(ops)}};
            (void)call("/v3/kv/txn", b, call_kind::idempotent, end, detail);
            ops = json::array();
        };
        for (auto& id : ids) {
            std::string p = opts.chunk_prefix + id + "/";
            ops.push_back(
                json::object{{"request_delete_range",
                              json::object{{"key", base64_encode(p)}, {"range_end", base64_encode(prefix_end(p))}}}});
            if (ops.size() >= 100) flush();
        }
        flush();
    }

    bool is_chunk_key(std::string_view k) const { return k.starts_with(opts.chunk_prefix); }

private:
    std::mutex pool_mu_;
    std::map<std::size_t, std::vector<std::unique_ptr<connection>>> pool_;
    std::mutex auth_mu_;
    std::string token_;
};

/// One watch: a dedicated thread that streams /v3/watch, reconnects to the next member on any
/// failure and resumes from the revision after the last one delivered.
class watcher final : public subscription_state_base, public hub_base, public std::enable_shared_from_this<watcher> {
public:
    /// `set_detail` records the reason of a final error where the handler can read it
    /// (etcd_store::error_detail() on the watch thread).
    watcher(std::shared_ptr<core> c, std::string prefix, store_revision next, watch_handler h,
            std::function<void(std::string)> set_detail)
        : core_(std::move(c)), prefix_(std::move(prefix)), guard_(next), handler_(std::move(h)),
          set_detail_(std::move(set_detail)) {}

    ~watcher() override { stop_thread(); }

    void start() {
        thread_ = std::thread([self = shared_from_this()] { self->run(); });
    }

    void remove(const subscription_state_base*) noexcept override { stop_thread(); }

private:
    void stop_thread() noexcept {
        stop_ = true;
        if (!thread_.joinable()) return;
        if (thread_.get_id() == std::this_thread::get_id())
            thread_.detach(); // reset() from inside the callback: the thread ends on its own
        else
            thread_.join();
    }

    /// Runs the handler unless the subscription was cancelled (the watch_hub contract).
    bool deliver(const std::vector<watch_event>& evs, std::error_code ec, std::string detail = {}) {
        if (set_detail_) set_detail_(std::move(detail));
        {
            std::lock_guard lk(mu);
            if (!active) return false;
            running = std::this_thread::get_id();
        }
        try {
            handler_(evs, ec);
        } catch (...) {
            // a throwing handler is the subscriber's bug; the watch goes on
        }
        {
            std::lock_guard lk(mu);
            running = std::thread::id{};
        }
        idle.notify_all();
        return true;
    }

    void sleep_interruptible(std::chrono::milliseconds d) {
        auto end = clock::now() + d;
        while (!stop_ && clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }

    void run() {
        const std::size_t n = core_->endpoints.size();
        std::size_t ep = core_->preferred.load() % n;
        auto backoff = std::chrono::milliseconds(50);
        std::string end_key = prefix_end(prefix_);
        while (!stop_) {
            bool finished = false;
            // Progress notifications keep a quiet stream talking on clusters that send them
            // (--experimental-watch-progress-notify-interval, 10 min by default).
            json::object create{{"key", base64_encode(prefix_)},
                                {"range_end", base64_encode(end_key)},
                                {"start_revision", std::to_string(guard_.next())},
                                {"progress_notify", true}};
            json::object body{{"create_request", std::move(create)}};
            if (core_->auth_enabled() && core_->token().empty()) {
                std::string d;
                (void)core_->authenticate(clock::now() + core_->deadline(), d);
            }
            connection conn(core_->endpoints[ep], ep, core_->tls);
            bool got_data = false;
            auto on_line = [&](std::string_view line) -> bool {
                boost::system::error_code jec;
                auto v = json::parse(line, jec);
                if (jec || !v.is_object()) return false;
                auto& o = v.get_object();
                auto res = get_obj(o, "result");
                if (!res) { // {"error": {...}}: stream-level failure; reconnect elsewhere
                    if (auto e = get_obj(o, "error"); e && token_refused(get_i64(*e, "code"), get_str(*e, "message")))
                        core_->set_token({});
                    return false;
                }
                got_data = true;
                if (get_bool(*res, "canceled")) {
                    auto compact = get_i64(*res, "compact_revision");
                    if (compact > 0) {
                        finished = true;
                        std::string d;
                        auto ec = guard_.compacted(compact, d);
                        deliver({}, ec, core_->endpoints[ep].url + ": " + d);
                        return false;
                    }
                    auto reason = get_str(*res, "cancel_reason");
                    if (reason.find("permission denied") != std::string::npos) { // will not heal
                        finished = true;
                        deliver({}, make_error_code(errc::permission_denied), reason);
                    }
                    return false; // canceled for another reason (no leader...): resume elsewhere
                }
                auto evs = get_arr(*res, "events");
                if (!evs) return !stop_;
                std::vector<watch_event> all;
                for (auto& e : *evs) {
                    if (!e.is_object()) continue;
                    auto kvo = get_obj(e.get_object(), "kv");
                    if (!kvo) continue;
                    watch_event we;
                    we.kv = kv_from_json(*kvo);
                    we.revision = we.kv.mod_revision;
                    we.what =
                        get_str(e.get_object(), "type") == "DELETE" ? watch_event::kind::erase : watch_event::kind::put;
                    all.push_back(std::move(we));
                }
                // Every event, chunk keys included, passes the guard: a repeat or a step back
                // is reported, never dropped.
                std::string gd;
                if (auto gec = guard_.check(all, gd)) {
                    finished = true;
                    deliver({}, gec, core_->endpoints[ep].url + ": " + gd);
                    return false;
                }
                std::vector<watch_event> batch;
                for (auto& we : all) {
                    if (core_->is_chunk_key(we.kv.key)) continue;
                    if (we.what == watch_event::kind::put && is_manifest(we.kv.value)) {
                        std::string d;
                        auto ec = core_->resolve(we.kv, we.revision, clock::now() + core_->deadline(), d);
                        if (ec) {
                            finished = true;
                            deliver({}, ec, d);
                            return false;
                        }
                    }
                    batch.push_back(std::move(we));
                }
                if (!batch.empty() && !deliver(batch, {})) {
                    finished = true;
                    return false;
                }
                return !stop_;
            };
            // A silent stream: is its member still there? A member cut off (or frozen) does not
            // answer /health either; one that answers keeps the stream.
            auto member_alive = [&] { return core_->health(ep, clock::now() + core_->opts.watch_probe_timeout); };
            auto res = conn.stream(
                "/v3/watch", json::serialize(body), core_->headers(), clock::now() + core_->deadline(), on_line,
                [this] { return stop_.load(); }, core_->opts.watch_silence_timeout, member_alive);
            if (finished || stop_) break;
            if (res.status != 0 && res.status != 200) {
                // A definite refusal (bad auth, bad request) will not heal by retrying.
                boost::system::error_code jec;
                auto v = json::parse(res.body, jec);
                std::int64_t code = (!jec && v.is_object()) ? get_i64(v.get_object(), "code") : 0;
                auto msg = get_str(v.is_object() ? v.get_object() : json::object{}, "message");
                if (token_refused(code, msg) && core_->auth_enabled()) {
                    core_->set_token({});
                } else if (code == 3 || code == 7 || code == 16) {
                    deliver({}, core::map_code(code, msg, res.status), msg);
                    break;
                }
            }
            ++core_->watch_reconnects;
            if (got_data) backoff = std::chrono::milliseconds(50);
            ep = (ep + 1) % n;
            sleep_interruptible(backoff);
            backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
        }
    }

    std::shared_ptr<core> core_;
    std::string prefix_;
    watch_guard guard_; ///< the next revision to deliver, and the checks on what arrives
    watch_handler handler_;
    std::function<void(std::string)> set_detail_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

} // namespace detail::etcd

/// The etcd v3 quorum store (HTTP/JSON gateway, Boost.Beast + Boost.JSON).
///
/// @code
/// quorumreg::etcd_store_options o;
/// o.endpoints = {"http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"};
/// o.deadline = std::chrono::seconds(2);
/// quorumreg::etcd_store store(o);
/// auto rev = store.put("/cluster/owner", "node-a");
/// store.put_if("/cluster/owner", "node-b", rev);       // CAS on mod_revision
/// auto sub = store.watch("/cluster/", rev + 1, [](const auto& evs, std::error_code ec) { });
/// @endcode
class etcd_store final : public quorum_store {
public:
    /// Connects lazily; throws quorumreg::error(errc::invalid_argument) for a bad endpoint URL
    /// or unreadable TLS files.
    explicit etcd_store(etcd_store_options opts) : core_(std::make_shared<detail::etcd::core>(std::move(opts))) {
        std::string detail;
        if (auto ec = core_->init(detail)) throw error(ec, "etcd_store: " + detail);
    }

    /// Non-throwing factory: nullptr and `ec` set on bad options.
    static std::unique_ptr<etcd_store> open(etcd_store_options opts, std::error_code& ec) {
        try {
            ec.clear();
            return std::make_unique<etcd_store>(std::move(opts));
        } catch (const std::system_error& e) {
            ec = e.code();
            last_error_detail() = e.what();
            return nullptr;
        }
    }

    // Defined out of line: the destructor is the class's key function, so under
    // QUORUMREG_SEPARATE_COMPILATION the vtable, and every virtual member behind it, is emitted
    // only where <quorumreg/src.hpp> is compiled.
    ~etcd_store() override;
    etcd_store(const etcd_store&) = delete;
    etcd_store& operator=(const etcd_store&) = delete;

    /// The options the store was made with.
    const etcd_store_options& options() const noexcept { return core_->opts; }

    /// etcd's own text for the calling thread's last failure (what the throwing forms append).
    /// Inside a watch handler called with an error: why the watch ended (for watch_canceled
    /// after compaction it names the compact revision).
    static const std::string& error_detail() noexcept { return last_error_detail(); }

    /// How many times this store's watch streams were re-established after a failure (each
    /// resumed from the revision after the last one delivered). For monitoring and tests.
    std::uint64_t watch_reconnects() const noexcept { return core_->watch_reconnects.load(); }

    /// The key that holds the store's identity.
    static constexpr const char* identity_key = "quorumreg/identity";

    // ---- maintenance ------------------------------------------------------------------------------

    /// Deletes chunk sets no manifest refers to (left by a client that crashed between writing
    /// chunks and switching the manifest, or between the switch and deleting the old chunks).
    /// Chunk sets younger than `min_age` revisions behind the current one are kept, since a
    /// concurrent writer may be about to reference them. Returns the number of sets deleted.
    std::size_t collect_garbage(store_revision min_age, std::error_code& ec) {
        auto end = begin(ec);
        std::set<std::string> referenced;
        std::map<std::string, store_revision> sets; // id -> newest chunk mod_revision
        // Pass 1: every manifest in the user key space.
        std::string after;
        store_revision now_rev = 0;
        while (true) {
            auto page = raw_range("", after, 500, end, ec, false);
            if (ec) return 0;
            if (!now_rev) now_rev = page.revision;
            for (auto& kv : page.kvs)
                if (auto m = detail::etcd::parse_manifest(kv.value)) referenced.insert(m->id);
            if (!page.more || page.kvs.empty()) break;
            after = page.kvs.back().key;
        }
        // Pass 2: every chunk key.
        auto& cp = core_->opts.chunk_prefix;
        std::string start = cp;
        while (true) {
            boost::json::object b{{"key", b64(start)},
                                  {"range_end", b64(detail::etcd::prefix_end(cp))},
                                  {"keys_only", true},
                                  {"limit", 1000}};
            auto r = call("/v3/kv/range", b, call_kind::read, end, ec);
            if (ec) return 0;
            auto kvs = detail::etcd::get_arr(r, "kvs");
            if (!kvs || kvs->empty()) break;
            for (auto& v : *kvs) {
                if (!v.is_object()) continue;
                auto kv = detail::etcd::kv_from_json(v.get_object());
                if (!core_->is_chunk_key(kv.key)) continue; // not what was asked for: never index past it
                auto rest = std::string_view(kv.key).substr(cp.size());
                auto id = std::string(rest.substr(0, rest.find('/')));
                auto& newest = sets[id];
                newest = std::max(newest, kv.mod_revision);
                start = kv.key + std::string(1, '\0');
            }
            if (!detail::etcd::get_bool(r, "more")) break;
        }
        std::set<std::string> garbage;
        for (auto& [id, rev] : sets)
            if (!referenced.count(id) && rev + min_age <= now_rev) garbage.insert(id);
        core_->delete_chunks(garbage, end);
        return garbage.size();
    }
    /// Throwing form of collect_garbage().
    std::size_t collect_garbage(store_revision min_age = 1000) {
        return thrown("collect_garbage", "", [&](std::error_code& ec) { return collect_garbage(min_age, ec); });
    }

private:
    // ---- quorum_store hooks (reached through its public interface) ---------------------------

    /// "etcd:" followed by the endpoint URLs, comma-separated.
    std::string do_describe() const override {
        std::string s = "etcd:";
        for (std::size_t i = 0; i < core_->opts.endpoints.size(); ++i) {
            if (i) s += ",";
            s += core_->opts.endpoints[i];
        }
        return s;
    }

    /// The store's identity (a random id in identity_key). etcd has no "create the store"
    /// step of its own, so the first client that asks creates it (create-if-absent: concurrent
    /// first clients agree); a wiped or replaced cluster gets a new one.
    std::string do_identity(std::error_code& ec) override {
        auto kv = get(identity_key, ec);
        if (ec) return {};
        if (kv) return kv->value;
        create(identity_key, detail::random_store_identity(), 0, ec);
        if (ec && ec != errc::compare_failed) return {}; // compare_failed: another client was first
        kv = get(identity_key, ec);
        if (ec) return {};
        if (!kv) {
            ec = errc::not_found;
            return {};
        }
        return kv->value;
    }

    /// Deadline of each later operation (all retries and chunks included); at least 1 ms.
    void do_set_deadline(std::chrono::milliseconds d) override {
        core_->deadline_ms = std::max<std::int64_t>(d.count(), 1);
    }

    /// The current per-operation deadline.
    std::chrono::milliseconds do_deadline() const override { return core_->deadline(); }

    /// Linearizable read of one key; chunked values come back reassembled and verified.
    std::optional<key_value> do_get(std::string_view key, std::error_code& ec) override {
        auto end = begin(ec);
        if (key.empty()) return fail(ec, errc::invalid_argument, "empty key"), std::nullopt;
        if (core_->is_chunk_key(key)) return std::nullopt; // reserved namespace: invisible
        for (int attempt = 0; attempt < 3; ++attempt) {
            auto r = call("/v3/kv/range", {{"key", b64(key)}}, call_kind::read, end, ec);
            if (ec) return std::nullopt;
            auto kvs = detail::etcd::get_arr(r, "kvs");
            if (!kvs || kvs->empty() || !(*kvs)[0].is_object()) return std::nullopt;
            auto kv = detail::etcd::kv_from_json((*kvs)[0].get_object());
            ec = core_->resolve(kv, header_rev(r), end, last_error_detail());
            if (ec == errc::watch_canceled) { // compacted between the two reads: read again
                ec.clear();
                continue;
            }
            if (ec) return std::nullopt;
            return kv;
        }
        ec = errc::deadline_exceeded;
        return std::nullopt;
    }

    /// One page of keys under `prefix` at one revision; chunk keys never appear.
    range_result do_range(std::string_view prefix, std::string_view start_after, std::size_t limit,
                          std::error_code& ec) override {
        auto end = begin(ec);
        for (int attempt = 0; attempt < 3; ++attempt) {
            auto r = range_once(prefix, start_after, limit, end, ec);
            if (ec != errc::watch_canceled) return r; // compacted between page and chunks: again
            ec.clear();
        }
        ec = errc::deadline_exceeded;
        return {};
    }

    /// The cluster's current revision (a linearizable count-only range).
    store_revision do_revision(std::error_code& ec) override {
        auto end = begin(ec);
        auto r = call("/v3/kv/range", {{"key", b64(core_->opts.chunk_prefix)}, {"count_only", true}}, call_kind::read,
                      end, ec);
        return ec ? 0 : header_rev(r);
    }

    /// Unconditional put (/v3/kv/put, or chunks plus a manifest switch for large values).
    store_revision do_put(std::string_view key, std::string_view value, lease_id lease, std::error_code& ec) override {
        if (key.empty() || core_->is_chunk_key(key) || needs_chunks(value) ||
            value.size() > core_->opts.max_value_size) { // validation and chunking live in commit()
            store_txn t;
            t.on_success.push_back(store_op::put(std::string(key), std::string(value), lease));
            auto r = commit(t, ec);
            return ec ? 0 : r.revision;
        }
        // The common case as one plain /v3/kv/put (cheaper for etcd than a transaction).
        auto end = begin(ec);
        boost::json::object p{{"key", b64(key)}, {"value", b64(value)}, {"prev_kv", true}};
        if (lease) p["lease"] = std::to_string(lease);
        auto r = call("/v3/kv/put", p, call_kind::write, end, ec);
        if (ec) return 0;
        collect_replaced(detail::etcd::get_obj(r, "prev_kv"), nullptr, end);
        return header_rev(r);
    }

    /// Deletes one key (and the chunks of a chunked value).
    store_revision do_erase(std::string_view key, std::error_code& ec) override {
        if (key.empty() || core_->is_chunk_key(key)) {
            store_txn t;
            t.on_success.push_back(store_op::erase(std::string(key)));
            auto r = commit(t, ec);
            return ec ? 0 : r.revision;
        }
        auto end = begin(ec);
        auto r = call("/v3/kv/deleterange", {{"key", b64(key)}, {"prev_kv", true}}, call_kind::write, end, ec);
        if (ec) return 0;
        collect_replaced(nullptr, detail::etcd::get_arr(r, "prev_kvs"), end);
        return header_rev(r);
    }

    /// One etcd transaction; large values are chunked first and switched in by it.
    txn_result do_commit(const store_txn& txn, std::error_code& ec) override {
        auto end = begin(ec);
        txn_result out;
        // Validate first: bad input must leave the store untouched.
        for (auto* ops : {&txn.on_success, &txn.on_failure})
            for (auto& op : *ops) {
                if (op.what != store_op::kind::erase_prefix && op.key.empty())
                    return fail(ec, errc::invalid_argument, "empty key");
                if (op.what != store_op::kind::erase_prefix && core_->is_chunk_key(op.key))
                    return fail(ec, errc::invalid_argument, "key is in the reserved chunk namespace");
                if (op.what == store_op::kind::put && op.value.size() > core_->opts.max_value_size)
                    return fail(ec, errc::value_too_large,
                                std::to_string(op.value.size()) + " > " + std::to_string(core_->opts.max_value_size) +
                                    " bytes");
            }
        for (auto& c : txn.compares)
            if (c.key.empty()) return fail(ec, errc::invalid_argument, "empty key in compare");

        // Compares on values that are stored as manifests are evaluated by reading the key and
        // pinning its mod_revision (a value cannot be compared against chunks inside etcd).
        // Both branches and the compares travel in one request: the budget covers all of it.
        auto plan = plan_budget(txn);
        boost::json::array compares;
        for (std::size_t i = 0; i < txn.compares.size(); ++i) {
            auto cmp = compare_json(txn.compares[i], plan.pin[i], end, ec);
            if (ec) return {};
            compares.push_back(std::move(cmp));
        }

        // Large values: chunks first (idempotent puts to fresh keys), manifest in the txn.
        std::vector<std::string> chunked_success, chunked_failure; // chunk-set ids written
        boost::json::array success, failure;
        build_ops(txn.on_success, plan.chunk_success, success, chunked_success, end, ec);
        if (!ec) build_ops(txn.on_failure, plan.chunk_failure, failure, chunked_failure, end, ec);
        if (ec) {
            std::set<std::string> ids(chunked_success.begin(), chunked_success.end());
            ids.insert(chunked_failure.begin(), chunked_failure.end());
            core_->delete_chunks(ids, clock::now() + std::chrono::milliseconds(500));
            if (ec == errc::unknown_outcome) ec = errc::quorum_unavailable; // only chunks were sent
            return {};
        }

        boost::json::object body{
            {"compare", std::move(compares)}, {"success", std::move(success)}, {"failure", std::move(failure)}};
        auto r = call("/v3/kv/txn", body, txn.compares.empty() ? call_kind::write : call_kind::conditional, end, ec);
        if (ec) {
            if (ec != errc::unknown_outcome) {
                std::set<std::string> ids(chunked_success.begin(), chunked_success.end());
                ids.insert(chunked_failure.begin(), chunked_failure.end());
                core_->delete_chunks(ids, clock::now() + std::chrono::milliseconds(500));
            }
            return {};
        }
        out.succeeded = detail::etcd::get_bool(r, "succeeded");
        out.revision = header_rev(r);

        // Garbage: chunks of values this txn replaced or deleted, and of the branch not taken.
        std::set<std::string> garbage;
        for (auto& id : out.succeeded ? chunked_failure : chunked_success)
            garbage.insert(id);
        if (auto resps = detail::etcd::get_arr(r, "responses"))
            for (auto& rv : *resps) {
                if (!rv.is_object()) continue;
                auto collect = [&](const boost::json::object& kvo) {
                    auto v = detail::etcd::get_b64(kvo, "value");
                    if (auto m = detail::etcd::parse_manifest(v)) garbage.insert(m->id);
                };
                if (auto p = detail::etcd::get_obj(rv.get_object(), "response_put"))
                    if (auto prev = detail::etcd::get_obj(*p, "prev_kv")) collect(*prev);
                if (auto d = detail::etcd::get_obj(rv.get_object(), "response_delete_range"))
                    if (auto prevs = detail::etcd::get_arr(*d, "prev_kvs"))
                        for (auto& pv : *prevs)
                            if (pv.is_object()) collect(pv.get_object());
            }
        core_->delete_chunks(garbage, std::max(end, clock::now() + std::chrono::milliseconds(500)));
        return out;
    }

    /// Streams /v3/watch on a dedicated thread that fails over between members and resumes
    /// after the last delivered revision.
    [[nodiscard]] subscription do_watch(std::string_view prefix, store_revision from_revision, watch_handler handler,
                                        std::error_code& ec) override {
        (void)begin(ec);
        if (!handler) {
            fail(ec, errc::invalid_argument, "empty watch handler");
            return {};
        }
        if (from_revision <= 0) { // "from now": pin it, so a reconnect cannot skip the gap
            // Read under the watched prefix itself: a user allowed to watch it may read it.
            auto end = clock::now() + core_->deadline();
            std::string lo = prefix.empty() ? std::string(1, '\0') : std::string(prefix);
            auto r =
                call("/v3/kv/range",
                     {{"key", b64(lo)}, {"range_end", b64(detail::etcd::prefix_end(prefix))}, {"count_only", true}},
                     call_kind::read, end, ec);
            if (ec) return {};
            from_revision = header_rev(r) + 1;
        }
        auto w = std::make_shared<detail::etcd::watcher>(core_, std::string(prefix), from_revision, std::move(handler),
                                                         [](std::string d) { last_error_detail() = std::move(d); });
        w->start();
        return subscription(w, std::weak_ptr<detail::hub_base>(w));
    }

    /// Grants a lease of `ttl` rounded up to whole seconds (etcd may raise it to its minimum).
    lease_id do_grant_lease(std::chrono::milliseconds ttl, std::error_code& ec) override {
        auto end = begin(ec);
        if (ttl.count() <= 0) return fail(ec, errc::invalid_argument, "lease TTL must be positive"), 0;
        auto secs = (ttl.count() + 999) / 1000;
        // The ID is chosen here, so an ambiguous grant can be resolved by looking the lease up
        // (and retried under the same ID) instead of leaking a lease nobody knows.
        lease_id id = 0;
        while (id <= 0)
            id = static_cast<lease_id>(std::stoull(detail::etcd::random_id().substr(0, 15), nullptr, 16));
        boost::json::object req{{"TTL", std::to_string(secs)}, {"ID", std::to_string(id)}};
        for (int attempt = 0; attempt < 2; ++attempt) {
            auto r = call("/v3/lease/grant", req, call_kind::write, end, ec);
            if (!ec) {
                if (auto e = detail::etcd::get_str(r, "error"); !e.empty()) return fail(ec, errc::backend_error, e), 0;
                return detail::etcd::get_i64(r, "ID");
            }
            if (attempt > 0 && last_error_detail().find("lease already exists") != std::string::npos) {
                ec.clear(); // our own earlier attempt landed
                return id;
            }
            if (ec != errc::unknown_outcome) return 0;
            std::error_code rec;
            auto saved = last_error_detail();
            auto q = call("/v3/lease/timetolive", {{"ID", std::to_string(id)}}, call_kind::read, end, rec);
            if (rec) { // cannot tell: still unknown
                last_error_detail() = saved;
                return 0;
            }
            if (detail::etcd::get_i64(q, "TTL") > 0) {
                ec.clear();
                return id;
            }
        }
        return 0;
    }

    /// One keep-alive round trip on /v3/lease/keepalive; errc::lease_expired if it is gone.
    void do_keep_alive(lease_id lease, std::error_code& ec) override {
        auto end = begin(ec);
        const std::size_t n = core_->endpoints.size();
        boost::json::object body{{"ID", std::to_string(lease)}};
        std::string payload = boost::json::serialize(body);
        auto backoff = std::chrono::milliseconds(25);
        std::error_code last = errc::quorum_unavailable;
        while (clock::now() < end) {
            std::size_t i = core_->preferred.load() % n;
            detail::etcd::connection c(core_->endpoints[i], i, core_->tls);
            std::optional<boost::json::object> first;
            auto res = c.stream(
                "/v3/lease/keepalive", payload, core_->headers(), end,
                [&](std::string_view line) {
                    boost::system::error_code jec;
                    auto v = boost::json::parse(line, jec);
                    if (!jec && v.is_object()) first = v.get_object();
                    return false;
                },
                {}, // silence until the deadline ends it (a blackholed member never answers)
                std::max(std::chrono::milliseconds(1),
                         std::chrono::duration_cast<std::chrono::milliseconds>(end - clock::now())));
            if (first) {
                if (auto rr = detail::etcd::get_obj(*first, "result")) {
                    if (detail::etcd::get_i64(*rr, "TTL") <= 0)
                        return (void)fail(ec, errc::lease_expired, "lease " + std::to_string(lease) + " not found");
                    core_->preferred = i;
                    return;
                }
                if (auto e = detail::etcd::get_obj(*first, "error")) {
                    auto code = detail::etcd::get_i64(*e, "code");
                    auto msg = detail::etcd::get_str(*e, "message");
                    last_error_detail() = core_->endpoints[i].url + ": " + msg;
                    if (code != 14 && code != 2 && code != 4 && msg.find("leader") == std::string::npos) {
                        ec = detail::etcd::core::map_code(code, msg, 200);
                        return;
                    }
                }
            } else if (res.net) {
                last_error_detail() = core_->endpoints[i].url + ": " + res.net.message();
                if (res.timed_out()) last = errc::deadline_exceeded;
            } else if (res.status != 200) {
                boost::system::error_code jec;
                auto v = boost::json::parse(res.body, jec);
                if (!jec && v.is_object()) {
                    auto code = detail::etcd::get_i64(v.get_object(), "code");
                    auto msg = detail::etcd::get_str(v.get_object(), "message");
                    last_error_detail() = core_->endpoints[i].url + ": " + msg;
                    if (code == 5) return (void)(ec = errc::lease_expired);
                    if (code != 14 && res.status != 503)
                        return (void)(ec = detail::etcd::core::map_code(code, msg, res.status));
                }
            }
            core_->preferred = (i + 1) % n;
            auto now = clock::now();
            if (now >= end) break;
            std::this_thread::sleep_for(std::min<clock::duration>(backoff, end - now));
            backoff = std::min(backoff * 2, std::chrono::milliseconds(400));
        }
        ec = last == errc::deadline_exceeded &&
                     core_->health(core_->preferred.load() % n, clock::now() + std::chrono::milliseconds(300))
                 ? last
                 : make_error_code(errc::quorum_unavailable);
    }

    /// Revokes the lease and deletes its keys; an unknown lease is not an error.
    void do_revoke_lease(lease_id lease, std::error_code& ec) override {
        auto end = begin(ec);
        (void)call("/v3/lease/revoke", {{"ID", std::to_string(lease)}}, call_kind::idempotent, end, ec);
        if (ec == errc::lease_expired || ec == errc::not_found) ec.clear(); // unknown lease: fine
    }

    /// Remaining TTL (whole seconds, as etcd reports it); errc::lease_expired if it is gone.
    std::chrono::milliseconds do_lease_ttl(lease_id lease, std::error_code& ec) override {
        auto end = begin(ec);
        auto r = call("/v3/lease/timetolive", {{"ID", std::to_string(lease)}}, call_kind::read, end, ec);
        if (ec) return {};
        auto ttl = detail::etcd::get_i64(r, "TTL");
        if (ttl < 0 || (ttl == 0 && detail::etcd::get_i64(r, "grantedTTL") == 0))
            return fail(ec, errc::lease_expired, "lease " + std::to_string(lease) + " not found"),
                   std::chrono::milliseconds(0);
        return std::chrono::milliseconds(ttl * 1000);
    }

    // One range request per segment (see segments()), stopping at `limit` keys.
    range_result range_once(std::string_view prefix, std::string_view start_after, std::size_t limit,
                            detail::etcd::clock::time_point end, std::error_code& ec) {
        range_result out;
        std::string lo = start_after.empty() ? std::string(prefix) : std::string(start_after) + std::string(1, '\0');
        if (lo < prefix) lo = std::string(prefix);
        std::string hi = detail::etcd::prefix_end(prefix); // "\0" = to the end
        auto segs = segments(lo, hi);
        store_revision at = 0;
        for (std::size_t s = 0; s < segs.size(); ++s) {
            std::size_t need = limit ? limit - out.kvs.size() : 0;
            if (limit && need == 0) {
                // Full page: is there anything left in the remaining segments?
                for (std::size_t t = s; t < segs.size() && !out.more; ++t) {
                    boost::json::object b{
                        {"key", b64(segs[t].first)}, {"range_end", b64(segs[t].second)}, {"count_only", true}};
                    if (at) b["revision"] = std::to_string(at);
                    auto r = call("/v3/kv/range", b, call_kind::read, end, ec);
                    if (ec) return {};
                    out.more = detail::etcd::get_i64(r, "count") > 0;
                }
                break;
            }
            boost::json::object b{{"key", b64(segs[s].first)}, {"range_end", b64(segs[s].second)}};
            if (need) b["limit"] = need;
            if (at) b["revision"] = std::to_string(at);
            auto r = call("/v3/kv/range", b, call_kind::read, end, ec);
            if (ec) return {};
            if (!at) at = header_rev(r);
            if (take_kvs(r, out)) break;
        }
        for (auto& kv : out.kvs) {
            ec = core_->resolve(kv, at, end, last_error_detail());
            if (ec) return {};
        }
        out.revision = at;
        return out;
    }

    using call_kind = detail::etcd::call_kind;
    using clock = detail::etcd::clock;
    using json_object = boost::json::object;

    clock::time_point begin(std::error_code& ec) {
        ec.clear();
        last_error_detail().clear();
        return clock::now() + core_->deadline();
    }

    static std::string b64(std::string_view s) { return detail::etcd::base64_encode(s); }
    /// Appends a range response's keys to `out`; true (and out.more set) if etcd kept some back.
    static bool take_kvs(const json_object& r, range_result& out) {
        if (auto kvs = detail::etcd::get_arr(r, "kvs"))
            for (auto& v : *kvs)
                if (v.is_object()) out.kvs.push_back(detail::etcd::kv_from_json(v.get_object()));
        if (!detail::etcd::get_bool(r, "more")) return false;
        out.more = true;
        return true;
    }
    static store_revision header_rev(const json_object& r) {
        auto h = detail::etcd::get_obj(r, "header");
        return h ? detail::etcd::get_i64(*h, "revision") : 0;
    }

    static txn_result fail(std::error_code& ec, errc e, std::string detail) {
        ec = e;
        last_error_detail() = std::move(detail);
        return {};
    }

    json_object call(std::string_view path, const json_object& body, call_kind kind, clock::time_point end,
                     std::error_code& ec) {
        auto r = core_->call(path, body, kind, end, last_error_detail());
        ec = r.ec;
        return std::move(r.body);
    }

    /// [lo, hi) minus the chunk namespace, as up to two segments ("\0" as hi: to the end).
    std::vector<std::pair<std::string, std::string>> segments(std::string lo, const std::string& hi) const {
        if (lo.empty()) lo.assign(1, '\0'); // etcd has no empty key; "\0" is the smallest
        const std::string& c = core_->opts.chunk_prefix;
        std::string c_end = detail::etcd::prefix_end(c);
        bool to_end = hi == std::string(1, '\0');
        auto less_hi = [&](const std::string& k) { return to_end || k < hi; };
        std::vector<std::pair<std::string, std::string>> out;
        if (!less_hi(lo)) return out;
        // Part before the chunk namespace.
        if (lo < c) out.emplace_back(lo, (to_end || c < hi) ? c : hi);
        // Part after it.
        std::string after_lo = std::max(lo, c_end);
        if (less_hi(after_lo) && c_end != std::string(1, '\0')) out.emplace_back(after_lo, hi);
        return out;
    }

    /// A range with manifests left unresolved (garbage collection only).
    range_result raw_range(std::string_view prefix, std::string_view start_after, std::size_t limit,
                           clock::time_point end, std::error_code& ec, bool) {
        range_result out;
        std::string lo = start_after.empty() ? std::string(prefix) : std::string(start_after) + std::string(1, '\0');
        for (auto& [a, b] : segments(lo, detail::etcd::prefix_end(prefix))) {
            json_object q{{"key", b64(a)}, {"range_end", b64(b)}, {"limit", limit}};
            auto r = call("/v3/kv/range", q, call_kind::read, end, ec);
            if (ec) return {};
            if (!out.revision) out.revision = header_rev(r);
            if (take_kvs(r, out)) break;
        }
        return out;
    }

    /// Which values leave the request: puts to chunks, value compares to a pinned mod_revision.
    struct budget_plan {
        std::vector<bool> pin, chunk_success, chunk_failure;
    };

    /// Counts every key and inline value of the request (compares and both branches) and moves
    /// the largest values out until it fits txn_budget (etcd refuses requests of 1.5 MiB or more).
    budget_plan plan_budget(const store_txn& txn) const {
        budget_plan p{std::vector<bool>(txn.compares.size(), false), std::vector<bool>(txn.on_success.size(), false),
                      std::vector<bool>(txn.on_failure.size(), false)};
        struct candidate {
            std::size_t size;
            std::vector<bool>* flags;
            std::size_t index;
        };
        std::vector<candidate> movable;
        std::size_t total = 0;
        for (std::size_t i = 0; i < txn.compares.size(); ++i) {
            auto& c = txn.compares[i];
            total += c.key.size();
            if (c.what != key_compare::target::value_is) continue;
            if (needs_chunks(c.value))
                p.pin[i] = true;
            else {
                total += c.value.size();
                movable.push_back({c.value.size(), &p.pin, i});
            }
        }
        auto ops = [&](const std::vector<store_op>& v, std::vector<bool>& flags) {
            for (std::size_t i = 0; i < v.size(); ++i) {
                total += v[i].key.size();
                if (v[i].what != store_op::kind::put) continue;
                if (needs_chunks(v[i].value))
                    flags[i] = true;
                else {
                    total += v[i].value.size();
                    movable.push_back({v[i].value.size(), &flags, i});
                }
            }
        };
        ops(txn.on_success, p.chunk_success);
        ops(txn.on_failure, p.chunk_failure);
        std::stable_sort(movable.begin(), movable.end(), [](auto& a, auto& b) { return a.size > b.size; });
        for (auto& m : movable) {
            if (total <= core_->opts.txn_budget) break;
            (*m.flags)[m.index] = true;
            total -= m.size;
        }
        return p;
    }

    json_object compare_json(const key_compare& c, bool pin, clock::time_point end, std::error_code& ec) {
        json_object o{{"key", b64(c.key)}};
        switch (c.what) {
        case key_compare::target::exists:
            o["target"] = "CREATE";
            o["result"] = "GREATER";
            o["create_revision"] = "0";
            break;
        case key_compare::target::absent:
            o["target"] = "CREATE";
            o["result"] = "EQUAL";
            o["create_revision"] = "0";
            break;
        case key_compare::target::mod_revision_is:
            o["target"] = "MOD";
            o["result"] = "EQUAL";
            o["mod_revision"] = std::to_string(c.revision);
            break;
        case key_compare::target::create_revision_is:
            o["target"] = "CREATE";
            o["result"] = "EQUAL";
            o["create_revision"] = std::to_string(c.revision);
            break;
        case key_compare::target::value_is:
            if (!pin) {
                // An inline value can never equal a manifest, so etcd compares it directly.
                o["target"] = "VALUE";
                o["result"] = "EQUAL";
                o["value"] = b64(c.value);
            } else {
                auto kv = get(c.key, ec);
                if (ec) return {};
                o["target"] = "MOD";
                if (kv && kv->value == c.value) { // holds iff unchanged since we looked
                    o["result"] = "EQUAL";
                    o["mod_revision"] = std::to_string(kv->mod_revision);
                } else { // cannot hold: mod_revision is never negative
                    o["result"] = "LESS";
                    o["mod_revision"] = "0";
                }
                (void)end;
            }
            break;
        }
        return o;
    }

    /// Deletes the chunks of replaced or deleted manifests (from prev_kv / prev_kvs).
    void collect_replaced(const boost::json::object* prev, const boost::json::array* prevs, clock::time_point end) {
        std::set<std::string> garbage;
        auto collect = [&](const boost::json::object& kvo) {
            if (auto m = detail::etcd::parse_manifest(detail::etcd::get_b64(kvo, "value"))) garbage.insert(m->id);
        };
        if (prev) collect(*prev);
        if (prevs)
            for (auto& v : *prevs)
                if (v.is_object()) collect(v.get_object());
        core_->delete_chunks(garbage, std::max(end, clock::now() + std::chrono::milliseconds(500)));
    }

    bool needs_chunks(std::string_view v) const {
        return v.size() > core_->opts.inline_limit || detail::etcd::is_manifest(v);
    }

    /// Translates store_ops to etcd RequestOps; values that must be chunked are written first.
    void build_ops(const std::vector<store_op>& ops, const std::vector<bool>& chunk, boost::json::array& out,
                   std::vector<std::string>& chunk_ids, clock::time_point end, std::error_code& ec) {
        for (std::size_t i = 0; i < ops.size(); ++i) {
            auto& op = ops[i];
            switch (op.what) {
            case store_op::kind::put: {
                std::string value = op.value;
                if (chunk[i]) {
                    value = write_chunks(op.value, op.lease, end, ec, chunk_ids);
                    if (ec) return;
                }
                json_object p{{"key", b64(op.key)}, {"value", b64(value)}, {"prev_kv", true}};
                if (op.lease) p["lease"] = std::to_string(op.lease);
                out.push_back(json_object{{"request_put", std::move(p)}});
                break;
            }
            case store_op::kind::erase:
                out.push_back(
                    json_object{{"request_delete_range", json_object{{"key", b64(op.key)}, {"prev_kv", true}}}});
                break;
            case store_op::kind::erase_prefix:
                for (auto& [a, b] : segments(op.key, detail::etcd::prefix_end(op.key)))
                    out.push_back(
                        json_object{{"request_delete_range",
                                     json_object{{"key", b64(a)}, {"range_end", b64(b)}, {"prev_kv", true}}}});
                break;
            }
        }
    }

    /// Writes `value` as chunks under a fresh id; returns the manifest to store in the key.
    std::string write_chunks(std::string_view value, lease_id lease, clock::time_point end, std::error_code& ec,
                             std::vector<std::string>& ids) {
        detail::etcd::manifest m;
        m.id = detail::etcd::random_id();
        m.size = value.size();
        m.sha256 = detail::sha256_hex(value);
        const std::size_t cs = core_->opts.chunk_size;
        m.chunks = value.empty() ? 0 : (value.size() + cs - 1) / cs;
        ids.push_back(m.id);
        for (std::uint64_t k = 0; k < m.chunks; ++k) {
            auto part = value.substr(k * cs, cs);
            json_object p{{"key", b64(detail::etcd::chunk_key(core_->opts.chunk_prefix, m.id, k))},
                          {"value", b64(part)}};
            if (lease) p["lease"] = std::to_string(lease);
            (void)call("/v3/kv/put", p, call_kind::idempotent, end, ec);
            if (ec) return {};
        }
        return detail::etcd::encode_manifest(m);
    }

    std::shared_ptr<detail::etcd::core> core_;
};

} // namespace quorumreg

#if !defined(QUORUMREG_SEPARATE_COMPILATION)
#include <quorumreg/detail/impl/etcd_store.ipp>
#endif
