// The API's shape (issue 20): quorum_store's non-virtual interface reaches a backend only
// through its do_* hooks, option structs are named after their class (the old names still
// compile, deprecated), and the public vocabulary types live outside detail/.
#include <quorumreg/quorumreg.hpp>
#include <quorumreg/detail/crypto.hpp>
#include <quorumreg/detail/etcd_codec.hpp>
#include <quorumreg/detail/text.hpp>
#include <quorumreg/stores/etcd_store.hpp>
#include <quorumreg/stores/open_store.hpp>

#include "test_support.hpp"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <type_traits>

using namespace quorumreg;
using namespace std::chrono_literals;

namespace {

/// A backend that overrides only the hooks and counts which ones each public call reached.
class counting_store final : public quorum_store {
public:
    std::map<std::string, int> calls;
    /// false: put and erase take quorum_store's defaults (one-operation commits).
    bool native_put_erase = true;

private:
    memory_store inner_;
    void count(const char* hook) { ++calls[hook]; }

    std::string do_describe() const override { return "counting(" + inner_.describe() + ")"; }
    std::string do_identity(std::error_code& ec) override {
        count("identity");
        return inner_.identity(ec);
    }
    std::optional<key_value> do_get(std::string_view k, std::error_code& ec) override {
        count("get");
        return inner_.get(k, ec);
    }
    range_result do_range(std::string_view p, std::string_view a, std::size_t l, std::error_code& ec) override {
        count("range");
        return inner_.range(p, a, l, ec);
    }
    store_revision do_put(std::string_view k, std::string_view v, lease_id l, std::error_code& ec) override {
        if (!native_put_erase) return quorum_store::do_put(k, v, l, ec);
        count("put");
        return inner_.put(k, v, l, ec);
    }
    store_revision do_erase(std::string_view k, std::error_code& ec) override {
        if (!native_put_erase) return quorum_store::do_erase(k, ec);
        count("erase");
        return inner_.erase(k, ec);
    }
    txn_result do_commit(const store_txn& t, std::error_code& ec) override {
        count("commit");
        return inner_.commit(t, ec);
    }
    store_revision do_revision(std::error_code& ec) override {
        count("revision");
        return inner_.revision(ec);
    }
    subscription do_watch(std::string_view p, store_revision f, watch_handler h, std::error_code& ec) override {
        count("watch");
        return inner_.watch(p, f, std::move(h), ec);
    }
    lease_id do_grant_lease(std::chrono::milliseconds t, std::error_code& ec) override {
        count("grant_lease");
        return inner_.grant_lease(t, ec);
    }
    void do_keep_alive(lease_id l, std::error_code& ec) override {
        count("keep_alive");
        inner_.keep_alive(l, ec);
    }
    void do_revoke_lease(lease_id l, std::error_code& ec) override {
        count("revoke_lease");
        inner_.revoke_lease(l, ec);
    }
    std::chrono::milliseconds do_lease_ttl(lease_id l, std::error_code& ec) override {
        count("lease_ttl");
        return inner_.lease_ttl(l, ec);
    }
    void do_set_deadline(std::chrono::milliseconds d) override { inner_.set_deadline(d); }
    std::chrono::milliseconds do_deadline() const override { return inner_.deadline(); }
};

template <class T>
concept has_public_do_get = requires(T& t, std::error_code& ec) {
    t.do_get("k", ec);
};

} // namespace

