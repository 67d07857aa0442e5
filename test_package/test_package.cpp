// A consumer of the installed (or add_subdirectory'd) library: it must compile against the
// umbrella header and behave, proving include paths and link dependencies are exported.
#include <quorumreg/quorumreg.hpp>

int main() {
    quorumreg::registry reg;
    reg.set_value("Software/Consumer", "Answer", quorumreg::value::dword(42));
    return reg.get_value("software\\consumer", "answer").as_dword() == 42 ? 0 : 1;
}
