#include <quorumreg/error.hpp>

#include "test_support.hpp"

TEST_SUITE("error") {
    TEST_CASE("errc converts to an error_code in the quorumreg category") {
        std::error_code ec = quorumreg::errc::key_not_found;
        CHECK(ec.category().name() == std::string("quorumreg"));
        CHECK(ec.message() == "key not found");
        CHECK(ec == quorumreg::errc::key_not_found);
        CHECK(ec != quorumreg::errc::value_not_found);
    }

    TEST_CASE("every error has a message written for people") {
        for (int v = 1; v < 100; ++v) {
            auto msg = quorumreg::error_category().message(v);
            CHECK_FALSE(msg.empty());
        }
        CHECK(quorumreg::error_category().message(9999) == "unknown quorumreg error 9999");
    }

    TEST_CASE("quorumreg::error carries the code and the context") {
        try {
            throw quorumreg::error(quorumreg::errc::value_too_large, "set_value \"A\" \"B\"");
        } catch (const std::system_error& e) {
            CHECK(e.code() == quorumreg::errc::value_too_large);
            CHECK(std::string(e.what()) == "set_value \"A\" \"B\": value too large");
        }
    }

    TEST_CASE("errno maps to distinct codes") {
        CHECK(quorumreg::detail::from_errno(ENOSPC) == quorumreg::errc::no_space);
        CHECK(quorumreg::detail::from_errno(EACCES) == quorumreg::errc::access_denied);
        CHECK(quorumreg::detail::from_errno(EIO) == quorumreg::errc::io_error);
        CHECK_FALSE(quorumreg::detail::from_errno(0));
    }
}
