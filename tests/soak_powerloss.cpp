// Soak: simulated power cuts on the hive and the directory store (issue 14), the scenarios of
// tests/test_powerloss.cpp at length.
//
//   soak_powerloss [CUTS] [--seed S] [--engine hive|dir] [--scenario NAME] [--verbose]
//
// CUTS per engine (default 100000, or $QUORUMREG_SOAK_ROUNDS); cases use seeds S, S+1, ...
// (default S: random, printed first); each seed picks a scenario unless --scenario names one
// (hive-1w, hive-8w, hive-compact, hive-fallback, hive-torn-header, hive-fresh-dir, hive-dirsync-eio,
// dir-cas, dir-lease, dir-compact, dir-fresh-dir, dir-dirsync-eio). `soak_powerloss 1 --engine E --scenario N --seed S
// --verbose` replays one case and prints every cut and the crash state chosen. Ends with one line `cuts=N acked=A
// lost=L corrupt=C refused=R` (the sum over engines) and exits non-zero unless L == C == R == 0.
#include "powerloss_scenarios.hpp"

#include <cstdlib>
#include <cstring>
#include <iostream>

using namespace qr_powerloss;

int main(int argc, char** argv) {
    std::uint64_t cuts = 100000;
    if (const char* r = std::getenv("QUORUMREG_SOAK_ROUNDS")) cuts = std::strtoull(r, nullptr, 10);
    std::optional<std::uint64_t> seed;
    std::vector<engine> engines{engine::hive, engine::dir};
    std::string scenario;
    bool verbose = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << a << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--seed") {
            seed = std::strtoull(next().c_str(), nullptr, 10);
        } else if (a == "--engine") {
            auto e = next();
            if (e != "hive" && e != "dir") {
                std::cerr << "--engine hive|dir\n";
                return 2;
            }
            engines = {e == "hive" ? engine::hive : engine::dir};
        } else if (a == "--scenario") {
            scenario = next();
        } else if (a == "--verbose") {
            verbose = true;
        } else if (!a.empty() && a[0] != '-') {
            cuts = std::strtoull(a.c_str(), nullptr, 10);
        } else {
            std::cerr << "usage: soak_powerloss [CUTS] [--seed S] [--engine hive|dir] [--scenario NAME] [--verbose]\n";
            return 2;
        }
    }
    if (!scenario.empty()) {
        bool hive = scenario.rfind("hive-", 0) == 0;
        engines = {hive ? engine::hive : engine::dir};
        auto known = scenarios(engines[0]);
        known.push_back(fresh_dir_scenario(engines[0]));
        known.push_back(dirsync_eio_scenario(engines[0]));
        if (std::find(known.begin(), known.end(), scenario) == known.end()) {
            std::cerr << "unknown scenario " << scenario << "\n";
            return 2;
        }
    }
    if (!seed) seed = std::random_device()() % 1000000000u;
    std::cout << "seed " << *seed << ", " << cuts << " cuts per engine" << std::endl;
    scratch dir;
    tally total;
    for (auto e : engines) {
        tally t;
        auto started = std::chrono::steady_clock::now();
        auto report = started;
        for (auto s = *seed; t.cuts < cuts; ++s) {
            run_case(e, scenario.empty() ? pick_scenario(e, s) : scenario, s, dir.path(), t, verbose);
            auto now = std::chrono::steady_clock::now();
            if (now - report > std::chrono::seconds(10)) {
                report = now;
                std::cout << (e == engine::hive ? "hive" : "dir") << ": " << t.cases << " cases, " << t.line()
                          << std::endl;
            }
        }
        auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::cout << (e == engine::hive ? "hive" : "dir") << ": " << t.cases << " cases in " << secs
                  << " s: " << t.line() << "\n"
                  << t.causes() << std::flush;
        total.cuts += t.cuts;
        total.acked += t.acked;
        total.lost += t.lost;
        total.corrupt += t.corrupt;
        total.refused += t.refused;
    }
    std::cout << total.line() << std::endl;
    return total.ok() ? 0 : 1;
}
