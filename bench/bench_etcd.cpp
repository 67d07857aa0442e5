// etcd_store throughput beside a raw keep-alive HTTP/1.1 put loop, against the same freshly
// started 3-member etcd cluster (tests/etcd_cluster.hpp) in the same run.
//
// - put_single: every iteration does one etcd_store::put and one raw gateway put (a prebuilt
//   JSON body written on one persistent Beast connection), each timed separately. Counters:
//   store_puts_per_s, raw_puts_per_s and ratio = store / raw (1.0: the library costs nothing
//   over the wire protocol; the goal is >= 0.8, fsync-bound either way).
// - put_batched/<n>: one etcd_store::commit of n puts (one transaction, one revision) against
//   n raw single puts. Counters: batched_puts_per_s, raw_puts_per_s, ratio = batched / raw.
// Values are 256 bytes, keys distinct per iteration. Both clients talk to member 1.
#include <quorumreg/stores/etcd_store.hpp>

#include "../tests/etcd_cluster.hpp"

#include <benchmark/benchmark.h>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using clock_type = std::chrono::steady_clock;

qr_test::etcd_cluster* g_cluster = nullptr;

/// The baseline: one keep-alive connection, hand-built JSON, no parsing beyond the status.
class raw_client {
public:
    explicit raw_client(int port) : stream_(ioc_), port_(port) {
        boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"),
                                          static_cast<unsigned short>(port));
        stream_.connect(ep);
    }
    void put(const std::string& key, const std::string& value) {
        http::request<http::string_body> req{http::verb::post, "/v3/kv/put", 11};
        req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
        req.set(http::field::content_type, "application/json");
        req.keep_alive(true);
        req.body() = "{\"key\":\"" + quorumreg::detail::etcd::base64_encode(key) + "\",\"value\":\"" +
                     quorumreg::detail::etcd::base64_encode(value) + "\"}";
        req.prepare_payload();
        http::write(stream_, req);
        http::response<http::string_body> res;
        http::read(stream_, buf_, res);
        if (res.result_int() != 200) throw std::runtime_error("raw put failed: " + res.body());
    }

private:
    boost::asio::io_context ioc_;
    beast::tcp_stream stream_;
    beast::flat_buffer buf_;
    int port_;
};

quorumreg::etcd_store_options options() {
    quorumreg::etcd_store_options o;
    o.endpoints = {g_cluster->client_url(0), g_cluster->client_url(1), g_cluster->client_url(2)};
    o.deadline = std::chrono::seconds(10);
    return o;
}

double seconds(clock_type::duration d) { return std::chrono::duration<double>(d).count(); }

void put_single(benchmark::State& state) {
    quorumreg::etcd_store store(options());
    raw_client raw(g_cluster->at(0).client_port);
    const std::string value(256, 'v');
    clock_type::duration t_store{}, t_raw{};
    std::int64_t i = 0;
    for (auto _ : state) {
        auto k = "bench/single/" + std::to_string(i++);
        auto t0 = clock_type::now();
        store.put(k, value);
        auto t1 = clock_type::now();
        raw.put(k + "r", value);
        auto t2 = clock_type::now();
        t_store += t1 - t0;
        t_raw += t2 - t1;
    }
    double n = static_cast<double>(state.iterations());
    state.counters["store_puts_per_s"] = n / seconds(t_store);
    state.counters["raw_puts_per_s"] = n / seconds(t_raw);
    state.counters["ratio"] = seconds(t_raw) / seconds(t_store);
    state.SetItemsProcessed(state.iterations());
}

void put_batched(benchmark::State& state) {
    const auto batch = static_cast<std::size_t>(state.range(0));
    quorumreg::etcd_store store(options());
    raw_client raw(g_cluster->at(0).client_port);
    const std::string value(256, 'v');
    clock_type::duration t_store{}, t_raw{};
    std::int64_t i = 0;
    for (auto _ : state) {
        quorumreg::store_txn t;
        std::string base = "bench/batch/" + std::to_string(i++) + "/";
        for (std::size_t k = 0; k < batch; ++k)
            t.on_success.push_back(quorumreg::store_op::put(base + std::to_string(k), value));
        auto t0 = clock_type::now();
        store.commit(t);
        auto t1 = clock_type::now();
        for (std::size_t k = 0; k < batch; ++k)
            raw.put(base + "r" + std::to_string(k), value);
        auto t2 = clock_type::now();
        t_store += t1 - t0;
        t_raw += t2 - t1;
    }
    double n = static_cast<double>(state.iterations()) * static_cast<double>(batch);
    state.counters["batched_puts_per_s"] = n / seconds(t_store);
    state.counters["raw_puts_per_s"] = n / seconds(t_raw);
    state.counters["ratio"] = seconds(t_raw) / seconds(t_store);
    state.SetItemsProcessed(static_cast<std::int64_t>(n));
}

BENCHMARK(put_single)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(put_batched)->Arg(16)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();

} // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    qr_test::etcd_cluster cluster(3);
    g_cluster = &cluster;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    g_cluster = nullptr;
    return 0;
}