TEST_SUITE("api") {

    TEST_CASE("a backend that overrides only the do_* hooks gets every public overload, each through one hook") {
        static_assert(!has_public_do_get<quorum_store>, "the hooks are not part of the public interface");
        static_assert(!has_public_do_get<memory_store> && !has_public_do_get<directory_store> &&
                      !has_public_do_get<etcd_store>);
        counting_store s;
        auto r1 = s.put("k", "v1");        // throwing form
        auto r2 = s.put_if("k", "v2", r1); // helper over commit
        CHECK(s.get("k")->value == "v2");  // throwing form
        CHECK(qr_test::code_of([&] { s.put_if("k", "stale", r1); }) == errc::compare_failed);
        CHECK(s.erase_if("k", r2) > r2); // new throwing form
        CHECK(s.list("").empty());       // helper over range
        auto lease = s.grant_lease(30s);
        CHECK(s.lease_ttl(lease) > 0ms); // new throwing form
        auto token = s.acquire_lock("lock", lease, "n1");
        s.release_lock("lock", token);
        CHECK_FALSE(s.get("lock").has_value());
        s.revoke_lease(lease);
        CHECK(qr_test::code_of([&] { s.lease_ttl(lease); }) == errc::lease_expired);

        CHECK(s.calls["put"] == 1);
        CHECK(s.calls["commit"] == 5); // put_if, the stale put_if, erase_if, acquire_lock, release_lock
        CHECK(s.calls["range"] == 1);
        CHECK(s.calls["lease_ttl"] == 2);
        CHECK(s.calls["grant_lease"] == 1);
        CHECK(s.calls["revoke_lease"] == 1);
        CHECK(s.describe() == "counting(mem:memory)");
    }

    TEST_CASE("put and erase default to one-operation commits, with the contract of the primitives") {
        counting_store s;
        s.native_put_erase = false;
        auto r1 = s.put("k", "v1");
        CHECK(r1 > 0);
        CHECK(s.get("k")->value == "v1");
        auto r2 = s.erase("k");
        CHECK(r2 > r1);
        CHECK(s.erase("k") == r2); // an absent key: the current revision, nothing changes
        CHECK(s.revision() == r2);
        std::error_code ec;
        CHECK(s.put("", "v", 0, ec) == 0);
        CHECK(ec == errc::invalid_argument);
        CHECK(s.calls["put"] == 0);
        CHECK(s.calls["erase"] == 0);
        CHECK(s.calls["commit"] == 4);
    }

    TEST_CASE("option structs are named after their class; the old names are the same types, deprecated") {
        static_assert(std::is_same_v<decltype(std::declval<etcd_store&>().options()), const etcd_store_options&>);
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
        static_assert(std::is_same_v<etcd_options, etcd_store_options>);
        static_assert(std::is_same_v<controller_options, service_controller_options>);
        static_assert(std::is_same_v<monitor_options, monitor_controller_options>);
        static_assert(std::is_same_v<checkpoint_options, checkpoint_manager_options>);
        static_assert(std::is_same_v<type_registry_options, resource_type_registry_options>);
        static_assert(std::is_same_v<detail::file_io, file_io>);
        static_assert(std::is_same_v<detail::store_limits, store_limits>);
        std::error_code ec;
        auto s = open_store("mem:", ec, 1234ms); // the old argument order still works
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
        REQUIRE_FALSE(ec);
        CHECK(s->deadline() == 1234ms);
        // Every to_string of the library returns one type.
        static_assert(std::is_same_v<decltype(to_string(value_type::dword)), std::string_view>);
        static_assert(std::is_same_v<decltype(to_string(change_kind::value_set)), std::string_view>);
        static_assert(std::is_same_v<decltype(to_string(service_state::online)), std::string_view>);
        static_assert(std::is_same_v<decltype(to_string(resource_state::online)), std::string_view>);
        static_assert(std::is_same_v<decltype(to_string(event_severity::error)), std::string_view>);
        static_assert(std::is_same_v<decltype(to_string(offline_edit_policy::reject)), std::string_view>);
        // One lifecycle: services and resources share one state type and one spelling.
        static_assert(std::is_same_v<service_state, lifecycle_state> &&
                      std::is_same_v<resource_state, lifecycle_state>);
        static_assert(to_string(resource_state::online_pending) == "online_pending");
        static_assert(is_pending(service_state::offline_pending) && !is_pending(lifecycle_state::failed));
        // One restart policy: the same type and the same window for services and resources.
        static_assert(std::is_same_v<decltype(service_options::restart), restart_policy>);
        static_assert(std::is_same_v<decltype(monitor_controller_options::restart), restart_policy>);
        {
            using tp = std::chrono::steady_clock::time_point;
            restart_window<tp> w;
            const restart_policy p{2, std::chrono::seconds(10)};
            const tp t0{};
            CHECK(w.try_restart(t0, p));
            CHECK(w.try_restart(t0 + std::chrono::seconds(1), p));
            CHECK_FALSE(w.try_restart(t0 + std::chrono::seconds(2), p)); // two within 10 s already
            CHECK(w.size() == 2);
            CHECK(w.try_restart(t0 + std::chrono::seconds(10), p)); // the first left the window at exactly 10 s
            CHECK(w.trim(t0 + std::chrono::seconds(30), p.period) == 0);
        }
        // The public vocabulary is reachable from public headers, outside quorumreg::detail.
        static_assert(std::is_enum_v<dependency_kind>);
        static_assert(std::is_abstract_v<service_clock>);
        static_assert(std::is_move_constructible_v<subscription> && !std::is_copy_constructible_v<subscription>);
        CHECK(id_formatter<int>{}(42) == "42");
        memory_store_options mo;
        mo.limits.max_key_bytes = 3;
        memory_store m(mo);
        m.put("long", "v", 0, ec);
        CHECK(ec == errc::name_too_long);
    }

    TEST_CASE("detail/text.hpp is the one hex, fold and fixed-width layer; the formats it replaced are unchanged") {
        const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
        CHECK(detail::hex_encode(bytes, 4) == "000fa5ff");
        CHECK(detail::hex_encode(std::string_view("\x01\xfe", 2)) == "01fe");
        char buf[8] = {};
        detail::hex_encode_into(buf, bytes, 4);
        CHECK(std::string(buf, 8) == "000fa5ff");
        CHECK(detail::hex_digit_value('7') == 7);
        CHECK(detail::hex_digit_value('b') == 11);
        CHECK(detail::hex_digit_value('B') == 11);
        CHECK(detail::hex_digit_value('g') == -1);
        // SHA-256 of "abc" (FIPS 180-2 example); the three wrappers it replaced agreed on it.
        CHECK(detail::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        detail::digest256 d{};
        REQUIRE(detail::hex_decode(detail::sha256_hex("abc"), d));
        CHECK(d == detail::sha256("abc"));
        CHECK_FALSE(detail::hex_decode(std::string(64, 'x'), d));

        auto a = detail::random_hex_id(), b = detail::random_hex_id();
        CHECK(a.size() == 32);
        CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
        CHECK(a != b);

        CHECK(detail::ascii_folded("SOFTWARE\\Contoso") == "software\\contoso");
        CHECK(detail::ascii_folded("\xc3\x89t\xc3\xa9") == "\xc3\x89t\xc3\xa9"); // "Été": UTF-8 bytes stay as they are
        CHECK(resource_type_registry::fold("Contoso.Cache") == "contoso.cache");
        std::string folded;
        case_insensitive_traits::fold("App", folded);
        CHECK(folded == "app");

        CHECK(detail::fixed_decimal(42) == "00000000000000000042");
        CHECK(detail::fixed_decimal(18446744073709551615ULL) == "18446744073709551615");
        CHECK(detail::fixed_decimal(123456789, 8) == "123456789");   // wider numbers are not cut
        CHECK(detail::fixed_decimal(9) < detail::fixed_decimal(10)); // key order is numeric order
        CHECK(detail::gen_key_suffix(7) == "00000000000000000007");
        CHECK(detail::etcd::chunk_key("c/", "id", 5) == "c/id/00000005");
    }

} // TEST_SUITE
