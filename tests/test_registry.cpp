#include <quorumreg/registry.hpp>

#include "test_support.hpp"

#include <atomic>
#include <random>
#include <thread>

using namespace quorumreg;

using qr_test::code_of;

TEST_SUITE("registry") {

    TEST_CASE("names are case-insensitive and case-preserving") {
        registry reg;
        reg.set_value("Software/Contoso/App", "Port", value::dword(8080));
        CHECK(reg.get_value("SOFTWARE\\contoso\\APP", "port").as_dword() == 8080);
        CHECK(reg.subkeys("software") == std::vector<std::string>{"Contoso"});
        reg.set_value("software/CONTOSO/app", "PORT", value::dword(9090));
        auto vals = reg.values("Software/Contoso/App");
        REQUIRE(vals.size() == 1);
        CHECK(vals[0].name == "Port"); // first-written case is kept
        CHECK(vals[0].data.as_dword() == 9090);
        CHECK(reg.info("software/contoso/app").name == "App");
    }

    TEST_CASE("case-sensitive traits keep differently cased names apart") {
        basic_registry<case_sensitive_traits> reg;
        reg.set_value("A/b", "x", value::dword(1));
        reg.set_value("a/B", "x", value::dword(2));
        CHECK(reg.subkeys("").size() == 2);
        CHECK(reg.get_value("A/b", "x").as_dword() == 1);
        CHECK(code_of([&] { (void)reg.get_value("A/B", "x"); }) == errc::key_not_found);
    }

    TEST_CASE("non-ASCII names compare byte-wise") {
        registry reg;
        reg.create_key("\xC3\x89t\xC3\xA9"); // "Été"
        reg.create_key("\xC3\xA9t\xC3\xA9"); // "été": different first byte sequence
        CHECK(reg.subkeys("").size() == 2);
    }

    TEST_CASE("every rejected path form has its own error") {
        registry reg;
        std::error_code ec;
        reg.create_key("a//b", ec);
        CHECK(ec == errc::invalid_path);
        reg.create_key("a/./b", ec);
        CHECK(ec == errc::invalid_path);
        reg.create_key("a/../b", ec);
        CHECK(ec == errc::invalid_path);
        reg.create_key("/a", ec);
        CHECK(ec == errc::invalid_path);
        reg.create_key("a/", ec);
        CHECK(ec == errc::invalid_path);
        reg.create_key(std::string("a\0b", 3), ec);
        CHECK(ec == errc::invalid_path);
        reg.create_key(std::string(256, 'n'), ec);
        CHECK(ec == errc::name_too_long);
        reg.create_key(std::string(255, 'n'), ec);
        CHECK_FALSE(ec);
        std::string deep;
        for (int i = 0; i < 513; ++i)
            deep += (i ? "/k" : "k");
        reg.create_key(deep, ec);
        CHECK(ec == errc::path_too_deep);
        deep = deep.substr(0, deep.size() - 2); // 512 components is allowed
        reg.create_key(deep, ec);
        CHECK_FALSE(ec);
        reg.delete_key("", ec);
        CHECK(ec == errc::invalid_path);
        reg.set_value("k", std::string("v\0", 2), value::dword(1), ec);
        CHECK(ec == errc::invalid_path);
        // Nothing was created by the failing calls.
        CHECK_FALSE(reg.key_exists("a"));
    }

    TEST_CASE("the throwing overloads name the operation and the object") {
        registry reg;
        try {
            (void)reg.get_value("Software/None", "Port");
            FAIL("expected an exception");
        } catch (const error& e) {
            CHECK(e.code() == errc::key_not_found);
            CHECK(std::string(e.what()) == "get_value \"Software/None\" \"Port\": key not found");
        }
        try {
            reg.set_value("a//b", "x", value::dword(1));
            FAIL("expected an exception");
        } catch (const error& e) {
            CHECK(std::string(e.what()) == "set_value \"a//b\" \"x\" (empty component): invalid key path");
        }
    }

    TEST_CASE("each value type round-trips") {
        registry reg;
        reg.set_value("T", "s", value::string("hello"));
        reg.set_value("T", "e", value::expand_string("%HOME%/x"));
        reg.set_value("T", "m", value::multi_string({"a", "", "c"}));
        reg.set_value("T", "d", value::dword(0xFFFFFFFFu));
        reg.set_value("T", "q", value::qword(0x1234567890ABCDEFull));
        reg.set_value("T", "b", value::binary(std::string_view("\x00\x01\xFF", 3)));
        reg.set_value("T", "", value::string("default"));
        CHECK(reg.get_value("T", "s").as_string() == "hello");
        CHECK(reg.get_value("T", "e").type() == value_type::expand_string);
        CHECK(reg.get_value("T", "e").as_string() == "%HOME%/x");
        CHECK(reg.get_value("T", "m").as_multi_string() == std::vector<std::string>{"a", "", "c"});
        CHECK(reg.get_value("T", "d").as_dword() == 0xFFFFFFFFu);
        CHECK(reg.get_value("T", "q").as_qword() == 0x1234567890ABCDEFull);
        CHECK(reg.get_value("T", "b").as_binary() == value::bytes{0, 1, 0xFF});
        CHECK(reg.get_value("T", "").as_string() == "default");
        CHECK(code_of([&] { (void)reg.get_value("T", "d").as_string(); }) == errc::type_mismatch);
        std::error_code ec;
        CHECK(reg.get_value("T", "d").as_qword(ec) == 0);
        CHECK(ec == errc::type_mismatch);
    }

    TEST_CASE("value size limit is enforced and configurable") {
        registry reg;
        std::error_code ec;
        reg.set_value("k", "big", value::binary(std::string(1024 * 1024, 'x')), ec);
        CHECK_FALSE(ec);
        reg.set_value("k", "big", value::binary(std::string(1024 * 1024 + 1, 'x')), ec);
        CHECK(ec == errc::value_too_large);
        CHECK(reg.get_value("k", "big").as_binary().size() == 1024 * 1024); // old value intact
        registry small(registry_limits{.max_value_size = 16});
        small.set_value("k", "s", value::string(std::string(17, 'y')), ec);
        CHECK(ec == errc::value_too_large);
        small.set_value("k", "m", value::multi_string({"12345678", "1234567"}), ec); // 9 + 8 = 17
        CHECK(ec == errc::value_too_large);
    }

    TEST_CASE("keys: create, enumerate, delete recursively, revisions") {
        registry reg;
        CHECK(reg.revision() == 0);
        reg.create_key("A/B/C");
        auto r1 = reg.revision();
        CHECK(r1 == 1);
        CHECK(reg.key_exists("a/b/c"));
        reg.create_key("A/B/C"); // idempotent: no change, but a committed transaction
        reg.set_value("A/B", "v", value::dword(1));
        CHECK(reg.info("A/B").revision == reg.revision());
        CHECK(reg.info("A/B/C").revision == r1);
        CHECK(reg.info("A/B").value_count == 1);
        CHECK(reg.info("A/B").subkey_count == 1);
        reg.delete_key("a/b");
        CHECK_FALSE(reg.key_exists("A/B/C"));
        CHECK(reg.key_exists("A"));
        CHECK(reg.info("A").revision == reg.revision()); // parent saw a subkey disappear
        std::error_code ec;
        reg.delete_key("A/B", ec);
        CHECK(ec == errc::key_not_found);
        reg.delete_value("A", "none", ec);
        CHECK(ec == errc::value_not_found);
        reg.delete_value("Nope", "none", ec);
        CHECK(ec == errc::key_not_found);
        CHECK(reg.find_value("A", "none") == std::nullopt);
    }

    TEST_CASE("transactions are all or nothing") {
        registry reg;
        reg.set_value("App", "keep", value::dword(1));
        auto before = reg.export_subtree("");
        auto rev = reg.revision();
        transaction txn;
        txn.create_key("App/New/Deep")
            .set_value("App", "keep", value::dword(2))
            .set_value("App/New", "x", value::string("y"))
            .delete_key("App/Other") // fails: absent
            .set_value("App", "z", value::dword(3));
        std::error_code ec;
        reg.commit(txn, ec);
        CHECK(ec == errc::key_not_found);
        CHECK(reg.export_subtree("") == before);
        CHECK(reg.revision() == rev);
        try {
            reg.commit(txn);
            FAIL("expected an exception");
        } catch (const error& e) {
            CHECK(std::string(e.what()) == "commit: operation 4 of 5: delete_key \"App/Other\": key not found");
        }

        transaction ok;
        ok.set_value("App", "a", value::dword(1)).set_value("App", "b", value::dword(2)).delete_value("App", "keep");
        auto r = reg.commit(ok);
        CHECK(r == rev + 1);
        CHECK(reg.values("App").size() == 2);
    }

    TEST_CASE("require_revision gives optimistic concurrency") {
        registry reg;
        reg.set_value("K", "v", value::dword(1));
        auto rev = reg.info("K").revision;
        transaction t1;
        t1.require_revision("K", rev).set_value("K", "v", value::dword(2));
        reg.commit(t1);
        std::error_code ec;
        reg.commit(t1, ec); // K changed since `rev`
        CHECK(ec == errc::revision_mismatch);
        transaction create_only;
        create_only.require_revision("Fresh", 0).create_key("Fresh");
        reg.commit(create_only);
        reg.commit(create_only, ec);
        CHECK(ec == errc::revision_mismatch);
    }

    TEST_CASE("watches report each kind of change with revision") {
        registry reg;
        std::vector<change_event> key_events, tree_events;
        auto k = reg.watch("App", watch_scope::key, [&](const change_event& e) { key_events.push_back(e); });
        auto t = reg.watch("App", watch_scope::subtree, [&](const change_event& e) { tree_events.push_back(e); });

        reg.create_key("App");                                            // key_created App
        reg.set_value("App", "v", value::dword(1));                       // value_set
        reg.create_key("App/Child/Grand");                                // 2 x key_created
        reg.set_value("App/Child/Grand", "g", value::dword(1));           // deep: subtree only
        reg.delete_value("App", "v");                                     // value_deleted
        reg.import_subtree("App/Child", reg.export_subtree("App/Child")); // subtree_replaced
        reg.delete_key("App");                                            // key_deleted
        reg.set_value("Other", "x", value::dword(1));                     // unrelated

        std::vector<change_kind> kinds;
        for (auto& e : key_events)
            kinds.push_back(e.kind);
        CHECK(kinds == std::vector<change_kind>{change_kind::key_created, change_kind::value_set,
                                                change_kind::key_created, change_kind::value_deleted,
                                                change_kind::key_deleted});
        REQUIRE(tree_events.size() == 8);
        CHECK(tree_events[3].kind == change_kind::key_created);
        CHECK(tree_events[3].key_path == "App\\Child\\Grand");
        CHECK(tree_events[4].kind == change_kind::value_set);
        CHECK(tree_events[4].value_name == "g");
        CHECK(tree_events[6].kind == change_kind::subtree_replaced);
        CHECK(tree_events.back().kind == change_kind::key_deleted);
        for (std::size_t i = 1; i < tree_events.size(); ++i)
            CHECK(tree_events[i].revision >= tree_events[i - 1].revision);
        CHECK(tree_events.back().revision == reg.revision() - 1);

        // Deleting an ancestor reaches a watch below it.
        reg.create_key("X/Y/Z");
        int deep = 0;
        auto d = reg.watch("X/Y/Z", watch_scope::key, [&](const change_event& e) {
            if (e.kind == change_kind::key_deleted) ++deep;
        });
        reg.delete_key("X");
        CHECK(deep == 1);

        // A reset subscription no longer fires.
        t.reset();
        reg.set_value("App", "again", value::dword(1));
        CHECK(tree_events.size() == 8);
    }

    TEST_CASE("a callback may write to the registry and drop its own subscription") {
        registry reg;
        int calls = 0;
        subscription sub;
        sub = reg.watch("Trigger", watch_scope::key, [&](const change_event&) {
            ++calls;
            reg.set_value("Echo", "n", value::dword(static_cast<std::uint32_t>(calls)));
            sub.reset();
        });
        reg.set_value("Trigger", "t", value::dword(1));
        reg.set_value("Trigger", "t", value::dword(2));
        CHECK(calls == 1);
        CHECK(reg.get_value("Echo", "n").as_dword() == 1);
    }

    TEST_CASE("a failed transaction emits no event") {
        registry reg;
        int n = 0;
        auto s = reg.watch("", watch_scope::subtree, [&](const change_event&) { ++n; });
        std::error_code ec;
        reg.commit(transaction().set_value("A", "x", value::dword(1)).delete_key("Missing"), ec);
        CHECK(ec);
        CHECK(n == 0);
    }

    TEST_CASE("concurrent readers and writers see whole transactions") {
        registry reg;
        constexpr int writers = 4, per_writer = 300;
        std::atomic<bool> stop{false};
        std::atomic<int> torn{0};
        std::atomic<int> events{0};
        auto sub = reg.watch("", watch_scope::subtree, [&](const change_event&) { ++events; });
        std::vector<std::thread> threads;
        for (int w = 0; w < writers; ++w) {
            threads.emplace_back([&, w] {
                for (int i = 0; i < per_writer; ++i) {
                    transaction txn;
                    auto key = "W" + std::to_string(w);
                    txn.set_value(key, "a", value::dword(static_cast<std::uint32_t>(i)))
                        .set_value(key, "b", value::dword(static_cast<std::uint32_t>(i)));
                    reg.commit(txn);
                }
            });
        }
        std::vector<std::thread> readers;
        for (int r = 0; r < 2; ++r) {
            readers.emplace_back([&] {
                while (!stop) {
                    for (int w = 0; w < writers; ++w) {
                        std::error_code ec;
                        auto entries = reg.values("W" + std::to_string(w), ec);
                        if (!ec && entries.size() == 2 && !(entries[0].data == entries[1].data)) ++torn;
                    }
                }
            });
        }
        for (auto& t : threads)
            t.join();
        stop = true;
        for (auto& t : readers)
            t.join();
        CHECK(torn == 0);
        CHECK(reg.revision() == writers * per_writer);
        for (int w = 0; w < writers; ++w)
            CHECK(reg.get_value("W" + std::to_string(w), "a").as_dword() == per_writer - 1);
        // The first commit of each writer also creates its key: 2 value events + 1 key event.
        CHECK(events == writers * per_writer * 2 + writers);
    }

    TEST_CASE("subtree serialization round-trips and is deterministic") {
        registry a;
        a.set_value("Root/S", "s", value::string("x"));
        a.set_value("Root/S/T", "m", value::multi_string({"1", "2"}));
        a.set_value("Root", "q", value::qword(7));
        a.set_value("Root", "B", value::binary(std::string_view("\0\1", 2)));
        a.create_key("Root/Empty");
        auto blob = a.export_subtree("Root");
        registry b;
        b.set_value("Elsewhere/Old", "gone", value::dword(1));
        b.import_subtree("Elsewhere", blob);
        CHECK_FALSE(b.key_exists("Elsewhere/Old"));
        CHECK(b.get_value("Elsewhere/S/T", "m").as_multi_string() == std::vector<std::string>{"1", "2"});
        CHECK(b.key_exists("Elsewhere/Empty"));
        b.import_subtree("Root", blob);
        CHECK(b.export_subtree("Root") == blob);
    }

    TEST_CASE("decoding rejects truncated, bit-flipped and huge-length inputs") {
        registry a;
        for (int i = 0; i < 20; ++i)
            a.set_value("R/K" + std::to_string(i), "v", value::string(std::string(i, 'z')));
        auto blob = a.export_subtree("R");
        registry b;
        auto before = b.revision();
        std::error_code ec;
        for (std::size_t cut = 0; cut < blob.size(); cut += 7) {
            b.import_subtree("X", blob.substr(0, cut), ec);
            CHECK(ec == errc::corrupt_data);
        }
        std::mt19937 rng(42);
        for (int i = 0; i < 200; ++i) {
            auto bad = blob;
            auto pos = rng() % bad.size();
            bad[pos] = static_cast<char>(bad[pos] ^ (1 << (rng() % 8)));
            b.import_subtree("X", bad, ec);
            CHECK(ec);
        }
        // A correct checksum around a huge declared count: rejected without allocating.
        std::string evil = "QRST";
        evil += '\x01';
        evil += '\x00';
        evil += '\x00';                                 // root name ""
        evil += "\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F"; // value count ~ 2^63
        std::string framed = evil;
        detail::byte_writer w(framed);
        w.u32le(detail::crc32c(evil));
        b.import_subtree("X", framed, ec);
        CHECK(ec == errc::corrupt_data);
        // A newer format version is refused as such.
        std::string newer = blob.substr(0, blob.size() - 4);
        newer[4] = 9;
        detail::byte_writer w2(newer);
        w2.u32le(detail::crc32c(std::string_view(newer)));
        b.import_subtree("X", newer, ec);
        CHECK(ec == errc::unsupported_version);
        CHECK(b.revision() == before);
        CHECK_FALSE(b.key_exists("X"));
    }

    TEST_CASE("transactions encode and decode for journals") {
        transaction txn;
        txn.create_key("a")
            .set_value("a", "v", value::multi_string({"x"}))
            .delete_value("a", "w")
            .require_revision("a", 5)
            .replace_subtree("b", "blob")
            .delete_key("c");
        std::string bytes;
        detail::encode_operations(bytes, txn.operations());
        detail::byte_reader r(bytes);
        std::vector<operation> back;
        REQUIRE_FALSE(detail::decode_operations(r, back));
        REQUIRE(back.size() == 6);
        CHECK(back[1].data == value::multi_string({"x"}));
        CHECK(back[3].revision == 5);
        CHECK(back[4].blob == "blob");
        for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
            detail::byte_reader t(std::string_view(bytes).substr(0, cut));
            CHECK(detail::decode_operations(t, back));
        }
    }
}
