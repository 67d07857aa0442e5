// quorumreg — dependency_graph: what must be online before what.
//
// @code
// quorumreg::dependency_graph<std::string> g;
// g.add_dependency("name_mapping", "cluster");         // name_mapping requires cluster
// g.add_any_of("web", {"db_primary", "db_replica"});   // web requires (db_primary or db_replica)
// g.add_order_after("backup", "web");                  // order only: never starts web
// auto waves = g.start_waves();   // {{"cluster","db_primary","db_replica"}, {"name_mapping","web"}, {"backup"}}
// g.add_dependency("cluster", "name_mapping");         // throws: cluster -> name_mapping -> cluster
// @endcode
//
// Model: each node has an AND of dependency groups; a group is either one edge or an OR-group
// of several members (WSFC's `([a] or [b]) and [c]`). Edges are of two kinds that are never
// confused: dependency_kind::required (pulls in and orders) and dependency_kind::ordered_after
// (orders only). Every edge, whatever its kind or group, is an ordering constraint, so a cycle
// through any of them (including through one member of an OR-group) is rejected when it is
// added: the error names the cycle, `a -> b -> c -> a` ("a depends on b, which depends on c,
// which depends on a"), and the graph is left unchanged.
//
// Determinism: every query returns nodes in a fixed order that depends only on the sequence of
// calls that built the graph: ties are broken by insertion order (the order in which nodes were
// first added).
//
// Threading contract: like the standard containers. Const member functions may run
// concurrently with each other; any mutation needs exclusive access.
#pragma once

#include <quorumreg/detail/graph_core.hpp>
#include <quorumreg/detail/graph_format.hpp>
#include <quorumreg/error.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace quorumreg {

/// One term of a node's dependency expression: a single dependency, or an OR-group (any one
/// member being online satisfies it).
///
/// @code
/// for (const auto& g : graph.dependency_groups("web"))
///     if (g.any_of()) std::cout << "one of " << g.members.size() << " members\n";
/// @endcode
template <class Id> struct dependency_group {
    dependency_kind kind = dependency_kind::required; ///< required, or ordering only
    std::vector<Id> members;                          ///< in declared order (the order a controller tries them)
    /// True for an OR-group of two or more members.
    bool any_of() const noexcept { return members.size() > 1; }
    /// Same kind and the same members in the same order.
    friend bool operator==(const dependency_group&, const dependency_group&) = default;
};

/// Which edges a transitive query follows.
enum class edge_filter : std::uint8_t {
    all,           ///< required and ordered_after edges (everything that orders)
    required_only, ///< only required edges (everything that pulls in)
};

