// quorumreg_lincheck: is a recorded history of a compare-and-set register linearizable?
//
//   quorumreg_lincheck HISTORY.log        (Jepsen's log format; `-` reads standard input)
//
// Prints one line, `linearizable` or `not-linearizable`, and exits 0 or 1; exits 2 (message on
// standard error) for a file it cannot read or parse. With --max-steps N a search that needs
// more steps prints `unknown` and exits 3 instead of guessing.
#include <quorumreg/lincheck.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

int main(int argc, char** argv) {
    std::uint64_t max_steps = 100'000'000;
    std::string file;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--max-steps" && i + 1 < argc) {
            char* end = nullptr;
            max_steps = std::strtoull(argv[++i], &end, 10);
            if (!end || *end || max_steps == 0) {
                std::cerr << "quorumreg_lincheck: --max-steps takes a positive integer\n";
                return 2;
            }
        } else if (a == "-h" || a == "--help") {
            std::cout << "usage: quorumreg_lincheck [--max-steps N] HISTORY.log|-\n";
            return 0;
        } else if (file.empty()) {
            file = a;
        } else {
            std::cerr << "quorumreg_lincheck: one history at a time (usage: quorumreg_lincheck HISTORY.log)\n";
            return 2;
        }
    }
    if (file.empty()) {
        std::cerr << "usage: quorumreg_lincheck [--max-steps N] HISTORY.log|-\n";
        return 2;
    }
    std::string text;
    if (file == "-") {
        text.assign(std::istreambuf_iterator<char>(std::cin), {});
    } else {
        std::ifstream in(file, std::ios::binary);
        if (!in) {
            std::cerr << "quorumreg_lincheck: cannot read " << file << "\n";
            return 2;
        }
        text.assign(std::istreambuf_iterator<char>(in), {});
        if (in.bad()) {
            std::cerr << "quorumreg_lincheck: cannot read " << file << "\n";
            return 2;
        }
    }
    std::error_code ec;
    std::string why;
    auto h = quorumreg::lincheck::parse_jepsen_log(text, ec, &why);
    if (ec) {
        std::cerr << "quorumreg_lincheck: " << file << ": " << why << "\n";
        return 2;
    }
    auto r = quorumreg::lincheck::check(h, max_steps);
    switch (r.answer) {
    case quorumreg::lincheck::verdict::linearizable: std::cout << "linearizable\n"; return 0;
    case quorumreg::lincheck::verdict::not_linearizable: std::cout << "not-linearizable\n"; return 1;
    case quorumreg::lincheck::verdict::unknown: std::cout << "unknown\n"; return 3;
    }
    return 2;
}
