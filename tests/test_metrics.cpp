// Metrics: the registry and its text format, the HTTP endpoint, the hive's series, and a real
// Prometheus server (Debian's package) scraping them.
#include "test_support.hpp"

#include <quorumreg/hive.hpp>
#include <quorumreg/metrics.hpp>
#include <quorumreg/metrics_http.hpp>
#include <quorumreg_support/child_process.hpp>

#include <boost/asio/connect.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>
#include <vector>

namespace {

using namespace quorumreg;
namespace http = boost::beast::http;

struct http_reply {
    unsigned status = 0;
    std::string content_type;
    std::string content_length;
    std::string body;
};

http_reply http_request(std::uint16_t port, http::verb verb, const std::string& target) {
    boost::asio::io_context io;
    boost::beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(10));
    stream.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
    http::request<http::string_body> req(verb, target, 11);
    req.set(http::field::host, "127.0.0.1");
    http::write(stream, req);
    boost::beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.skip(verb == http::verb::head);
    http::read(stream, buf, parser);
    auto res = parser.release();
    boost::beast::error_code ignored;
    stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    return {res.result_int(), std::string(res[http::field::content_type]),
            std::string(res[http::field::content_length]), res.body()};
}

/// Runs `promtool check metrics` on `text`; returns its exit status and output.
std::pair<int, std::string> promtool_check(const std::string& text, const qr_test::temp_dir& dir) {
    auto in = dir.path() / "metrics.txt";
    std::ofstream(in) << text;
    auto out = dir.path() / "promtool.out";
    std::string cmd = "promtool check metrics < '" + in.string() + "' > '" + out.string() + "' 2>&1";
    int rc = std::system(cmd.c_str());
    std::ifstream f(out);
    std::string log((std::istreambuf_iterator<char>(f)), {});
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, log};
}

/// The absolute path of a program on PATH, or empty (child_process execs a path, not a name).
std::string which(const std::string& tool) {
    const char* path = std::getenv("PATH");
    std::string p = path ? path : "/usr/bin:/bin";
    for (std::size_t start = 0; start <= p.size();) {
        auto end = p.find(':', start);
        if (end == std::string::npos) end = p.size();
        auto candidate = std::filesystem::path(p.substr(start, end - start)) / tool;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
        start = end + 1;
    }
    return {};
}
bool have(const char* tool) { return !which(tool).empty(); }

template <class F> void expect_invalid(F&& f) {
    try {
        f();
        FAIL("expected errc::invalid_argument");
    } catch (const quorumreg::error& e) {
        CHECK(e.code() == errc::invalid_argument);
    }
}

} // namespace