/// A directed acyclic dependency graph over ids of type `Id` (hashable with `Hash`, equality
/// comparable, printable through id_formatter<Id>). See the file comment for the model.
///
/// @code
/// quorumreg::dependency_graph<int> g;
/// std::error_code ec;
/// g.add_dependency(1, 2);
/// g.add_dependency(2, 1, ec);   // ec == quorumreg::errc::dependency_cycle, graph unchanged
/// @endcode
template <class Id, class Hash = std::hash<Id>> class dependency_graph {
public:
    using id_type = Id;                      ///< the node id type
    using group_type = dependency_group<Id>; ///< one AND term of a node's dependencies

    dependency_graph() = default;

    // ---- nodes -------------------------------------------------------------------------------

    /// Adds a node if absent. Returns true if it was added. Nodes are also added implicitly by
    /// the add_* edge functions (dependent first, then dependencies in argument order).
    bool add_node(const Id& id) {
        if (index_.find(id) != index_.end()) return false;
        insert_node(id);
        return true;
    }

    /// Removes a node with every edge touching it. A group of a dependent that loses its last
    /// member disappears (the dependent no longer needs it); an OR-group that loses one member
    /// keeps the others. Returns false if the node did not exist.
    bool remove_node(const Id& id) {
        auto it = index_.find(id);
        if (it == index_.end()) return false;
        core_.remove_node(it->second);
        index_.erase(it);
        maybe_compact();
        return true;
    }

    /// Whether `id` is a node.
    bool contains(const Id& id) const { return index_.find(id) != index_.end(); }
    /// Number of nodes.
    std::size_t size() const noexcept { return core_.live_count(); }
    /// No node.
    bool empty() const noexcept { return size() == 0; }
    /// Number of edges (an OR-group of n members counts n).
    std::size_t edge_count() const noexcept { return core_.edge_count(); }
    /// Every node, in insertion order.
    std::vector<Id> nodes() const {
        std::vector<Id> out;
        out.reserve(size());
        for (detail::node_index v = 0; v < core_.slots(); ++v)
            if (core_.alive(v)) out.push_back(ids_[v]);
        return out;
    }
    /// Removes every node and edge.
    void clear() {
        core_.clear();
        ids_.clear();
        index_.clear();
    }
    /// Pre-allocates for `n` nodes (bulk loading).
    void reserve(std::size_t n) {
        core_.reserve(n);
        ids_.reserve(n);
        index_.reserve(n);
    }

    // ---- edges -------------------------------------------------------------------------------

    /// "dependent requires dependency" (dependency_kind::required), or the given kind.
    /// Returns false (and changes nothing) if the same single-member group already exists.
    /// Throws quorumreg::error with errc::dependency_cycle, whose what() names the cycle, if
    /// the edge would close one; the graph is then unchanged.
    bool add_dependency(const Id& dependent, const Id& dependency, dependency_kind kind = dependency_kind::required) {
        std::error_code ec;
        std::vector<Id> cycle;
        bool r = add_dependency(dependent, dependency, kind, ec, &cycle);
        if (ec) throw error(ec, edge_message("add_dependency", dependent, {&dependency, 1}, cycle));
        return r;
    }
    /// Non-throwing form. On a cycle sets ec to errc::dependency_cycle and, if `cycle` is not
    /// null, stores the cycle there as [dependent, dependency, ..., dependent].
    bool add_dependency(const Id& dependent, const Id& dependency, dependency_kind kind, std::error_code& ec,
                        std::vector<Id>* cycle = nullptr) {
        return add_one(dependent, dependency, kind, ec, cycle);
    }
    /// Non-throwing form: errors go to `ec`; on errc::cycle_detected `*cycle` (if given) is the cycle.
    bool add_dependency(const Id& dependent, const Id& dependency, std::error_code& ec,
                        std::vector<Id>* cycle = nullptr) {
        return add_dependency(dependent, dependency, dependency_kind::required, ec, cycle);
    }

    /// Bulk form for loading a configuration: adds "first depends on second" for every pair
    /// (skipping duplicates), then checks for cycles once in O(V + E) instead of per edge. All
    /// or nothing: on a cycle (errc::dependency_cycle, the message names one) nothing is added,
    /// not even new nodes. Returns the number of edges added.
    std::size_t add_dependencies(std::span<const std::pair<Id, Id>> edges,
                                 dependency_kind kind = dependency_kind::required) {
        std::error_code ec;
        std::vector<Id> cycle;
        auto r = add_dependencies(edges, kind, ec, &cycle);
        if (ec) throw error(ec, "add_dependencies: would create the cycle " + format_cycle(cycle));
        return r;
    }
    /// Non-throwing form: errors go to `ec`; on errc::cycle_detected `*cycle` (if given) is the cycle.
    std::size_t add_dependencies(std::span<const std::pair<Id, Id>> edges, dependency_kind kind, std::error_code& ec,
                                 std::vector<Id>* cycle = nullptr) {
        ec.clear();
        const std::size_t slots_before = core_.slots();
        std::vector<std::pair<detail::node_index, std::uint32_t>> touched; // node, first new group
        std::vector<std::uint8_t> is_touched(core_.slots(), 0);
        std::size_t added = 0;
        for (const auto& [a_id, b_id] : edges) {
            auto a = find(a_id);
            if (a == detail::no_node) a = insert_node(a_id);
            auto b = find(b_id);
            if (b == detail::no_node) b = insert_node(b_id);
            if (a == b) {
                ec = make_error_code(errc::dependency_cycle);
                if (cycle) *cycle = {a_id, a_id};
                break;
            }
            const detail::node_index one[1] = {b};
            if (has_group(a, one, kind)) continue;
            auto g = core_.new_group(a);
            if (a < is_touched.size() && !is_touched[a]) {
                is_touched[a] = 1;
                touched.emplace_back(a, g);
            }
            core_.push_edge(a, b, g, kind);
            ++added;
        }
        if (!ec) {
            auto c = core_.rebuild_order();
            if (c.empty()) return added;
            ec = make_error_code(errc::dependency_cycle);
            if (cycle) {
                cycle->clear();
                for (auto v : c)
                    cycle->push_back(ids_[v]);
            }
        }
        for (const auto& t : touched) {
            const std::uint32_t first = t.second; // clang 14 cannot capture structured bindings
            core_.remove_edges_if(t.first, [first](const detail::graph_edge& e) { return e.group >= first; });
        }
        for (auto v = core_.slots(); v-- > slots_before;) {
            index_.erase(ids_[v]);
            core_.remove_node(static_cast<detail::node_index>(v));
        }
        maybe_compact();
        return 0;
    }

    /// "dependent is ordered after dependency": order only (see dependency_kind::ordered_after).
    bool add_order_after(const Id& dependent, const Id& dependency) {
        return add_dependency(dependent, dependency, dependency_kind::ordered_after);
    }
    /// Non-throwing form: errors go to `ec`; on errc::cycle_detected `*cycle` (if given) is the cycle.
    bool add_order_after(const Id& dependent, const Id& dependency, std::error_code& ec,
                         std::vector<Id>* cycle = nullptr) {
        return add_dependency(dependent, dependency, dependency_kind::ordered_after, ec, cycle);
    }

    /// "dependent requires (members[0] or members[1] or ...)": one OR-group, satisfied by any
    /// member. Members are tried in the given order by a controller. Rejects an empty list or a
    /// repeated member (errc::invalid_argument) and a member that would close a cycle
    /// (errc::dependency_cycle, naming it); in both cases the graph is unchanged. Returns false
    /// if an identical group already exists.
    bool add_any_of(const Id& dependent, std::span<const Id> members) {
        std::error_code ec;
        std::vector<Id> cycle;
        bool r = add_any_of(dependent, members, ec, &cycle);
        if (ec) throw error(ec, edge_message("add_any_of", dependent, members, cycle));
        return r;
    }
    /// add_any_of with the members written inline.
    bool add_any_of(const Id& dependent, std::initializer_list<Id> members) {
        return add_any_of(dependent, std::span<const Id>(members.begin(), members.size()));
    }
    /// Non-throwing form: errors go to `ec`; on errc::cycle_detected `*cycle` (if given) is the cycle.
    bool add_any_of(const Id& dependent, std::span<const Id> members, std::error_code& ec,
                    std::vector<Id>* cycle = nullptr) {
        return add_group(dependent, members, dependency_kind::required, ec, cycle);
    }
    /// Non-throwing form: errors go to `ec`; on errc::cycle_detected `*cycle` (if given) is the cycle.
    bool add_any_of(const Id& dependent, std::initializer_list<Id> members, std::error_code& ec,
                    std::vector<Id>* cycle = nullptr) {
        return add_any_of(dependent, std::span<const Id>(members.begin(), members.size()), ec, cycle);
    }

    /// Removes `dependency` from every group of `dependent` (a group left empty disappears).
    /// Returns the number of edges removed.
    std::size_t remove_dependency(const Id& dependent, const Id& dependency) {
        auto a = find(dependent), b = find(dependency);
        if (a == detail::no_node || b == detail::no_node) return 0;
        return core_.remove_edges_if(a, [b](const detail::graph_edge& e) { return e.target == b; });
    }

    /// Removes the whole group number `group` (as listed by dependency_groups()) of `dependent`.
    /// Returns false if there is no such group.
    bool remove_group(const Id& dependent, std::size_t group) {
        auto a = find(dependent);
        if (a == detail::no_node) return false;
        auto g = group_tag(a, group);
        if (g == no_group) return false;
        core_.remove_edges_if(a, [g](const detail::graph_edge& e) { return e.group == g; });
        return true;
    }

    /// Would "dependent depends on dependency" close a cycle? Returns the cycle
    /// [dependent, dependency, ..., dependent], or an empty vector. Does not modify the graph.
    std::vector<Id> would_cycle(const Id& dependent, const Id& dependency) const {
        auto a = find(dependent), b = find(dependency);
        if (a == detail::no_node || b == detail::no_node) {
            if (dependent == dependency) return {dependent, dependent};
            return {};
        }
        if (a == b) return {dependent, dependent};
        // BFS from b along dependencies looking for a: the path b ... a plus the new edge.
        std::vector<detail::node_index> parent(core_.slots(), detail::no_node);
        std::vector<detail::node_index> queue{b};
        parent[b] = b;
        for (std::size_t i = 0; i < queue.size(); ++i) {
            for (const auto& e : core_.deps(queue[i])) {
                if (parent[e.target] != detail::no_node) continue;
                parent[e.target] = queue[i];
                if (e.target == a) {
                    std::vector<Id> path;
                    for (detail::node_index p = a; p != b; p = parent[p])
                        path.push_back(ids_[p]);
                    path.push_back(ids_[b]);
                    path.push_back(ids_[a]);
                    std::reverse(path.begin(), path.end());
                    return path;
                }
                queue.push_back(e.target);
            }
        }
        return {};
    }

    // ---- queries -----------------------------------------------------------------------------

    /// The dependency expression of `id`: its groups in declared order. Throws
    /// errc::not_found for an unknown node.
    std::vector<group_type> dependency_groups(const Id& id) const {
        std::error_code ec;
        auto r = dependency_groups(id, ec);
        detail::throw_if(ec, "dependency_groups " + quoted(id));
        return r;
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<group_type> dependency_groups(const Id& id, std::error_code& ec) const {
        std::vector<group_type> out;
        auto v = lookup(id, ec);
        if (ec) return out;
        const auto& deps = core_.deps(v);
        for (std::size_t i = 0; i < deps.size();) {
            group_type g;
            g.kind = static_cast<dependency_kind>(deps[i].kind);
            auto tag = deps[i].group;
            for (; i < deps.size() && deps[i].group == tag; ++i)
                g.members.push_back(ids_[deps[i].target]);
            out.push_back(std::move(g));
        }
        return out;
    }

    /// Direct dependencies of `id` (every member of every group, once each, declared order).
    /// Unknown ids give an empty list.
    std::vector<Id> dependencies_of(const Id& id, edge_filter filter = edge_filter::all) const {
        std::vector<Id> out;
        auto v = find(id);
        if (v == detail::no_node) return out;
        std::vector<detail::node_index> seen;
        for (const auto& e : core_.deps(v)) {
            if (!follows(e, filter) || std::find(seen.begin(), seen.end(), e.target) != seen.end()) continue;
            seen.push_back(e.target);
            out.push_back(ids_[e.target]);
        }
        return out;
    }

    /// Direct dependents of `id` (insertion order). Unknown ids give an empty list.
    std::vector<Id> dependents_of(const Id& id, edge_filter filter = edge_filter::all) const {
        std::vector<Id> out;
        auto v = find(id);
        if (v == detail::no_node) return out;
        std::vector<detail::node_index> ds;
        for (auto d : core_.dependents(v)) {
            if (filter == edge_filter::required_only && !has_required_edge(d, v)) continue;
            ds.push_back(d);
        }
        std::sort(ds.begin(), ds.end());
        ds.erase(std::unique(ds.begin(), ds.end()), ds.end());
        for (auto d : ds)
            out.push_back(ids_[d]);
        return out;
    }

    /// Everything `id` depends on, directly or not (not including `id`), in insertion order.
    std::vector<Id> transitive_dependencies(const Id& id, edge_filter filter = edge_filter::all) const {
        std::error_code ec;
        auto r = transitive_dependencies(id, filter, ec);
        detail::throw_if(ec, "transitive_dependencies " + quoted(id));
        return r;
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<Id> transitive_dependencies(const Id& id, edge_filter filter, std::error_code& ec) const {
        return closure(id, filter, true, ec);
    }

    /// Everything that depends on `id`, directly or not (not including `id`), insertion order.
    std::vector<Id> transitive_dependents(const Id& id, edge_filter filter = edge_filter::all) const {
        std::error_code ec;
        auto r = transitive_dependents(id, filter, ec);
        detail::throw_if(ec, "transitive_dependents " + quoted(id));
        return r;
    }
    /// Non-throwing form: errors go to `ec`.
    std::vector<Id> transitive_dependents(const Id& id, edge_filter filter, std::error_code& ec) const {
        return closure(id, filter, false, ec);
    }

    /// Start waves: wave 0 holds the nodes with no dependencies, wave k the nodes whose longest
    /// chain of dependencies (of any kind) has length k. Every node of a wave may start in
    /// parallel once the previous waves are up. Within a wave: insertion order.
    std::vector<std::vector<Id>> start_waves() const {
        std::vector<std::vector<Id>> waves;
        const std::size_t n = core_.slots();
        if (core_.live_count() == 0) return waves;
        std::vector<std::uint32_t> level(n, 0);
        std::uint32_t max_level = 0;
        // One pass in topological order: every dependency's level is final before it is read.
        for (detail::node_index v : core_.topo_order()) {
            std::uint32_t l = 0;
            for (const auto& e : core_.deps(v))
                l = std::max(l, level[e.target] + 1);
            level[v] = l;
            max_level = std::max(max_level, l);
        }
        // Counting sort by level, stable in index (= insertion) order.
        std::vector<std::size_t> count(max_level + 1, 0);
        for (detail::node_index v = 0; v < n; ++v)
            if (core_.alive(v)) ++count[level[v]];
        waves.resize(max_level + 1);
        for (std::uint32_t l = 0; l <= max_level; ++l)
            waves[l].reserve(count[l]);
        for (detail::node_index v = 0; v < n; ++v)
            if (core_.alive(v)) waves[level[v]].push_back(ids_[v]);
        return waves;
    }

    /// A complete start order: the waves flattened.
    std::vector<Id> start_order() const {
        std::vector<Id> out;
        out.reserve(size());
        for (auto& w : start_waves())
            for (auto& id : w)
                out.push_back(std::move(id));
        return out;
    }

    /// Stop order: exactly the reverse of start_order() (dependents before their dependencies).
    std::vector<Id> stop_order() const {
        auto out = start_order();
        std::reverse(out.begin(), out.end());
        return out;
    }

    /// Can `id` come online when the nodes in `failed` cannot? True iff `id` is not failed and
    /// every required group of it has at least one satisfiable member (ordered_after edges
    /// never block). Throws errc::not_found for an unknown node.
    template <class Set = std::unordered_set<Id, Hash>> bool satisfiable(const Id& id, const Set& failed) const {
        std::error_code ec;
        bool r = satisfiable(id, failed, ec);
        detail::throw_if(ec, "satisfiable " + quoted(id));
        return r;
    }
    /// Non-throwing form: errors go to `ec`.
    template <class Set = std::unordered_set<Id, Hash>>
    bool satisfiable(const Id& id, const Set& failed, std::error_code& ec) const {
        auto v = lookup(id, ec);
        if (ec) return false;
        // 0 = unknown, 1 = satisfiable, 2 = not. Iterative post-order DFS (deep graphs).
        std::vector<std::uint8_t> memo(core_.slots(), 0);
        auto is_failed = [&](detail::node_index x) { return failed.find(ids_[x]) != failed.end(); };
        std::vector<std::pair<detail::node_index, bool>> stack{{v, false}};
        while (!stack.empty()) {
            auto [x, expanded] = stack.back();
            stack.pop_back();
            if (memo[x]) continue;
            if (is_failed(x)) {
                memo[x] = 2;
                continue;
            }
            if (!expanded) {
                stack.push_back({x, true});
                for (const auto& e : core_.deps(x))
                    if (e.kind == static_cast<std::uint32_t>(dependency_kind::required) && !memo[e.target])
                        stack.push_back({e.target, false});
                continue;
            }
            bool ok = true;
            const auto& deps = core_.deps(x);
            for (std::size_t i = 0; i < deps.size() && ok;) {
                auto tag = deps[i].group;
                bool required = deps[i].kind == static_cast<std::uint32_t>(dependency_kind::required);
                bool any = false;
                for (; i < deps.size() && deps[i].group == tag; ++i)
                    any = any || memo[deps[i].target] == 1;
                if (required && !any) ok = false;
            }
            memo[x] = ok ? 1 : 2;
        }
        return memo[v] == 1;
    }

    /// Graphviz DOT: an arrow `x -> y` means "x depends on y". Required edges are solid,
    /// ordered_after edges dashed (label "after"), and each OR-group is drawn as a small
    /// diamond labelled "or" with dotted arrows to its members.
    void write_dot(std::ostream& os, std::string_view graph_name = "dependencies") const {
        os << "digraph \"" << detail::dot_escape(graph_name) << "\" {\n  rankdir=BT;\n  node [shape=box];\n";
        for (detail::node_index v = 0; v < core_.slots(); ++v)
            if (core_.alive(v)) os << "  n" << v << " [label=\"" << detail::dot_escape(text(v)) << "\"];\n";
        for (detail::node_index v = 0; v < core_.slots(); ++v) {
            if (!core_.alive(v)) continue;
            const auto& deps = core_.deps(v);
            std::size_t gno = 0;
            for (std::size_t i = 0; i < deps.size(); ++gno) {
                std::size_t j = i;
                while (j < deps.size() && deps[j].group == deps[i].group)
                    ++j;
                bool after = deps[i].kind == static_cast<std::uint32_t>(dependency_kind::ordered_after);
                if (j - i == 1) {
                    os << "  n" << v << " -> n" << deps[i].target
                       << (after ? " [style=dashed, label=\"after\"];\n" : ";\n");
                } else {
                    os << "  or" << v << "_" << gno << " [shape=diamond, label=\"or\", width=0.3, height=0.3];\n";
                    os << "  n" << v << " -> or" << v << "_" << gno << (after ? " [style=dashed];\n" : ";\n");
                    for (std::size_t k = i; k < j; ++k)
                        os << "  or" << v << "_" << gno << " -> n" << deps[k].target << " [style=dotted];\n";
                }
                i = j;
            }
        }
        os << "}\n";
    }
    /// write_dot into a string.
    std::string to_dot(std::string_view graph_name = "dependencies") const {
        std::ostringstream os;
        write_dot(os, graph_name);
        return os.str();
    }

    /// Formats a cycle as `a -> b -> c -> a` using id_formatter<Id>.
    std::string format_cycle(const std::vector<Id>& cycle) const {
        std::string s;
        for (std::size_t i = 0; i < cycle.size(); ++i) {
            if (i) s += " -> ";
            auto v = find(cycle[i]);
            s += detail::format_id(cycle[i], v == detail::no_node ? size() : v);
        }
        return s;
    }

    /// Same nodes and the same groups of edges (insertion order aside).
    friend bool operator==(const dependency_graph& a, const dependency_graph& b) {
        if (a.nodes() != b.nodes()) return false;
        for (const auto& id : a.nodes())
            if (a.dependency_groups(id) != b.dependency_groups(id)) return false;
        return true;
    }

private:
    static constexpr std::uint32_t no_group = 0xffffffffu;

    detail::node_index find(const Id& id) const {
        auto it = index_.find(id);
        return it == index_.end() ? detail::no_node : it->second;
    }
    detail::node_index lookup(const Id& id, std::error_code& ec) const {
        auto v = find(id);
        ec = v == detail::no_node ? make_error_code(errc::not_found) : std::error_code{};
        return v;
    }
    detail::node_index insert_node(const Id& id) {
        auto v = core_.add_node();
        ids_.push_back(id);
        index_.emplace(id, v);
        return v;
    }
    std::string text(detail::node_index v) const { return detail::format_id(ids_[v], v); }
    std::string quoted(const Id& id) const {
        auto v = find(id);
        std::string s(1, '"');
        s.append(detail::format_id(id, v == detail::no_node ? size() : v));
        s.push_back('"');
        return s;
    }
    static bool follows(const detail::graph_edge& e, edge_filter f) {
        return f == edge_filter::all || e.kind == static_cast<std::uint32_t>(dependency_kind::required);
    }
    bool has_required_edge(detail::node_index from, detail::node_index to) const {
        for (const auto& e : core_.deps(from))
            if (e.target == to && e.kind == static_cast<std::uint32_t>(dependency_kind::required)) return true;
        return false;
    }
    std::uint32_t group_tag(detail::node_index v, std::size_t group) const {
        const auto& deps = core_.deps(v);
        std::size_t gno = 0;
        for (std::size_t i = 0; i < deps.size(); ++gno) {
            if (gno == group) return deps[i].group;
            auto tag = deps[i].group;
            while (i < deps.size() && deps[i].group == tag)
                ++i;
        }
        return no_group;
    }

    std::vector<Id> closure(const Id& id, edge_filter filter, bool down, std::error_code& ec) const {
        std::vector<Id> out;
        auto v = lookup(id, ec);
        if (ec) return out;
        std::vector<std::uint8_t> seen(core_.slots(), 0);
        std::vector<detail::node_index> queue{v};
        seen[v] = 1;
        for (std::size_t i = 0; i < queue.size(); ++i) {
            auto x = queue[i];
            if (down) {
                for (const auto& e : core_.deps(x))
                    if (follows(e, filter) && !seen[e.target]) {
                        seen[e.target] = 1;
                        queue.push_back(e.target);
                    }
            } else {
                for (auto d : core_.dependents(x))
                    if (!seen[d] && (filter == edge_filter::all || has_required_edge(d, x))) {
                        seen[d] = 1;
                        queue.push_back(d);
                    }
            }
        }
        seen[v] = 0;
        for (detail::node_index x = 0; x < core_.slots(); ++x)
            if (seen[x]) out.push_back(ids_[x]);
        return out;
    }

    /// add_dependency between two existing nodes, the hot case: the same steps as add_group
    /// for one member, without its bookkeeping vectors (two allocations per edge).
    bool add_one(const Id& dependent, const Id& dependency, dependency_kind kind, std::error_code& ec,
                 std::vector<Id>* cycle) {
        const auto a = find(dependent);
        const auto b = a == detail::no_node || dependent == dependency ? detail::no_node : find(dependency);
        if (b == detail::no_node) return add_group(dependent, {&dependency, 1}, kind, ec, cycle);
        ec.clear();
        const detail::node_index one[1] = {b};
        if (has_group(a, one, kind)) return false;
        const auto g = core_.new_group(a);
        auto path = core_.order_for_edge(a, b);
        if (!path.empty()) {
            ec = make_error_code(errc::dependency_cycle);
            if (cycle) { // as in add_group: a -> b -> ... -> a in "depends on" direction
                cycle->clear();
                cycle->push_back(ids_[a]);
                for (auto it = path.rbegin(); it != path.rend(); ++it)
                    cycle->push_back(ids_[*it]);
            }
            return false;
        }
        core_.push_edge(a, b, g, kind);
        return true;
    }

    bool add_group(const Id& dependent, std::span<const Id> members, dependency_kind kind, std::error_code& ec,
                   std::vector<Id>* cycle) {
        ec.clear();
        if (members.empty()) {
            ec = make_error_code(errc::invalid_argument);
            return false;
        }
        for (std::size_t i = 0; i < members.size(); ++i)
            for (std::size_t j = i + 1; j < members.size(); ++j)
                if (members[i] == members[j]) {
                    ec = make_error_code(errc::invalid_argument);
                    return false;
                }
        // A self-loop or a cycle through existing nodes is found before anything is inserted.
        for (const auto& m : members)
            if (m == dependent) {
                ec = make_error_code(errc::dependency_cycle);
                if (cycle) *cycle = {dependent, dependent};
                return false;
            }
        const auto a0 = find(dependent);
        if (a0 != detail::no_node) {
            std::vector<detail::node_index> ms;
            bool all_known = true;
            for (const auto& m : members) {
                auto b = find(m);
                if (b == detail::no_node) {
                    all_known = false;
                    break;
                }
                ms.push_back(b);
            }
            if (all_known && has_group(a0, ms, kind)) return false;
        }
        // Existing members first: only they can close a cycle, and nothing is created until
        // they have all passed. Each edge is inserted right after its order check so that the
        // next check respects it; on a cycle the edges of this group are taken out again (the
        // topological order may stay adjusted: it is still valid, and no query depends on
        // which valid order it is).
        detail::node_index a = a0;
        std::uint32_t g = 0;
        std::vector<detail::node_index> ms(members.size(), detail::no_node);
        if (a != detail::no_node) {
            g = core_.new_group(a);
            for (std::size_t i = 0; i < members.size(); ++i) {
                auto b = find(members[i]);
                if (b == detail::no_node) continue;
                ms[i] = b;
                auto path = core_.order_for_edge(a, b);
                if (!path.empty()) {
                    core_.remove_edges_if(a, [g](const detail::graph_edge& e) { return e.group == g; });
                    ec = make_error_code(errc::dependency_cycle);
                    // path runs a ... b along dependents; in "depends on" direction the cycle
                    // is a -> b -> ... -> a.
                    if (cycle) {
                        cycle->clear();
                        cycle->push_back(ids_[a]);
                        for (auto it = path.rbegin(); it != path.rend(); ++it)
                            cycle->push_back(ids_[*it]);
                    }
                    return false;
                }
                core_.push_edge(a, b, g, kind);
            }
        } else {
            a = insert_node(dependent);
            g = core_.new_group(a);
        }
        // New members (created in argument order) cannot close a cycle.
        for (std::size_t i = 0; i < members.size(); ++i) {
            if (ms[i] != detail::no_node) continue;
            auto b = find(members[i]);
            if (b == detail::no_node) b = insert_node(members[i]);
            ms[i] = b;
            core_.order_for_edge(a, b);
            core_.push_edge(a, b, g, kind);
        }
        // The group's edges are the tail of a's list: put them back in declared order.
        core_.reorder_group_tail(a, ms);
        return true;
    }

    bool has_group(detail::node_index a, std::span<const detail::node_index> ms, dependency_kind kind) const {
        const auto& deps = core_.deps(a);
        for (std::size_t i = 0; i < deps.size();) {
            std::size_t j = i;
            while (j < deps.size() && deps[j].group == deps[i].group)
                ++j;
            if (j - i == ms.size() && deps[i].kind == static_cast<std::uint32_t>(kind)) {
                bool same = true;
                for (std::size_t k = 0; k < ms.size() && same; ++k)
                    same = deps[i + k].target == ms[k];
                if (same) return true;
            }
            i = j;
        }
        return false;
    }

    void maybe_compact() {
        if (core_.dead_count() < 1024 || core_.dead_count() < core_.live_count()) return;
        auto remap = core_.compact();
        std::vector<Id> ids;
        ids.reserve(core_.slots());
        for (std::size_t v = 0; v < remap.size(); ++v)
            if (remap[v] != detail::no_node) ids.push_back(std::move(ids_[v]));
        ids_ = std::move(ids);
        for (auto& [id, v] : index_)
            v = remap[v];
    }

    std::string edge_message(const char* op, const Id& dependent, std::span<const Id> members,
                             const std::vector<Id>& cycle) const {
        std::string s = std::string(op) + " " + quoted(dependent) + " on ";
        for (std::size_t i = 0; i < members.size(); ++i) {
            if (i) s += " or ";
            s += quoted(members[i]);
        }
        if (!cycle.empty())
            s += ": would create the cycle " + format_cycle(cycle);
        else if (members.empty())
            s += ": an OR-group needs at least one member";
        else
            s += ": a member is repeated";
        return s;
    }

    detail::graph_core core_;
    std::vector<Id> ids_;                                    // dense index -> id
    std::unordered_map<Id, detail::node_index, Hash> index_; // id -> dense index
};

} // namespace quorumreg
