// A linearizability checker for histories of compare-and-set registers, and a reader for
// Jepsen's log format.
//
//   auto h = quorumreg::lincheck::parse_jepsen_log(text, ec);   // or build operations yourself
//   bool ok = quorumreg::lincheck::check(h).linearizable;
//
// - Model: one register per key, starting with no value; read, write and cas(from, to). Keys are
//   checked independently (linearizability is compositional), so a history of many keys costs
//   the sum of its keys, not their product.
// - Search: Wing and Gong's depth-first search over the operations that may linearize next,
//   with Lowe's memoisation (a set of (linearized operations, register state) already explored)
//   as in Porcupine. Worst case exponential, as the problem is; the cache makes the histories
//   real systems produce cheap.
// - Unknown outcomes, as Jepsen defines them: an operation that timed out (or was never
//   answered) may have taken effect at any point after its invocation, or never. It is given
//   an end after every known operation, so it can linearize anywhere after its start; placed
//   last it changes nothing anyone observed, which is the "never" case. An unknown read says
//   nothing and is dropped. A failed cas happened as a cas whose compare did not hold (the
//   register held something else then); other failed operations did not happen.
// - Budget: check() takes an optional limit on search steps; when it is exhausted the verdict
//   is `unknown` rather than a guess.
#pragma once

#include <quorumreg/error.hpp>

#include <algorithm>
#include <cstdint>
#include <system_error>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace quorumreg::lincheck {

enum class op_kind { read, write, cas };
enum class outcome {
    ok,     ///< it happened (for a read: `value` is what it returned)
    failed, ///< it did not happen; for a cas: its compare did not hold
    unknown ///< it may have happened at any point after its invocation, or never
};

/// One operation of a history. Times only need to be ordered (Jepsen: line numbers).
struct operation {
    std::string key;                   ///< the register (empty for single-register histories)
    int process = 0;                   ///< who invoked it (for messages only)
    op_kind kind = op_kind::read;      ///< read, write or cas
    std::optional<std::int64_t> value; ///< write: the value; cas: `to`; read (ok): what was read (nullopt: none)
    std::int64_t from = 0;             ///< cas: the expected value
    outcome result = outcome::ok;      ///< ok, failed (had no effect) or unknown (may have)
    std::uint64_t invoked = 0;         ///< when it was invoked
    std::uint64_t completed = 0;       ///< ignored for unknown outcomes
};

using history = std::vector<operation>;

enum class verdict { linearizable, not_linearizable, unknown };

/// What check() decided, and how much search it took.
struct check_result {
    verdict answer = verdict::linearizable; ///< the verdict
    bool linearizable = true;               ///< answer == verdict::linearizable
    std::string key;                        ///< the first key found not linearizable (or left undecided)
    std::uint64_t steps = 0;                ///< search steps taken (the budget's unit)
};

