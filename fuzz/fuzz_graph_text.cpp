// Fuzz target: the dependency-graph text format of `qreg graph` (detail/graph_text.hpp), and the
// dependency_graph operations qreg runs on the result (start waves, DOT, cycle formatting).
//
// Input: the graph file's bytes.
// Invariants:
// - parsing never throws; a failure is errc::invalid_argument with a reason that names the
//   source and line;
// - parsing is deterministic (the same text gives an equal graph);
// - a reported cycle is non-empty and starts and ends at the same service, and its statement's
//   line number is positive;
// - otherwise start_waves() holds every service exactly once, and every dependency of a service
//   (required, OR-group member or order-only) is in an earlier wave; stop_order() is the
//   reverse of start_order(); to_dot() is a digraph.
#include <quorumreg/detail/graph_text.hpp>

#include "fuzz_common.hpp"

#include <map>

namespace qr = quorumreg;
using qr::errc;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 16 * 1024) return 0; // cycle checks are per edge: keep each run short
    auto text = qr_fuzz::as_view(data, size);
    qr::detail::graph_text gt;
    std::string why;
    auto ec = qr::detail::parse_graph_text(text, "fuzz.graph", gt, why);
    qr_fuzz::check_quorumreg_code(ec, "parse_graph_text");
    if (ec) {
        QR_FUZZ_CHECK(ec == errc::invalid_argument, "unexpected error %s", ec.message().c_str());
        QR_FUZZ_CHECK(why.rfind("fuzz.graph:", 0) == 0, "the reason does not name the line: %s", why.c_str());
        return 0;
    }
    qr::detail::graph_text again;
    std::string why2;
    QR_FUZZ_CHECK(!qr::detail::parse_graph_text(text, "fuzz.graph", again, why2));
    QR_FUZZ_CHECK(again.graph == gt.graph && again.cycle == gt.cycle, "parsing is not deterministic");

    if (!gt.cycle.empty()) {
        QR_FUZZ_CHECK(gt.cycle_line > 0 && !gt.cycle_text.empty());
        QR_FUZZ_CHECK(gt.cycle.size() >= 2 && gt.cycle.front() == gt.cycle.back(), "a cycle that does not close");
        QR_FUZZ_CHECK(!gt.graph.format_cycle(gt.cycle).empty());
        return 0;
    }
    auto nodes = gt.graph.nodes();
    auto waves = gt.graph.start_waves();
    std::map<std::string, std::size_t> wave_of;
    for (std::size_t w = 0; w < waves.size(); ++w)
        for (auto& id : waves[w])
            QR_FUZZ_CHECK(wave_of.emplace(id, w).second, "service \"%s\" in two waves", id.c_str());
    QR_FUZZ_CHECK(wave_of.size() == nodes.size(), "%zu services but %zu in the waves", nodes.size(), wave_of.size());
    for (auto& id : nodes) {
        QR_FUZZ_CHECK(wave_of.count(id), "service \"%s\" in no wave", id.c_str());
        for (auto& dep : gt.graph.dependencies_of(id))
            QR_FUZZ_CHECK(wave_of.at(dep) < wave_of.at(id), "\"%s\" starts no earlier than its dependent \"%s\"",
                          dep.c_str(), id.c_str());
    }
    auto start = gt.graph.start_order();
    auto stop = gt.graph.stop_order();
    QR_FUZZ_CHECK(std::equal(start.begin(), start.end(), stop.rbegin(), stop.rend()), "stop order is not reversed");
    auto dot = gt.graph.to_dot();
    QR_FUZZ_CHECK(dot.rfind("digraph", 0) == 0, "DOT output does not start with digraph");
    return 0;
}