TEST_SUITE("metrics") {

    TEST_CASE("counters, gauges and histograms render in the Prometheus text format") {
        metrics_registry m;
        auto& c = m.add_counter("qr_requests_total", "Requests.", {{"kind", "get"}});
        c.inc();
        c.inc(4);
        auto& g = m.add_gauge("qr_depth", "Queue depth.");
        g.set(3);
        g.add(-0.5);
        auto& h = m.add_histogram("qr_latency_seconds", "Latency.", {0.1, 1});
        h.observe(0.05);
        h.observe(0.1); // inclusive upper bound
        h.observe(0.5);
        h.observe(7);
        CHECK(c.value() == 5);
        CHECK(g.value() == doctest::Approx(2.5));
        CHECK(h.count() == 4);
        CHECK(m.render() == "# HELP qr_depth Queue depth.\n"
                            "# TYPE qr_depth gauge\n"
                            "qr_depth 2.5\n"
                            "# HELP qr_latency_seconds Latency.\n"
                            "# TYPE qr_latency_seconds histogram\n"
                            "qr_latency_seconds_bucket{le=\"0.1\"} 2\n"
                            "qr_latency_seconds_bucket{le=\"1\"} 3\n"
                            "qr_latency_seconds_bucket{le=\"+Inf\"} 4\n"
                            "qr_latency_seconds_sum 7.65\n"
                            "qr_latency_seconds_count 4\n"
                            "# HELP qr_requests_total Requests.\n"
                            "# TYPE qr_requests_total counter\n"
                            "qr_requests_total{kind=\"get\"} 5\n");
    }

    TEST_CASE("label values and help text are escaped") {
        metrics_registry m;
        m.add_gauge("qr_g", "line one\nback\\slash", {{"path", "C:\\x \"q\"\nz"}}).set(1);
        CHECK(m.render() ==
              "# HELP qr_g line one\\nback\\\\slash\n# TYPE qr_g gauge\nqr_g{path=\"C:\\\\x \\\"q\\\"\\nz\"} 1\n");
    }

    TEST_CASE("registration is idempotent per name and label values") {
        metrics_registry m;
        auto& a = m.add_counter("qr_x_total", "X.", {{"r", "a"}});
        auto& b = m.add_counter("qr_x_total", "X.", {{"r", "b"}});
        CHECK(&a == &m.add_counter("qr_x_total", "X.", {{"r", "a"}}));
        CHECK(&a != &b);
    }

    TEST_CASE("bad names and conflicting registrations are invalid_argument and change nothing") {
        metrics_registry m;
        m.add_counter("qr_x_total", "X.", {{"r", "a"}}).inc();
        const auto before = m.render();
        expect_invalid([&] { m.add_counter("qr_x", "no _total suffix"); });
        expect_invalid([&] { m.add_gauge("9starts_with_digit", "bad"); });
        expect_invalid([&] { m.add_gauge("has-dash", "bad"); });
        expect_invalid([&] { m.add_gauge("qr_ok", "bad label", {{"__reserved", "v"}}); });
        expect_invalid([&] { m.add_gauge("qr_ok", "bad label", {{"a-b", "v"}}); });
        expect_invalid([&] { m.add_gauge("qr_ok", "twice", {{"a", "1"}, {"a", "2"}}); });
        expect_invalid([&] { m.add_gauge("qr_x_total", "X."); });                          // type differs
        expect_invalid([&] { m.add_counter("qr_x_total", "Other help.", {{"r", "a"}}); }); // help differs
        expect_invalid([&] { m.add_counter("qr_x_total", "X.", {{"s", "a"}}); });          // label names differ
        expect_invalid([&] { m.add_histogram("qr_h", "H.", {}); });
        expect_invalid([&] { m.add_histogram("qr_h", "H.", {1, 1}); });
        expect_invalid([&] { m.add_histogram("qr_h", "H.", {1, std::numeric_limits<double>::infinity()}); });
        expect_invalid([&] { m.add_histogram("qr_h", "H.", {1}, {{"le", "x"}}); });
        CHECK(m.render() == before);
    }

    TEST_CASE("collectors report at render time, merged in name order") {
        metrics_registry m;
        m.add_gauge("qr_b", "B.").set(2);
        std::uint64_t seen = 7;
        auto id = m.add_collector([&](metric_writer& w) {
            w.counter("qr_a_total", "A.", {{"k", "v"}}, seen);
            w.gauge("qr_c", "C.", {}, 0.25);
        });
        CHECK(m.render() == "# HELP qr_a_total A.\n# TYPE qr_a_total counter\nqr_a_total{k=\"v\"} 7\n"
                            "# HELP qr_b B.\n# TYPE qr_b gauge\nqr_b 2\n"
                            "# HELP qr_c C.\n# TYPE qr_c gauge\nqr_c 0.25\n");
        seen = 9;
        CHECK(m.render().find("qr_a_total{k=\"v\"} 9\n") != std::string::npos);
        m.remove_collector(id);
        CHECK(m.render() == "# HELP qr_b B.\n# TYPE qr_b gauge\nqr_b 2\n");
        m.add_collector([](metric_writer& w) { w.gauge("qr_b", "B.", {}, 1); });
        expect_invalid([&] { (void)m.render(); }); // a collector may not shadow a registered metric
    }

    TEST_CASE("concurrent updates are all counted") {
        metrics_registry m;
        auto& c = m.add_counter("qr_n_total", "N.");
        auto& h = m.add_histogram("qr_v", "V.", {1, 2, 3});
        std::vector<std::thread> ts;
        std::atomic<bool> stop{false};
        std::thread scraper([&] {
            while (!stop)
                (void)m.render(); // renders while writers write (TSan checks the races)
        });
        for (int t = 0; t < 4; ++t)
            ts.emplace_back([&, t] {
                for (int i = 0; i < 10000; ++i) {
                    c.inc();
                    h.observe(t);
                }
            });
        for (auto& t : ts)
            t.join();
        stop = true;
        scraper.join();
        CHECK(c.value() == 40000);
        CHECK(h.count() == 40000);
        CHECK(h.bucket_count(0) == 20000); // observations 0 and 1 are <= 1
        CHECK(h.sum() == doctest::Approx(10000.0 * (0 + 1 + 2 + 3)));
    }

    TEST_CASE("the hive reports commits, syncs, batch sizes and its journal size") {
        qr_test::temp_dir dir("metrics-hive");
        metrics_registry m;
        hive_options o;
        o.metrics = &m;
        o.metrics_name = "node1";
        {
            hive h(dir.path() / "h", o);
            std::vector<std::thread> ts;
            for (int t = 0; t < 8; ++t)
                ts.emplace_back([&, t] {
                    for (int i = 0; i < 25; ++i)
                        h.set_value("App\\T" + std::to_string(t), "V", value::dword(std::uint32_t(i)));
                });
            for (auto& t : ts)
                t.join();
            std::error_code ec;
            h.delete_key("App\\Missing", ec); // fails inside the commit: counted, applies nothing
            CHECK(ec == errc::key_not_found);
        }
        const metric_labels l{{"hive", "node1"}};
        auto& commits =
            m.add_counter("quorumreg_hive_commits_total", "Hive transactions committed by this process.", l);
        auto& syncs =
            m.add_counter("quorumreg_hive_syncs_total", "fdatasync calls on the hive journal by this process.", l);
        auto& batch = m.add_histogram("quorumreg_hive_commit_batch_size",
                                      "Transactions per group-commit journal frame.", power_of_two_buckets(10), l);
        auto& latency = m.add_histogram("quorumreg_hive_commit_seconds",
                                        "Hive commit latency, submit to durable return.", latency_buckets(), l);
        auto& failures = m.add_counter("quorumreg_hive_commit_failures_total",
                                       "Hive transactions that failed (nothing applied).", l);
        CHECK(commits.value() >= 200); // 200 set_value calls (creating a key may be its own commit)
        CHECK(failures.value() == 1);
        CHECK(latency.count() >= 200);
        // Every acknowledged transaction was in exactly one synced frame.
        CHECK(batch.sum() == doctest::Approx(static_cast<double>(commits.value())));
        CHECK(syncs.value() >= batch.count());
        CHECK(syncs.value() <= commits.value() + 2); // group commit never syncs more than once per commit
        qr_test::temp_dir scratch("promtool");
        if (have("promtool")) {
            const auto checked = promtool_check(m.render(), scratch);
            INFO(checked.second);
            CHECK(checked.first == 0);
        } else {
            MESSAGE("promtool not installed (Debian package prometheus); format check skipped");
        }
    }

    TEST_CASE("metrics_server serves GET/HEAD /metrics, 404 elsewhere, 405 for other methods") {
        metrics_registry m;
        m.add_counter("qr_hits_total", "Hits.").inc(3);
        metrics_server srv(m);
        REQUIRE(srv.port() != 0);
        auto r = http_request(srv.port(), http::verb::get, "/metrics");
        CHECK(r.status == 200);
        CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
        CHECK(r.body == m.render());
        auto h = http_request(srv.port(), http::verb::head, "/metrics");
        CHECK(h.status == 200);
        CHECK(h.body.empty());
        CHECK(h.content_length == std::to_string(m.render().size()));
        CHECK(http_request(srv.port(), http::verb::get, "/other").status == 404);
        CHECK(http_request(srv.port(), http::verb::post, "/metrics").status == 405);
        srv.stop();
        srv.stop(); // idempotent
    }

    TEST_CASE("metrics_server refuses a bad address or a port in use with a clear error") {
        metrics_registry m;
        try {
            metrics_server bad(m, {.address = "not-an-ip"});
            FAIL("expected an error");
        } catch (const quorumreg::error& e) {
            CHECK(e.code() == errc::invalid_argument);
        }
        metrics_server first(m);
        try {
            metrics_server second(m, {.port = first.port()});
            FAIL("expected an error");
        } catch (const quorumreg::error& e) {
            CHECK(e.code() == errc::io_error);
            CHECK(std::string(e.what()).find(std::to_string(first.port())) != std::string::npos);
        }
    }

    TEST_CASE("a real Prometheus server scrapes the hive's metrics") {
        if (!have("prometheus")) {
            MESSAGE("prometheus not installed (Debian package prometheus); scrape test skipped");
            return;
        }
        qr_test::temp_dir dir("metrics-prom");
        metrics_registry m;
        hive_options o;
        o.metrics = &m;
        o.metrics_name = "scraped";
        hive h(dir.path() / "h", o);
        for (int i = 0; i < 37; ++i)
            h.set_value("App", "V" + std::to_string(i), value::dword(std::uint32_t(i)));
        auto& commits = m.add_counter("quorumreg_hive_commits_total", "Hive transactions committed by this process.",
                                      {{"hive", "scraped"}});
        const auto expected = commits.value();
        REQUIRE(expected >= 37);
        metrics_server srv(m);

        // Prometheus on an ephemeral port of its own: take one from the kernel, then hand it over.
        std::uint16_t prom_port = 0;
        {
            metrics_server probe(m);
            prom_port = probe.port();
        }
        std::ofstream(dir.path() / "prometheus.yml")
            << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
               "scrape_configs:\n  - job_name: quorumreg\n    static_configs:\n"
               "      - targets: ['127.0.0.1:"
            << srv.port() << "']\n";
        qr_support::child_process prom(
            {which("prometheus"), "--config.file=" + (dir.path() / "prometheus.yml").string(),
             "--storage.tsdb.path=" + (dir.path() / "tsdb").string(),
             "--web.listen-address=127.0.0.1:" + std::to_string(prom_port), "--log.level=warn"});
        // Poll the query API until the scraped value appears (bounded: 30 s).
        std::string got;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (std::chrono::steady_clock::now() < deadline) {
            try {
                auto r = http_request(prom_port, http::verb::get,
                                      "/api/v1/query?query=quorumreg_hive_commits_total%7Bhive%3D%22scraped%22%7D");
                if (r.status == 200) {
                    auto v = boost::json::parse(r.body);
                    auto& result = v.at("data").at("result").as_array();
                    if (!result.empty()) {
                        got = std::string(result.at(0).at("value").as_array().at(1).as_string());
                        break;
                    }
                }
            } catch (const std::exception&) {
                // not listening yet
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        CHECK(got == std::to_string(expected));
        // The scrape itself succeeded (Prometheus's own `up` series for our target).
        auto up = http_request(prom_port, http::verb::get, "/api/v1/query?query=up%7Bjob%3D%22quorumreg%22%7D");
        CHECK(up.body.find("\"1\"") != std::string::npos);
    }

} // TEST_SUITE