namespace detail {

struct entry {
    bool is_call = false;
    std::size_t id = 0;     ///< operation index within the key
    entry* match = nullptr; ///< call -> its return
    entry* prev = nullptr;
    entry* next = nullptr;
    std::uint64_t time = 0;
    bool unknown = false;
};

/// The register: no value, or an integer.
using state = std::optional<std::int64_t>;

inline bool step(const operation& op, const state& s, state& next) {
    switch (op.kind) {
    case op_kind::read: next = s; return op.value == s; // known reads only (unknown ones were dropped)
    case op_kind::write: next = op.value; return true;
    case op_kind::cas:
        if (op.result == outcome::unknown) {
            next = (s && *s == op.from) ? op.value : s;
            return true;
        }
        if (op.result == outcome::failed) {
            next = s;
            return !(s && *s == op.from);
        }
        if (!(s && *s == op.from)) return false;
        next = op.value;
        return true;
    }
    return false;
}

struct bitset {
    std::vector<std::uint64_t> w;
    explicit bitset(std::size_t n) : w((n + 63) / 64) {}
    void set(std::size_t i) { w[i / 64] |= std::uint64_t(1) << (i % 64); }
    void clear(std::size_t i) { w[i / 64] &= ~(std::uint64_t(1) << (i % 64)); }
    bool operator==(const bitset&) const = default;
};

struct cache_key {
    bitset linearized;
    state s;
    bool operator==(const cache_key&) const = default;
};

struct cache_hash {
    std::size_t operator()(const cache_key& k) const noexcept {
        std::uint64_t h = 0xcbf29ce484222325ull;
        for (auto x : k.linearized.w)
            h = (h ^ x) * 0x100000001b3ull;
        h = (h ^ (k.s ? static_cast<std::uint64_t>(*k.s) * 2 + 1 : 0)) * 0x100000001b3ull;
        return static_cast<std::size_t>(h ^ (h >> 29));
    }
};

/// Checks one register's operations. Returns linearizable / not / unknown (budget spent).
inline verdict check_register(const std::vector<const operation*>& ops, std::uint64_t& steps, std::uint64_t max_steps) {
    // Entries sorted by time; unknown outcomes end after every known event.
    std::uint64_t horizon = 0;
    for (const auto* op : ops)
        horizon = std::max({horizon, op->invoked, op->completed});
    std::vector<entry> store(ops.size() * 2);
    std::vector<entry*> order;
    order.reserve(store.size());
    for (std::size_t i = 0; i < ops.size(); ++i) {
        entry* call = &store[2 * i];
        entry* ret = &store[2 * i + 1];
        call->is_call = true;
        call->id = ret->id = i;
        call->match = ret;
        call->time = ops[i]->invoked;
        ret->unknown = ops[i]->result == outcome::unknown;
        ret->time = ret->unknown ? horizon + 1 : ops[i]->completed;
        order.push_back(call);
        order.push_back(ret);
    }
    // At equal times calls come first: two operations touching the same instant may overlap.
    std::stable_sort(order.begin(), order.end(), [](const entry* a, const entry* b) {
        if (a->time != b->time) return a->time < b->time;
        return a->is_call && !b->is_call;
    });
    entry head;
    entry* prev = &head;
    for (auto* e : order) {
        prev->next = e;
        e->prev = prev;
        prev = e;
    }

    auto lift = [](entry* call) {
        call->prev->next = call->next;
        call->next->prev = call->prev;
        auto* ret = call->match;
        ret->prev->next = ret->next;
        if (ret->next) ret->next->prev = ret->prev;
    };
    auto unlift = [](entry* call) {
        auto* ret = call->match;
        ret->prev->next = ret;
        if (ret->next) ret->next->prev = ret;
        call->prev->next = call;
        call->next->prev = call;
    };

    std::unordered_set<cache_key, cache_hash> cache;
    bitset linearized(ops.size());
    state s;
    std::vector<std::pair<entry*, state>> stack;
    entry* e = head.next;
    while (head.next) {
        if (++steps > max_steps) return verdict::unknown;
        if (e->is_call) {
            state next;
            if (step(*ops[e->id], s, next)) {
                bitset with = linearized;
                with.set(e->id);
                if (cache.insert(cache_key{with, next}).second) {
                    stack.emplace_back(e, s);
                    s = next;
                    linearized.set(e->id);
                    lift(e);
                    e = head.next;
                    continue;
                }
            }
            e = e->next;
        } else {
            // A return whose call is not linearized yet: everything before it failed; backtrack.
            if (stack.empty()) return verdict::not_linearizable;
            auto [call, before] = stack.back();
            stack.pop_back();
            s = before;
            linearized.clear(call->id);
            unlift(call);
            e = call->next;
        }
    }
    return verdict::linearizable;
}

} // namespace detail

/// Checks a history, each key on its own. `max_steps` bounds the search over all keys.
inline check_result check(const history& h, std::uint64_t max_steps = 100'000'000) {
    std::map<std::string, std::vector<const operation*>> by_key;
    for (const auto& op : h) {
        if (op.kind == op_kind::read && op.result != outcome::ok) continue; // says nothing
        if (op.kind == op_kind::write && op.result == outcome::failed) continue;
        by_key[op.key].push_back(&op);
    }
    check_result r;
    for (const auto& [key, ops] : by_key) {
        auto v = detail::check_register(ops, r.steps, max_steps);
        if (v != verdict::linearizable) {
            r.answer = v;
            r.linearizable = false;
            r.key = key;
            return r;
        }
    }
    return r;
}

