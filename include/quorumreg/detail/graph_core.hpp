// Index-level storage of dependency_graph: flat arrays indexed by a dense node number, with a
// dynamically maintained topological order (Pearce & Kelly, "A dynamic topological sort
// algorithm for directed acyclic graphs", JEA 2006).
//
// Why Pearce-Kelly: a new edge whose endpoints are already in order (the common case: services
// are usually declared after what they depend on) costs O(1); otherwise only the nodes whose
// position lies between the two endpoints are searched, and the same search finds the cycle.
#pragma once

#include <quorumreg/graph_types.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace quorumreg {

namespace detail {

using node_index = std::uint32_t;
inline constexpr node_index no_node = std::numeric_limits<node_index>::max();

/// One edge from a dependent to one of its dependencies. Edges of one group (an AND term; an
/// OR-group has several members) are contiguous in the dependent's list and share `group`.
struct graph_edge {
    node_index target;
    std::uint32_t group : 31;
    std::uint32_t kind : 1; // dependency_kind
};

class graph_core {
public:
    std::size_t slots() const noexcept { return deps_.size(); }
    bool alive(node_index v) const noexcept { return alive_[v] != 0; }
    std::size_t live_count() const noexcept { return deps_.size() - dead_; }
    std::size_t edge_count() const noexcept { return edges_; }
    std::size_t dead_count() const noexcept { return dead_; }
    const std::vector<graph_edge>& deps(node_index v) const noexcept { return deps_[v]; }
    const std::vector<node_index>& dependents(node_index v) const noexcept { return rdeps_[v]; }
    const std::vector<node_index>& topo_order() const noexcept { return order_; }

    node_index add_node() {
        auto v = static_cast<node_index>(deps_.size());
        deps_.emplace_back();
        rdeps_.emplace_back();
        alive_.push_back(1);
        next_group_.push_back(0);
        ord_.push_back(v);
        order_.push_back(v);
        mark_.push_back(0);
        parent_.push_back(no_node);
        return v;
    }

    void reserve(std::size_t n) {
        deps_.reserve(n);
        rdeps_.reserve(n);
        alive_.reserve(n);
        next_group_.reserve(n);
        ord_.reserve(n);
        order_.reserve(n);
        mark_.reserve(n);
        parent_.reserve(n);
    }

    /// Makes room in the topological order for "from depends on to" (to must precede from).
    /// Returns an empty vector on success; otherwise the cycle as dependents-direction path
    /// from `from` to `to` (from, ..., to), and the order is unchanged.
    std::vector<node_index> order_for_edge(node_index from, node_index to) {
        if (from == to) return {from};
        if (ord_[to] < ord_[from]) return {};
        const std::uint32_t lb = ord_[from], ub = ord_[to];
        next_epoch();
        const std::uint32_t ef = epoch_, eb = epoch_ + 1;
        // Forward: everything that (transitively) depends on `from`, inside the window. BFS so
        // that a cycle, if any, is reported along a shortest path (and deterministically).
        fwd_.clear();
        fwd_.push_back(from);
        mark_[from] = ef;
        parent_[from] = no_node;
        for (std::size_t i = 0; i < fwd_.size(); ++i) {
            node_index w = fwd_[i];
            for (node_index d : rdeps_[w]) {
                if (d == to) {
                    std::vector<node_index> path{to};
                    for (node_index p = w; p != no_node; p = parent_[p])
                        path.push_back(p);
                    std::reverse(path.begin(), path.end());
                    return path;
                }
                if (mark_[d] == ef || ord_[d] > ub) continue;
                mark_[d] = ef;
                parent_[d] = w;
                fwd_.push_back(d);
            }
        }
        // Backward: everything `to` (transitively) depends on, inside the window.
        bwd_.clear();
        bwd_.push_back(to);
        mark_[to] = eb;
        for (std::size_t i = 0; i < bwd_.size(); ++i) {
            for (const graph_edge& e : deps_[bwd_[i]]) {
                node_index d = e.target;
                if (mark_[d] == eb || ord_[d] < lb) continue;
                mark_[d] = eb;
                bwd_.push_back(d);
            }
        }
        // Reorder: the backward set goes first, then the forward set, into the same positions.
        auto by_ord = [this](node_index a, node_index b) { return ord_[a] < ord_[b]; };
        std::sort(fwd_.begin(), fwd_.end(), by_ord);
        std::sort(bwd_.begin(), bwd_.end(), by_ord);
        pos_.clear();
        for (node_index v : bwd_)
            pos_.push_back(ord_[v]);
        for (node_index v : fwd_)
            pos_.push_back(ord_[v]);
        std::inplace_merge(pos_.begin(), pos_.begin() + static_cast<std::ptrdiff_t>(bwd_.size()), pos_.end());
        std::size_t k = 0;
        for (node_index v : bwd_)
            place(v, pos_[k++]);
        for (node_index v : fwd_)
            place(v, pos_[k++]);
        return {};
    }

    /// Appends edges (the topological order must already allow them).
    std::uint32_t new_group(node_index from) { return next_group_[from]++; }
    void push_edge(node_index from, node_index to, std::uint32_t group, dependency_kind kind) {
        deps_[from].push_back(graph_edge{to, group & 0x7fffffffu, static_cast<std::uint32_t>(kind)});
        rdeps_[to].push_back(from);
        ++edges_;
    }

