// The quorumreg demo. For now: the registry on its own (the later scenarios build on it).
#include <quorumreg/quorumreg.hpp>

#include <cstdio>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--help") == 0) {
            std::puts("usage: quorumreg_demo [--store dir]");
            return 0;
        }
    using namespace quorumreg;
    int failures = 0;
    auto check = [&](bool ok, const char* what) {
        std::printf("  [%s] %s\n", ok ? " ok " : "FAIL", what);
        if (!ok) ++failures;
    };
    registry reg;
    std::puts("quorumreg demo: the registry");
    int events = 0;
    auto sub = reg.watch("Software/Contoso", watch_scope::subtree, [&](const change_event& e) {
        ++events;
        std::printf("    watch: %-16s %s%s%s (revision %llu)\n", std::string(to_string(e.kind)).c_str(),
                    e.key_path.c_str(), e.value_name.empty() ? "" : " : ", e.value_name.c_str(),
                    static_cast<unsigned long long>(e.revision));
    });
    transaction txn;
    txn.set_value("Software/Contoso/App", "Name", value::string("Contoso"))
        .set_value("Software/Contoso/App", "Path", value::expand_string("%ProgramFiles%\\Contoso"))
        .set_value("Software/Contoso/App", "Hosts", value::multi_string({"a.example", "b.example"}))
        .set_value("Software/Contoso/App", "Port", value::dword(8080))
        .set_value("Software/Contoso/App", "Epoch", value::qword(1700000000000ull))
        .set_value("Software/Contoso/App", "Key", value::binary(std::string_view("\x01\x02\x03", 3)));
    reg.commit(txn);
    check(reg.get_value("SOFTWARE\\CONTOSO\\APP", "port").as_dword() == 8080, "values of every type written in one transaction; names fold case");
    check(reg.get_value("Software/Contoso/App", "Hosts").as_multi_string().size() == 2, "multi_string read back");
    check(events == 8, "the subtree watch saw 2 keys created and 6 values set");

    auto before = reg.export_subtree("Software");
    std::error_code ec;
    reg.commit(transaction().set_value("Software/Contoso/App", "Port", value::dword(1)).delete_key("Software/Missing"), ec);
    std::printf("    failing transaction: %s\n", ec.message().c_str());
    check(ec == errc::key_not_found && reg.export_subtree("Software") == before,
          "a failing transaction leaves nothing behind");
    std::printf("%s\n", failures ? "demo FAILED" : "demo passed: every outcome checked and held");
    return failures ? 1 : 0;
}