/// Reads a Jepsen log (format: ../shared/linearizability/README.md): lines
/// `INFO  jepsen.util - PROCESS<TAB>TYPE<TAB>F<TAB>VALUE`; other lines are ignored. Errors
/// (errc::corrupt_data, with the line number in `why`): an unknown type or function, a value
/// that is not what the function takes, a completion without an invocation, an invocation by a
/// process that has one open.
inline history parse_jepsen_log(std::string_view text, std::error_code& ec, std::string* why = nullptr) {
    ec.clear();
    history out;
    std::map<int, std::size_t> open; // process -> index in out
    std::uint64_t line_no = 0;
    auto fail = [&](const std::string& msg) {
        ec = make_error_code(errc::corrupt_data);
        if (why) *why = "line " + std::to_string(line_no) + ": " + msg;
        return history{};
    };
    auto parse_int = [](std::string_view s, std::int64_t& v) {
        if (s.empty()) return false;
        std::size_t i = 0;
        bool neg = s[0] == '-';
        if (neg) i = 1;
        if (i == s.size()) return false;
        std::int64_t x = 0;
        for (; i < s.size(); ++i) {
            if (s[i] < '0' || s[i] > '9' || x > (INT64_MAX - 9) / 10) return false;
            x = x * 10 + (s[i] - '0');
        }
        v = neg ? -x : x;
        return true;
    };
    std::size_t pos = 0;
    while (pos <= text.size()) {
        auto nl = text.find('\n', pos);
        auto line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        auto dash = line.find(" - ");
        if (line.find("jepsen.util") == std::string_view::npos || dash == std::string_view::npos) continue;
        std::vector<std::string_view> f;
        for (auto rest = line.substr(dash + 3);;) {
            auto t = rest.find('\t');
            f.push_back(rest.substr(0, t));
            if (t == std::string_view::npos) break;
            rest = rest.substr(t + 1);
        }
        if (f.size() < 4) return fail("expected PROCESS, TYPE, F and VALUE separated by tabs");
        std::int64_t proc = 0;
        if (!parse_int(f[0], proc) || proc < 0 || proc > INT32_MAX)
            return fail("bad process \"" + std::string(f[0]) + "\"");
        const auto type = f[1], fn = f[2], val = f[3];
        op_kind kind;
        if (fn == ":read") {
            kind = op_kind::read;
        } else if (fn == ":write") {
            kind = op_kind::write;
        } else if (fn == ":cas") {
            kind = op_kind::cas;
        } else {
            return fail("unknown function \"" + std::string(fn) + "\"");
        }
        const int p = static_cast<int>(proc);
        if (type == ":invoke") {
            if (open.count(p)) return fail("process " + std::to_string(p) + " invokes while an operation is open");
            operation op;
            op.process = p;
            op.kind = kind;
            op.invoked = line_no;
            op.result = outcome::unknown; // until its completion says otherwise
            std::int64_t v = 0;
            if (kind == op_kind::write) {
                if (!parse_int(val, v)) return fail("write of \"" + std::string(val) + "\": not an integer");
                op.value = v;
            } else if (kind == op_kind::cas) {
                std::int64_t a = 0, b = 0;
                auto sp = val.find(' ');
                if (val.size() < 5 || val.front() != '[' || val.back() != ']' || sp == std::string_view::npos ||
                    !parse_int(val.substr(1, sp - 1), a) || !parse_int(val.substr(sp + 1, val.size() - sp - 2), b))
                    return fail("cas of \"" + std::string(val) + "\": expected [FROM TO]");
                op.from = a;
                op.value = b;
            }
            open[p] = out.size();
            out.push_back(op);
            continue;
        }
        auto it = open.find(p);
        if (it == open.end()) return fail("process " + std::to_string(p) + " completes an operation it never invoked");
        auto& op = out[it->second];
        if (op.kind != kind) return fail("completion's function differs from the invocation's");
        open.erase(it);
        op.completed = line_no;
        if (type == ":ok") {
            op.result = outcome::ok;
            if (kind == op_kind::read) {
                std::int64_t v = 0;
                if (val == "nil") {
                    op.value.reset();
                } else if (parse_int(val, v)) {
                    op.value = v;
                } else {
                    return fail("read returned \"" + std::string(val) + "\": not an integer or nil");
                }
            }
        } else if (type == ":fail") {
            // A read that failed by timing out is an unknown outcome, as :info.
            op.result = (kind == op_kind::read && val == ":timed-out") ? outcome::unknown : outcome::failed;
        } else if (type == ":info") {
            op.result = outcome::unknown;
        } else {
            return fail("unknown type \"" + std::string(type) + "\"");
        }
    }
    return out; // operations still open are unknown outcomes
}

} // namespace quorumreg::lincheck
