// The revision guard of an etcd watch: across every stream of one watch, delivered revisions
// only go forward, nothing is repeated and nothing is skipped. etcd has had bugs of each kind
// around reconnects and compaction (#15271, #17529, #18089, #19179); a violation becomes an
// error for the consumer instead of a silent skip. Included by <quorumreg/stores/etcd_store.hpp>.
#pragma once

#include <quorumreg/error.hpp>
#include <quorumreg/quorum_store.hpp>

#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace quorumreg::detail::etcd {

class watch_guard {
public:
    /// `next`: the first revision the consumer has not seen yet.
    explicit watch_guard(store_revision next) : next_(next) {}

    /// The revision a (re)connected stream must start from.
    store_revision next() const { return next_; }

    /// A stream is about to start at `start`: anything but next() would skip or repeat.
    std::error_code begin_stream(store_revision start, std::string& detail) const {
        if (start == next_) return {};
        detail = "watch stream would start at revision " + std::to_string(start) + ", expected " +
                 std::to_string(next_) + (start > next_ ? " (events would be skipped)" : " (events would repeat)");
        return errc::watch_out_of_order;
    }

    /// Checks one response's events (in arrival order) and, if they are sound, advances next().
    /// Events of one revision (one transaction) arrive together and name distinct keys.
    std::error_code check(const std::vector<watch_event>& evs, std::string& detail) {
        store_revision at = next_ - 1;
        std::set<std::string> keys_at;
        for (auto& e : evs) {
            if (e.revision < next_) {
                detail = "watch delivered revision " + std::to_string(e.revision) + " again (next expected " +
                         std::to_string(next_) + " or later)";
                return errc::watch_out_of_order;
            }
            if (e.revision < at) {
                detail =
                    "watch revision went backward from " + std::to_string(at) + " to " + std::to_string(e.revision);
                return errc::watch_out_of_order;
            }
            if (e.revision > at) {
                at = e.revision;
                keys_at.clear();
            }
            if (!keys_at.insert(e.kv.key).second) {
                detail = "watch delivered key \"" + e.kv.key + "\" twice at revision " + std::to_string(at);
                return errc::watch_out_of_order;
            }
        }
        if (at >= next_) next_ = at + 1;
        return {};
    }

    /// The member refused the start revision as compacted at `compact_revision`: every event in
    /// [next(), compact_revision) is gone. Returns watch_canceled with both revisions named.
    std::error_code compacted(store_revision compact_revision, std::string& detail) const {
        detail = "watch history from revision " + std::to_string(next_) + " was compacted (compact revision " +
                 std::to_string(compact_revision) + "): read the keys again and watch from the read's revision + 1";
        return errc::watch_canceled;
    }

private:
    store_revision next_;
};

} // namespace quorumreg::detail::etcd
