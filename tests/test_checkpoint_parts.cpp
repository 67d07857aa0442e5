// The parts of checkpoint.hpp, each on its own: format, key layout, read-only catalog and the
// offline-edit decision.
#include <quorumreg/checkpoint/catalog.hpp>
#include <quorumreg/checkpoint/format.hpp>
#include <quorumreg/checkpoint/layout.hpp>
#include <quorumreg/detail/checkpoint_decision.hpp>

#include <quorumreg/checkpoint.hpp>
#include <quorumreg/stores/memory_store.hpp>

#include "test_support.hpp"

#include <doctest/doctest.h>

using namespace quorumreg;

TEST_SUITE("checkpoint_parts") {
    TEST_CASE("format: a blob round-trips with its flags; version and HMAC are checked") {
        detail::checkpoint_blob b;
        b.resource = "R";
        b.subtree = "A\\B";
        b.generation = 300;
        b.writer = "n1";
        b.time_ms = 1234;
        b.content = std::string("x\0y", 3);
        auto enc = detail::encode_checkpoint(b, "key");
        detail::checkpoint_blob back;
        std::string why, sha;
        REQUIRE_FALSE(detail::decode_checkpoint(enc, "key", back, why, &sha));
        CHECK(back.generation == 300);
        CHECK(back.content == b.content);
        CHECK(sha == detail::hex_encode(detail::sha256(b.content)));
        CHECK_FALSE(detail::decode_checkpoint(enc, "", back, why)); // MAC present, not required
        b.absent = true;
        b.content.clear();
        auto absent = detail::encode_checkpoint(b, "");
        REQUIRE_FALSE(detail::decode_checkpoint(absent, "", back, why));
        CHECK(back.absent);
        CHECK(detail::decode_checkpoint(absent, "key", back, why) == errc::checkpoint_corrupt); // no MAC
        auto future = absent;
        future[4] = 2; // version byte; the CRC is fixed up so only the version check can fail
        future.resize(future.size() - 4);
        detail::byte_writer w(future);
        w.u32le(detail::crc32c(future));
        CHECK(detail::decode_checkpoint(future, "", back, why) == errc::unsupported_version);
    }

    TEST_CASE("layout: every key of a resource is under its escaped prefix and maps back to it") {
        checkpoint_layout l("p/");
        CHECK(l.owner_key("a/b") == "p/a%2Fb/owner");
        CHECK(l.registration_key("r", "S") == "p/r/subtrees/S");
        CHECK(l.latest_key("r", "S") == "p/r/data/S/latest");
        CHECK(l.generation_key("r", "S", 7) == "p/r/data/S/g/00000000000000000007");
        CHECK(l.conflict_key("r", "S", "id") == "p/r/conflicts/S/id");
        for (const std::string& name :
             std::vector<std::string>{"plain", "a/b", "100%", std::string("nul\0x", 5), "..", "é"}) {
            CHECK(l.resource_of(l.owner_key(name)) == name);
            CHECK(l.resource_of(l.generation_key(name, "S", 1)) == name);
        }
        CHECK_FALSE(l.resource_of("q/r/owner"));
        CHECK_FALSE(l.resource_of("p/"));
        CHECK_FALSE(l.resource_of("p/%4/owner")); // malformed escape
        CHECK(checkpoint_layout::is_generation_key(l.generation_key("r", "S", 1)));
        CHECK_FALSE(checkpoint_layout::is_generation_key(l.latest_key("r", "S")));
        checkpoint_subtree_name a, b;
        std::string why;
        REQUIRE_FALSE(make_checkpoint_subtree_name("Software/Contoso", {}, a, why));
        REQUIRE_FALSE(make_checkpoint_subtree_name("SOFTWARE\\contoso", {}, b, why));
        CHECK(a.esc == b.esc); // two spellings of one key share its store keys
        CHECK(make_checkpoint_subtree_name("", {}, a, why) == errc::invalid_argument);
        CHECK(make_checkpoint_subtree_name("a/../b", {}, a, why) == errc::invalid_path);
    }

    TEST_CASE("catalog: lists what a manager wrote, without a hive and without writing") {
        memory_store store;
        qr_test::temp_dir dir("cp-parts");
        hive local(dir.path() / "h");
        checkpoint_manager_options o;
        o.node = "n1";
        checkpoint_manager cp(local, store, o);
        local.set_value("App/Cfg", "Port", value::dword(1));
        cp.add_checkpoint("Res/1", "App/Cfg");
        cp.online("Res/1");
        local.set_value("App/Cfg", "Port", value::dword(2));
        cp.flush("Res/1");
        cp.offline("Res/1");
        local.set_value("App/Cfg", "Port", value::dword(3)); // offline edit: preserved below
        cp.online("Res/1");
        cp.offline("Res/1");

        checkpoint_catalog cat(store);
        auto before = store.revision();
        CHECK(cat.resources() == std::vector<std::string>{"Res/1"});
        CHECK(cat.checkpoints("Res/1") == std::vector<std::string>{"App/Cfg"});
        auto h = cat.history("Res/1", "app\\cfg");
        REQUIRE(h.size() == 2);
        CHECK(h[0].generation == 1);
        CHECK(h[1].writer == "n1");
        auto c = cat.conflicts("Res/1");
        REQUIRE(c.size() == 1);
        CHECK(c[0].node == "n1");
        auto content = cat.conflict_content("Res/1", c[0].id);
        CHECK(content == cp.conflict_content("Res/1", c[0].id));
        CHECK_FALSE(content.empty());
        std::error_code ec;
        cat.conflict_key("Res/1", "nope", ec);
        CHECK(ec == errc::not_found);
        CHECK(cat.checkpoints("Other").empty());
        CHECK(store.revision() == before); // read-only
    }

    TEST_CASE("decision: offline edits are told from stale copies, for every policy") {
        using detail::decide_offline_edit;
        using d = detail::offline_edit_decision;
        detail::digest256 q = detail::sha256("quorum"), l = detail::sha256("local"), old = detail::sha256("old");
        detail::offline_edit_inputs in;
        in.local_exists = true;
        in.local_hash = l;
        CHECK(decide_offline_edit(in) == d::first_checkpoint);
        in.quorum_exists = true;
        in.quorum_hash = l;
        CHECK(decide_offline_edit(in) == d::keep);
        in.quorum_hash = q;
        in.recorded_hash = l; // local is what we last wrote: stale, restore
        CHECK(decide_offline_edit(in) == d::restore);
        in.recorded_hash = old; // changed since: edited offline
        CHECK(decide_offline_edit(in) == d::preserve_then_restore);
        in.policy = offline_edit_policy::reject;
        CHECK(decide_offline_edit(in) == d::reject);
        in.policy = offline_edit_policy::adopt_local;
        CHECK(decide_offline_edit(in) == d::adopt_local);
        in.recorded_hash.reset(); // no record: any local copy counts as an edit
        CHECK(decide_offline_edit(in) == d::adopt_local);
        in.local_exists = false;
        in.local_hash = detail::sha256("");
        CHECK(decide_offline_edit(in) == d::restore); // nothing local, no record: just restore
        in.quorum_absent = true;
        in.quorum_hash = detail::sha256("");
        CHECK(decide_offline_edit(in) == d::keep); // both absent
        static_assert(decide_offline_edit({}) == d::first_checkpoint);
    }
}