    /// Recomputes the topological order from scratch (Kahn's algorithm, O(V + E)): the bulk path
    /// for loading many edges at once. On a cycle the order is left as it was and one cycle is
    /// returned in "depends on" direction, first node repeated at the end.
    std::vector<node_index> rebuild_order() {
        const std::size_t n = slots();
        std::vector<std::uint32_t> pending(n);
        std::vector<node_index> order;
        order.reserve(n);
        for (node_index v = 0; v < n; ++v) {
            pending[v] = static_cast<std::uint32_t>(deps_[v].size());
            if (pending[v] == 0) order.push_back(v);
        }
        for (std::size_t i = 0; i < order.size(); ++i)
            for (node_index d : rdeps_[order[i]])
                if (--pending[d] == 0) order.push_back(d);
        if (order.size() == n) {
            for (std::uint32_t p = 0; p < n; ++p)
                place(order[p], p);
            return {};
        }
        // Every node left over has a dependency that is left over too: walk until a repeat.
        node_index v = 0;
        while (pending[v] == 0)
            ++v;
        std::vector<std::uint32_t> seen_at(n, std::numeric_limits<std::uint32_t>::max());
        std::vector<node_index> walk;
        while (seen_at[v] == std::numeric_limits<std::uint32_t>::max()) {
            seen_at[v] = static_cast<std::uint32_t>(walk.size());
            walk.push_back(v);
            for (const graph_edge& e : deps_[v])
                if (pending[e.target] != 0) {
                    v = e.target;
                    break;
                }
        }
        std::vector<node_index> cycle(walk.begin() + seen_at[v], walk.end());
        cycle.push_back(v);
        return cycle;
    }

    /// The last ms.size() edges of `from` form one group: rewrite their targets in the order
    /// of `ms` (same multiset of targets, so the reverse lists stay right).
    void reorder_group_tail(node_index from, const std::vector<node_index>& ms) {
        auto& list = deps_[from];
        auto base = list.size() - ms.size();
        for (std::size_t i = 0; i < ms.size(); ++i)
            list[base + i].target = ms[i];
    }

    /// Removes every edge of `from` whose (group, target) satisfies pred.
    template <class Pred> std::size_t remove_edges_if(node_index from, Pred pred) {
        auto& list = deps_[from];
        std::size_t removed = 0;
        auto out = list.begin();
        for (auto it = list.begin(); it != list.end(); ++it) {
            if (pred(*it)) {
                erase_one(rdeps_[it->target], from);
                ++removed;
            } else {
                *out++ = *it;
            }
        }
        list.erase(out, list.end());
        edges_ -= removed;
        return removed;
    }

    /// Drops the node and every edge touching it. Groups that lose their last member vanish.
    void remove_node(node_index v) {
        for (const graph_edge& e : deps_[v])
            erase_one(rdeps_[e.target], v);
        edges_ -= deps_[v].size();
        deps_[v].clear();
        deps_[v].shrink_to_fit();
        auto dependents = std::move(rdeps_[v]);
        rdeps_[v] = {};
        std::sort(dependents.begin(), dependents.end());
        dependents.erase(std::unique(dependents.begin(), dependents.end()), dependents.end());
        for (node_index d : dependents) {
            auto& list = deps_[d];
            auto before = list.size();
            std::erase_if(list, [v](const graph_edge& e) { return e.target == v; });
            edges_ -= before - list.size();
        }
        alive_[v] = 0;
        ++dead_;
    }

    /// Renumbers live nodes densely, keeping their relative (insertion) order and topological
    /// order. Returns old index -> new index (no_node for removed slots).
    std::vector<node_index> compact() {
        std::vector<node_index> remap(slots(), no_node);
        node_index n = 0;
        for (node_index v = 0; v < slots(); ++v)
            if (alive_[v]) remap[v] = n++;
        graph_core out;
        out.reserve(n);
        for (node_index v = 0; v < slots(); ++v) {
            if (!alive_[v]) continue;
            out.add_node();
            auto nv = remap[v];
            out.next_group_[nv] = next_group_[v];
            out.deps_[nv] = std::move(deps_[v]);
            for (auto& e : out.deps_[nv])
                e.target = remap[e.target];
            out.rdeps_[nv] = std::move(rdeps_[v]);
            for (auto& d : out.rdeps_[nv])
                d = remap[d];
        }
        std::uint32_t p = 0;
        for (node_index v : order_) {
            if (!alive_[v]) continue;
            out.ord_[remap[v]] = p;
            out.order_[p] = remap[v];
            ++p;
        }
        out.edges_ = edges_;
        *this = std::move(out);
        return remap;
    }

    void clear() { *this = graph_core{}; }

private:
    void place(node_index v, std::uint32_t p) {
        ord_[v] = p;
        order_[p] = v;
    }
    static void erase_one(std::vector<node_index>& list, node_index v) {
        auto it = std::find(list.begin(), list.end(), v);
        if (it != list.end()) list.erase(it);
    }
    void next_epoch() {
        if (epoch_ >= std::numeric_limits<std::uint32_t>::max() - 4) {
            std::fill(mark_.begin(), mark_.end(), 0u);
            epoch_ = 1;
        } else {
            epoch_ += 2;
        }
    }

    std::vector<std::vector<graph_edge>> deps_;  // dependent -> its dependencies, in declared order
    std::vector<std::vector<node_index>> rdeps_; // dependency -> dependents (one entry per edge)
    std::vector<std::uint8_t> alive_;
    std::vector<std::uint32_t> next_group_;
    std::vector<std::uint32_t> ord_; // node -> position in the topological order
    std::vector<node_index> order_;  // position -> node
    // Scratch for order_for_edge (reused to avoid allocation per insertion).
    std::vector<std::uint32_t> mark_;
    std::vector<node_index> parent_;
    std::vector<node_index> fwd_, bwd_;
    std::vector<std::uint32_t> pos_;
    std::uint32_t epoch_ = 1;
    std::size_t edges_ = 0;
    std::size_t dead_ = 0;
};

} // namespace detail
} // namespace quorumreg
