// The linearizability checker: small histories with known answers, unknown outcomes, keys
// checked independently, the Jepsen log reader, and the 60 reference histories.
#include "test_support.hpp"

#include <quorumreg/lincheck.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

namespace {

using namespace quorumreg::lincheck;

/// Builds an operation: times are [invoked, completed].
operation op(op_kind k, std::optional<std::int64_t> v, std::uint64_t at, std::uint64_t done, outcome r = outcome::ok,
             std::int64_t from = 0, std::string key = {}) {
    operation o;
    o.kind = k;
    o.value = v;
    o.invoked = at;
    o.completed = done;
    o.result = r;
    o.from = from;
    o.key = std::move(key);
    return o;
}
operation rd(std::optional<std::int64_t> v, std::uint64_t at, std::uint64_t done, std::string key = {}) {
    return op(op_kind::read, v, at, done, outcome::ok, 0, std::move(key));
}
operation wr(std::int64_t v, std::uint64_t at, std::uint64_t done, outcome r = outcome::ok, std::string key = {}) {
    return op(op_kind::write, v, at, done, r, 0, std::move(key));
}
operation cas(std::int64_t from, std::int64_t to, std::uint64_t at, std::uint64_t done, outcome r = outcome::ok) {
    return op(op_kind::cas, to, at, done, r, from);
}

bool lin(const history& h) { return check(h).linearizable; }

std::string reference_dir() {
    if (const char* env = std::getenv("QUORUMREG_REFERENCE_HISTORIES")) return env;
    return QUORUMREG_REFERENCE_HISTORIES;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

} // namespace

TEST_SUITE("lincheck") {

    TEST_CASE("sequential histories: a read sees the last write") {
        CHECK(lin({rd(std::nullopt, 1, 2), wr(1, 3, 4), rd(1, 5, 6), wr(2, 7, 8), rd(2, 9, 10)}));
        CHECK(!lin({wr(1, 1, 2), wr(2, 3, 4), rd(1, 5, 6)})); // stale read
        CHECK(!lin({wr(1, 1, 2), rd(std::nullopt, 3, 4)}));   // the write finished before the read began
        CHECK(!lin({rd(7, 1, 2)}));                           // a value nobody wrote
    }

    TEST_CASE("concurrent operations may take effect in either order") {
        // The read overlaps the write: it may see the old or the new value, not a third.
        CHECK(lin({wr(1, 1, 2), wr(2, 3, 6), rd(1, 4, 5)}));
        CHECK(lin({wr(1, 1, 2), wr(2, 3, 6), rd(2, 4, 5)}));
        CHECK(!lin({wr(1, 1, 2), wr(2, 3, 6), rd(3, 4, 5)}));
        // Two reads inside one write must not see new then old (no going back).
        CHECK(!lin({wr(1, 1, 2), wr(2, 3, 10), rd(2, 4, 5), rd(1, 6, 7)}));
        CHECK(lin({wr(1, 1, 2), wr(2, 3, 10), rd(1, 4, 5), rd(2, 6, 7)}));
    }

    TEST_CASE("compare-and-set: an ok cas needs its expected value; a failed one needs another") {
        CHECK(lin({wr(1, 1, 2), cas(1, 5, 3, 4), rd(5, 5, 6)}));
        CHECK(!lin({wr(1, 1, 2), cas(2, 5, 3, 4), rd(5, 5, 6)}));                  // compare could not hold
        CHECK(!lin({wr(1, 1, 2), cas(1, 5, 3, 4, outcome::failed), rd(1, 5, 6)})); // the compare did hold
        CHECK(lin({wr(1, 1, 2), cas(3, 5, 3, 4, outcome::failed), rd(1, 5, 6)}));
    }

    TEST_CASE("unknown outcomes may take effect after their invocation, or never") {
        // A timed-out write seen later: it happened.
        CHECK(lin({wr(1, 1, 2), wr(2, 3, 0, outcome::unknown), rd(2, 10, 11)}));
        // ... or never seen: it did not (or happened after everything).
        CHECK(lin({wr(1, 1, 2), wr(2, 3, 0, outcome::unknown), rd(1, 10, 11)}));
        // But never before its invocation.
        CHECK(!lin({wr(1, 1, 2), rd(2, 3, 4), wr(2, 5, 0, outcome::unknown)}));
        // Once seen, it cannot be undone.
        CHECK(!lin({wr(1, 1, 2), wr(2, 3, 0, outcome::unknown), rd(2, 10, 11), rd(1, 12, 13)}));
        // An unknown cas takes effect only where its compare holds.
        CHECK(lin({wr(1, 1, 2), cas(1, 4, 3, 0, outcome::unknown), rd(4, 10, 11)}));
        CHECK(!lin({wr(1, 1, 2), cas(3, 4, 3, 0, outcome::unknown), rd(4, 10, 11)}));
        // An unknown read says nothing, a failed write did not happen.
        CHECK(lin({wr(1, 1, 2), op(op_kind::read, 9, 3, 4, outcome::unknown), rd(1, 5, 6)}));
        CHECK(lin({wr(1, 1, 2), wr(3, 3, 4, outcome::failed), rd(1, 5, 6)}));
    }

    TEST_CASE("keys are independent registers") {
        // Linearizable per key; as one register the reads would contradict each other.
        history h{wr(1, 1, 2, outcome::ok, "a"), wr(2, 3, 4, outcome::ok, "b"), rd(1, 5, 6, "a"), rd(2, 7, 8, "b")};
        CHECK(lin(h));
        h.push_back(rd(2, 9, 10, "a"));
        auto r = check(h);
        CHECK(r.answer == verdict::not_linearizable);
        CHECK(r.key == "a");
    }

    TEST_CASE("a search over its step budget answers unknown, not a guess") {
        history h;
        for (int i = 0; i < 14; ++i)
            h.push_back(wr(i, 1, 100)); // 14 concurrent writes
        h.push_back(rd(99, 101, 102));  // impossible: explores every order
        CHECK(check(h, 1000).answer == verdict::unknown);
        CHECK(check(h).answer == verdict::not_linearizable);
    }

    TEST_CASE("the Jepsen log reader") {
        std::error_code ec;
        std::string why;
        auto h = parse_jepsen_log("2017-01-01 junk line\n"
                                  "INFO  jepsen.util - 0\t:invoke\t:write\t3\n"
                                  "INFO  jepsen.util - 1\t:invoke\t:cas\t[3 4]\n"
                                  "INFO  jepsen.util - 0\t:ok\t:write\t3\n"
                                  "INFO  jepsen.util - 2\t:invoke\t:read\tnil\n"
                                  "INFO  jepsen.util - 1\t:info\t:cas\t:timed-out\n"
                                  "INFO  jepsen.util - 2\t:ok\t:read\t4\n"
                                  "INFO  jepsen.util - 3\t:invoke\t:read\tnil\n"
                                  "INFO  jepsen.util - 3\t:fail\t:read\t:timed-out\n"
                                  "INFO  jepsen.util - 4\t:invoke\t:write\t9\n",
                                  ec, &why);
        REQUIRE(!ec);
        REQUIRE(h.size() == 5);
        CHECK(h[0].kind == op_kind::write);
        CHECK(h[0].value == 3);
        CHECK(h[0].result == outcome::ok);
        CHECK(h[0].invoked == 2);
        CHECK(h[0].completed == 4);
        CHECK(h[1].kind == op_kind::cas);
        CHECK(h[1].from == 3);
        CHECK(h[1].value == 4);
        CHECK(h[1].result == outcome::unknown);
        CHECK(h[2].value == 4);
        CHECK(h[3].result == outcome::unknown); // :fail :read :timed-out
        CHECK(h[4].result == outcome::unknown); // never completed
        CHECK(check(h).linearizable);           // the timed-out cas took effect before the read

        for (const char* bad :
             {"INFO  jepsen.util - 0\t:invoke\t:frob\t1\n", "INFO  jepsen.util - 0\t:invoke\t:write\tx\n",
              "INFO  jepsen.util - 0\t:invoke\t:cas\t[1]\n", "INFO  jepsen.util - 0\t:ok\t:write\t1\n",
              "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:invoke\t:write\t2\n",
              "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\tabc\n",
              "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:done\t:read\t1\n"}) {
            CAPTURE(bad);
            why.clear();
            auto r = parse_jepsen_log(bad, ec, &why);
            CHECK(ec == quorumreg::errc::corrupt_data);
            CHECK(r.empty());
            CHECK(why.rfind("line ", 0) == 0);
        }
    }

    TEST_CASE("the 60 reference histories get their known verdicts") {
        const auto dir = reference_dir();
        std::ifstream verdicts(dir + "/verdicts.txt");
        if (!verdicts) {
            MESSAGE("no reference histories at " << dir
                                                 << " (set QUORUMREG_REFERENCE_HISTORIES to "
                                                    "../shared/linearizability/jepsen-etcd); skipped");
            return;
        }
        int checked = 0, linearizable = 0;
        for (std::string file, want; verdicts >> file >> want;) {
            CAPTURE(file);
            std::error_code ec;
            std::string why;
            auto h = parse_jepsen_log(slurp(dir + "/" + file), ec, &why);
            REQUIRE_MESSAGE(!ec, why);
            auto r = check(h);
            CHECK(r.answer != verdict::unknown);
            CHECK((r.linearizable ? "linearizable" : "not-linearizable") == want);
            ++checked;
            linearizable += want == "linearizable";
        }
        CHECK(checked == 60);
        CHECK(linearizable == 13);
    }

} // TEST_SUITE
