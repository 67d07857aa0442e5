// qreg — the quorumreg admin tool. See docs/qreg.md for every command and `qreg --help`.
//
// Exit codes: 0 ok; 1 the operation failed; 2 usage error; 3 not found (key, value, resource,
// type, generation, a store or hive that does not exist); 4 the quorum store cannot be reached;
// 5 a check found a problem (a cycle in a dependency graph, a node whose plugin does not
// verify); 6 `store init` found a store already there.
//
// Reads never write: every read-only command opens the store (and the hive) read-only.
#include <quorumreg/detail/text.hpp>
#include <quorumreg/checkpoint.hpp>
#include <quorumreg/dependency_graph.hpp>
#include <quorumreg/detail/graph_text.hpp>
#include <quorumreg/detail/key_escape.hpp>
#include <quorumreg/hive.hpp>
#include <quorumreg/resource_monitor.hpp>
#include <quorumreg/resource_types.hpp>
#include <quorumreg/stores/open_store.hpp>
#include <quorumreg/version.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
namespace json = boost::json;
namespace qr = quorumreg;

namespace {

enum exit_code : int {
    ok = 0,
    failed = 1,
    usage_error = 2,
    not_found = 3,
    unreachable = 4,
    check_failed = 5,
    already_exists = 6
};

/// A usage error: printed with the command's help hint, exit 2.
struct usage : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// A failure with a chosen exit code.
struct failure : std::runtime_error {
    int code;
    failure(int c, const std::string& m) : std::runtime_error(m), code(c) {}
};

int code_for(const std::error_code& ec) {
    if (ec == qr::errc::key_not_found || ec == qr::errc::value_not_found || ec == qr::errc::not_found ||
        ec == qr::errc::plugin_missing)
        return not_found;
    if (ec == qr::errc::quorum_unavailable || ec == qr::errc::deadline_exceeded || ec == qr::errc::unknown_outcome)
        return unreachable;
    // Input of the wrong form, whatever is stored: a usage error. A refusal that depends on
    // what is stored (an overlapping checkpoint, a resource owned elsewhere) is exit 1.
    if (ec == qr::errc::invalid_argument || ec == qr::errc::invalid_path || ec == qr::errc::name_too_long ||
        ec == qr::errc::path_too_deep)
        return usage_error;
    return failed;
}

// ---- command line --------------------------------------------------------------------------

struct args {
    std::vector<std::string> pos;                        ///< positional words after the command
    std::map<std::string, std::vector<std::string>> opt; ///< --name VALUE (repeatable)
    bool json = false, help = false, merge = false;

    std::optional<std::string> get(const std::string& name) const {
        auto it = opt.find(name);
        if (it == opt.end() || it->second.empty()) return std::nullopt;
        return it->second.back();
    }
    std::string need(const std::string& name, const char* what) const {
        auto v = get(name);
        if (!v) throw usage("missing --" + name + " (" + what + ")");
        return *v;
    }
    const std::string& at(std::size_t i, const char* what) const {
        if (i >= pos.size()) throw usage(std::string("missing ") + what);
        return pos[i];
    }
    void max_positional(std::size_t n) const {
        if (pos.size() > n) throw usage("unexpected argument \"" + pos[n] + "\"");
    }
};

const std::vector<std::string> valued_options{"store",      "hive",   "type",    "node",
                                              "plugin-dir", "output", "timeout", "dot"};

args parse(int argc, char** argv, int from) {
    args a;
    for (int i = from; i < argc; ++i) {
        std::string w = argv[i];
        if (w == "--json")
            a.json = true;
        else if (w == "--help" || w == "-h")
            a.help = true;
        else if (w == "--merge")
            a.merge = true;
        else if (w == "--") {
            for (++i; i < argc; ++i)
                a.pos.emplace_back(argv[i]);
        } else if (w.rfind("--", 0) == 0 && w.size() > 2) {
            auto eq = w.find('=');
            std::string name = w.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
            if (std::find(valued_options.begin(), valued_options.end(), name) == valued_options.end())
                throw usage("unknown option \"--" + name + "\"");
            if (eq != std::string::npos)
                a.opt[name].push_back(w.substr(eq + 1));
            else if (i + 1 < argc)
                a.opt[name].emplace_back(argv[++i]);
            else
                throw usage("option --" + name + " needs a value");
        } else
            a.pos.push_back(w);
    }
    return a;
}

// ---- output --------------------------------------------------------------------------------

/// A table printed with aligned columns (or as a JSON array of objects with --json).
struct table {
    std::vector<std::string> head;
    std::vector<std::vector<std::string>> rows;
    void print() const {
        std::vector<std::size_t> w(head.size());
        for (std::size_t c = 0; c < head.size(); ++c)
            w[c] = head[c].size();
        for (auto& r : rows)
            for (std::size_t c = 0; c < r.size(); ++c)
                w[c] = std::max(w[c], r[c].size());
        auto line = [&](const std::vector<std::string>& r) {
            std::string s;
            for (std::size_t c = 0; c < r.size(); ++c) {
                s += r[c];
                if (c + 1 < r.size()) s += std::string(w[c] - r[c].size() + 2, ' ');
            }
            std::cout << s << "\n";
        };
        line(head);
        for (auto& r : rows)
            line(r);
    }
};

void print_json(const json::value& v) { std::cout << json::serialize(v) << "\n"; }

std::string iso_time(std::chrono::system_clock::time_point t) {
    auto tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

std::string hex(const std::vector<std::uint8_t>& b) { return qr::detail::hex_encode(b.data(), b.size()); }

// ---- values --------------------------------------------------------------------------------

json::value value_json(const qr::value& v) {
    switch (v.type()) {
    case qr::value_type::string:
    case qr::value_type::expand_string: return json::value(v.as_string());
    case qr::value_type::multi_string: {
        json::array a;
        for (auto& s : v.as_multi_string())
            a.emplace_back(s);
        return a;
    }
    case qr::value_type::dword: return json::value(v.as_dword());
    case qr::value_type::qword: return json::value(v.as_qword());
    default: {
        std::vector<std::uint8_t> b(v.as_binary().begin(), v.as_binary().end());
        return json::value(hex(b));
    }
    }
}

std::string value_text(const qr::value& v) {
    switch (v.type()) {
    case qr::value_type::string:
    case qr::value_type::expand_string: return v.as_string();
    case qr::value_type::multi_string: {
        std::string s;
        for (auto& x : v.as_multi_string())
            s += (s.empty() ? "" : " ") + std::string(json::serialize(json::value(x)));
        return s;
    }
    case qr::value_type::dword: return std::to_string(v.as_dword());
    case qr::value_type::qword: return std::to_string(v.as_qword());
    default: {
        std::vector<std::uint8_t> b(v.as_binary().begin(), v.as_binary().end());
        return hex(b);
    }
    }
}

std::uint64_t parse_number(const std::string& s, std::uint64_t max, const std::string& what) {
    try {
        std::size_t used = 0;
        if (s.empty() || s[0] == '-') throw std::invalid_argument(s);
        auto v = std::stoull(s, &used, 0);
        if (used != s.size() || v > max) throw std::out_of_range(s);
        return v;
    } catch (const std::exception&) {
        throw usage("\"" + s + "\" is not a valid " + what);
    }
}

std::vector<std::uint8_t> parse_hex(const std::string& s) {
    std::string h;
    for (char c : s)
        if (c != ' ' && c != ':') h.push_back(c);
    if (h.size() % 2) throw usage("binary data \"" + s + "\" must be an even number of hex digits");
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; i < h.size(); i += 2) {
        auto nib = [&](char c) -> int {
            int v = qr::detail::hex_digit_value(c);
            if (v < 0) throw usage("binary data \"" + s + "\" is not hex");
            return v;
        };
        out.push_back(static_cast<std::uint8_t>(nib(h[i]) * 16 + nib(h[i + 1])));
    }
    return out;
}

qr::value make_value(const std::string& type, const std::vector<std::string>& data) {
    auto one = [&]() -> const std::string& {
        if (data.size() != 1) throw usage("type " + type + " takes exactly one DATA argument");
        return data[0];
    };
    if (type == "string") return qr::value::string(one());
    if (type == "expand_string") return qr::value::expand_string(one());
    if (type == "multi_string") return qr::value::multi_string(qr::value::strings(data.begin(), data.end()));
    if (type == "dword") return qr::value::dword(static_cast<std::uint32_t>(parse_number(one(), 0xffffffffu, "dword")));
    if (type == "qword") return qr::value::qword(parse_number(one(), ~0ull, "qword"));
    if (type == "binary") {
        auto b = parse_hex(one());
        return qr::value::binary(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
    }
    throw usage("unknown --type \"" + type + "\" (string, expand_string, multi_string, dword, qword or binary)");
}

/// Checks the JSON kind before converting, so a wrongly typed value names itself instead of
/// surfacing Boost.JSON's "not a string" with its source location.
qr::value value_from_json(const std::string& type, const json::value& d) {
    if (type == "multi_string") {
        std::vector<std::string> v;
        const auto* arr = d.if_array();
        if (!arr) throw usage("\"data\" must be an array of strings for type multi_string");
        for (auto& x : *arr) {
            if (!x.is_string()) throw usage("\"data\" must be an array of strings for type multi_string");
            v.emplace_back(x.as_string());
        }
        return make_value(type, v);
    }
    if (type == "dword" || type == "qword") {
        boost::system::error_code ec;
        auto n = d.is_number() ? d.to_number<std::uint64_t>(ec) : 0;
        if (!d.is_number() || ec) throw usage("\"data\" must be a non-negative integer for type " + type);
        return make_value(type, {std::to_string(n)});
    }
    if (!d.is_string()) throw usage("\"data\" must be a string for type " + type);
    return make_value(type, {std::string(d.as_string())});
}

// ---- hive ----------------------------------------------------------------------------------

/// `create`: the command may make a new hive (set, import). `read_only`: it only reads (ls,
/// get, export): the hive is opened read-only, which changes no file (a torn tail is left as
/// it is) and works on a read-only copy.
std::unique_ptr<qr::hive> open_hive(const args& a, bool create, bool read_only) {
    auto dir = a.need("hive", "the node's local hive directory");
    std::error_code ec;
    if (!create && !fs::is_directory(dir, ec)) throw failure(not_found, "no hive at " + dir);
    qr::hive_options o;
    o.create = create;
    o.read_only = read_only;
    try {
        return std::make_unique<qr::hive>(dir, o); // the throwing form: its message carries the detail
    } catch (const qr::error& e) {
        if (e.code() == qr::errc::not_found && !create) throw failure(not_found, "no hive at " + dir);
        throw failure(code_for(e.code()) == usage_error ? failed : code_for(e.code()),
                      e.what()); // `open hive "DIR" (detail): reason`
    }
}

template <class Registry> json::object export_key(const Registry& h, const std::string& path) {
    json::object o;
    json::object vals;
    for (auto& v : h.values(path)) {
        json::object e;
        e["type"] = std::string(qr::to_string(v.data.type()));
        e["data"] = value_json(v.data);
        vals[v.name] = std::move(e);
    }
    o["values"] = std::move(vals);
    json::object subs;
    for (auto& s : h.subkeys(path))
        subs[s] = export_key(h, path + "/" + s);
    o["subkeys"] = std::move(subs);
    return o;
}

/// Adds an export's `node` under `path` to `t`. `where` names the node in the file (for errors).
void import_key(qr::transaction& t, const std::string& path, const json::value& node, const std::string& where) {
    const auto* o = node.if_object();
    if (!o) throw usage(where + " is not an object");
    t.create_key(path);
    if (const auto* v = o->if_contains("values")) {
        if (!v->is_object()) throw usage(where + ".values is not an object");
        for (auto& [name, e] : v->as_object()) {
            auto at = where + ".values[\"" + std::string(name) + "\"]";
            const auto* eo = e.if_object();
            const auto* type = eo ? eo->if_contains("type") : nullptr;
            const auto* data = eo ? eo->if_contains("data") : nullptr;
            if (!type || !type->is_string() || !data) throw usage(at + " needs a string \"type\" and a \"data\"");
            try {
                t.set_value(path, name, value_from_json(std::string(type->as_string()), *data));
            } catch (const usage& u) {
                throw usage(at + ": " + u.what());
            }
        }
    }
    if (const auto* s = o->if_contains("subkeys")) {
        if (!s->is_object()) throw usage(where + ".subkeys is not an object");
        for (auto& [name, sub] : s->as_object()) {
            // A separator would silently turn one key into a nested path.
            if (name.empty() || name.find_first_of("/\\") != std::string_view::npos)
                throw usage(where + ".subkeys: key name \"" + std::string(name) +
                            "\" is empty or holds a path separator ('/' or '\\')");
            import_key(t, path + "/" + std::string(name), sub, where + ".subkeys[\"" + std::string(name) + "\"]");
        }
    }
}

constexpr const char* export_format = "qreg-hive-export/1";

/// A `hive export` (or `checkpoint show`) document read from a file and checked.
struct export_document {
    std::string file;
    std::string key; ///< the exported key
    json::value tree;

    /// Adds the tree under `key` to `t`; an error names the file and the place in it.
    void add_to(qr::transaction& t, const std::string& key) const {
        try {
            import_key(t, key, tree, "tree");
        } catch (const usage& e) {
            throw failure(failed, file + ": " + e.what());
        } catch (const std::exception& e) {
            throw failure(failed, file + " is malformed: " + e.what());
        }
    }
};

/// Reads and checks `file`.
export_document read_export(const std::string& file) {
    std::ifstream f(file, std::ios::binary);
    if (!f) throw failure(not_found, "cannot read " + file);
    std::stringstream ss;
    ss << f.rdbuf();
    boost::system::error_code jec;
    auto doc = json::parse(ss.str(), jec);
    export_document d{file, {}, {}};
    const auto* top = jec ? nullptr : doc.if_object();
    const auto* format = top ? top->if_contains("format") : nullptr;
    const auto* exported_key = top ? top->if_contains("key") : nullptr;
    if (const auto* absent = top ? top->if_contains("absent") : nullptr;
        absent && absent->is_bool() && absent->as_bool() && !top->if_contains("tree"))
        throw failure(failed, file + " records an absent subtree: there is nothing to import (qreg checkpoint "
                                     "delete removes a checkpointed key)");
    if (!top || !format || !format->is_string() || !exported_key || !exported_key->is_string() ||
        !top->if_contains("tree"))
        throw failure(failed, file + " is not a qreg hive export" + (jec ? " (" + jec.message() + ")" : ""));
    if (format->as_string() != export_format)
        throw failure(failed, file + ": format \"" + std::string(format->as_string()) +
                                  "\" is not supported (this qreg reads " + export_format + ")");
    d.key = std::string(exported_key->as_string());
    d.tree = top->at("tree");
    return d;
}

const char* hive_help =
    "usage: qreg hive COMMAND --hive DIR [--json]\n"
    "  ls KEY                     subkeys and values of KEY (\"/\" is the root)\n"
    "  get KEY NAME               one value\n"
    "  set KEY NAME DATA... --type T   T: string (default), expand_string, multi_string (one DATA per\n"
    "                             string), dword, qword (decimal or 0x hex), binary (hex digits)\n"
    "  delete KEY [NAME]          delete the value NAME, or the key KEY with everything under it\n"
    "  export KEY [--output FILE] the subtree as JSON (stdout unless --output)\n"
    "  import FILE [KEY] [--merge]  recreate KEY (default: the exported key) as the export has it, in one\n"
    "                             transaction; --merge keeps what KEY holds and overlays the export\n";

/// KEY as typed, as the hive names it: one leading separator is dropped, so "/" (or "\\") is the
/// root key and "/Software" is "Software".
std::string key_path(std::string k) {
    if (!k.empty() && (k[0] == '/' || k[0] == '\\')) k.erase(0, 1);
    return k;
}

int cmd_hive(const args& given) {
    if (given.help || given.pos.empty()) {
        std::cout << hive_help;
        return given.help ? ok : usage_error;
    }
    args a = given;
    const std::string sub = a.pos[0];
    if (std::size_t key_at = sub == "import" ? 2 : 1; a.pos.size() > key_at) a.pos[key_at] = key_path(a.pos[key_at]);
    if (sub != "ls" && sub != "get" && sub != "set" && sub != "delete" && sub != "export" && sub != "import")
        throw usage("unknown hive command \"" + sub + "\"");
    auto h = open_hive(a, sub == "set" || sub == "import", sub == "ls" || sub == "get" || sub == "export");
    if (sub == "ls") {
        a.max_positional(2);
        const auto& key = a.at(1, "KEY");
        auto vals = h->values(key);
        auto subs = h->subkeys(key);
        if (a.json) {
            json::object o;
            o["key"] = key;
            json::array sk;
            for (auto& s : subs)
                sk.emplace_back(s);
            o["subkeys"] = std::move(sk);
            json::array va;
            for (auto& v : vals)
                va.emplace_back(json::object{{"name", v.name},
                                             {"type", std::string(qr::to_string(v.data.type()))},
                                             {"data", value_json(v.data)}});
            o["values"] = std::move(va);
            print_json(o);
            return ok;
        }
        table t{{"NAME", "TYPE", "DATA"}, {}};
        for (auto& s : subs)
            t.rows.push_back({s + "/", "key", ""});
        for (auto& v : vals)
            t.rows.push_back({v.name, std::string(qr::to_string(v.data.type())), value_text(v.data)});
        t.print();
        return ok;
    }
    if (sub == "get") {
        a.max_positional(3);
        auto v = h->get_value(a.at(1, "KEY"), a.at(2, "NAME"));
        if (a.json)
            print_json(json::object{
                {"name", a.pos[2]}, {"type", std::string(qr::to_string(v.type()))}, {"data", value_json(v)}});
        else
            std::cout << value_text(v) << "\n";
        return ok;
    }
    if (sub == "set") {
        a.at(3, "DATA");
        auto v = make_value(a.get("type").value_or("string"), std::vector<std::string>(a.pos.begin() + 3, a.pos.end()));
        qr::transaction t;
        t.create_key(a.pos[1]).set_value(a.pos[1], a.pos[2], v);
        h->commit(t);
        return ok;
    }
    if (sub == "delete") {
        a.max_positional(3);
        if (a.pos.size() == 3)
            h->delete_value(a.at(1, "KEY"), a.pos[2]);
        else
            h->delete_key(a.at(1, "KEY"));
        return ok;
    }
    if (sub == "export") {
        a.max_positional(2);
        json::object o{{"format", export_format}, {"key", a.at(1, "KEY")}, {"tree", export_key(*h, a.pos[1])}};
        auto text = json::serialize(o);
        if (auto out = a.get("output")) {
            std::ofstream f(*out, std::ios::binary | std::ios::trunc);
            f << text << "\n";
            if (!f.flush()) throw failure(failed, "cannot write " + *out);
        } else
            std::cout << text << "\n";
        return ok;
    }
    // import
    a.max_positional(3);
    auto doc = read_export(a.at(1, "FILE"));
    std::string key = a.pos.size() == 3 ? a.pos[2] : doc.key;
    qr::transaction t;
    if (!a.merge && h->key_exists(key)) t.delete_key(key); // recreate: nothing of the old subtree stays
    doc.add_to(t, key);
    h->commit(t); // all or nothing
    return ok;
}

// ---- store-backed commands -------------------------------------------------------------------

std::string opened_store; ///< named in errors, so "quorum unavailable" says which store

/// Opens --store; never creates one (`store init` does). `read_only`: the command only reads,
/// so a directory store is opened read-only (works on a read-only copy, changes no file).
std::unique_ptr<qr::quorum_store> open_store(const args& a, bool read_only, bool create = false) {
    auto spec = a.need("store", "dir:PATH or etcd:URL[,URL...]");
    opened_store = spec;
    std::error_code ec;
    std::string why;
    qr::store_open_options o;
    o.deadline = std::chrono::milliseconds(parse_number(a.get("timeout").value_or("5000"), 3600000, "--timeout (ms)"));
    o.read_only = read_only;
    auto s = create ? qr::create_store(spec, o, ec, &why) : qr::open_store(spec, o, ec, &why);
    if (ec == qr::errc::invalid_argument && why.rfind("unknown store", 0) == 0)
        throw usage("bad --store \"" + spec + "\" (expected dir:PATH or etcd:URL[,URL...])");
    if (ec == qr::errc::already_exists) throw failure(already_exists, "a store already exists at " + spec);
    if (ec) {
        auto shown = why.empty() ? ec.message() : why;
        if (ec == qr::errc::not_found && spec.rfind("dir:", 0) == 0)
            shown = "no store at " + spec.substr(4) + " (create one with `qreg store init --store " + spec + "`)";
        throw failure(code_for(ec), "cannot open store " + spec + ": " + shown);
    }
    return s;
}

std::string node_name(const args& a) {
    if (auto n = a.get("node")) return *n;
    char b[256] = {};
    if (::gethostname(b, sizeof b - 1) == 0 && b[0]) return b;
    return "qreg";
}

/// Resources with checkpoints in the store (names from the store keys).
std::vector<std::string> checkpoint_resources(qr::quorum_store& s) { return qr::checkpoint_catalog(s).resources(); }

/// Who owns the resource now: "node" or "" when offline everywhere. The owner key holds the
/// one owner-record format (decode_owner_record); a record without a node name shows its lease
/// ("lease N"), never the lease number as a node.
std::string owner_of(qr::quorum_store& s, const std::string& res) {
    auto kv = s.get(qr::checkpoint_layout(qr::checkpoint_manager_options{}.prefix).owner_key(res));
    if (!kv) return {};
    auto rec = qr::decode_owner_record(kv->value);
    if (!rec) return "? (unreadable owner record)";
    return rec->node.empty() ? "lease " + std::to_string(rec->lease) : rec->node;
}

/// A generation's content (nullopt: the subtree was absent in it); 0 means the latest.
std::optional<std::string> generation_or_fail(qr::checkpoint_manager& cp, const std::string& res,
                                              const std::string& subtree, std::uint64_t gen) {
    std::error_code ec;
    std::string why;
    auto content = cp.catalog().generation_content(res, subtree, gen, ec, why);
    if (ec == qr::errc::not_found)
        throw failure(not_found, (gen ? "generation " + std::to_string(gen) + " of \"" : "no checkpoint of \"") +
                                     subtree + "\" (resource \"" + res + "\"): " + why);
    if (ec) throw qr::error(ec, "generation_content \"" + res + "\" \"" + subtree + "\" (" + why + ")");
    return content;
}

std::uint64_t latest_of(qr::checkpoint_manager& cp, const std::string& res, const std::string& subtree) {
    auto h = cp.history(res, subtree);
    return h.empty() ? 0 : h.back().generation;
}

/// A subtree encoding in a scratch registry (empty when absent).
std::unique_ptr<qr::registry> load_content(const std::string& subtree, const std::optional<std::string>& content) {
    auto r = std::make_unique<qr::registry>();
    if (content) r->import_subtree(subtree, *content);
    return r;
}

/// Content as a `hive export` document (importable with `qreg hive import`), plus `extra`.
json::object content_export(const std::string& subtree, const std::optional<std::string>& content, json::object extra) {
    json::object o{{"format", "qreg-hive-export/1"}, {"key", subtree}};
    if (content)
        o["tree"] = export_key(*load_content(subtree, content), subtree);
    else
        o["absent"] = true;
    for (auto& [k, v] : extra)
        o[k] = v;
    return o;
}

/// Every value under `path` as "relative key" -> name -> "type data" (keys with no values as
/// a "(key)" entry, so an added or removed empty key shows).
void flatten(const qr::registry& r, const std::string& path, const std::string& rel,
             std::map<std::pair<std::string, std::string>, std::string>& out) {
    out[{rel, ""}] = "(key)";
    for (auto& v : r.values(path))
        out[{rel, v.name}] = std::string(qr::to_string(v.data.type())) + " " + value_text(v.data);
    for (auto& s : r.subkeys(path))
        flatten(r, path + "/" + s, rel.empty() ? s : rel + "/" + s, out);
}

/// Prints what changed from `before` to `after` ("+ KEY NAME = T DATA", "- ...", "~ ... -> ...").
void print_diff(const args& a, const std::string& subtree, const std::optional<std::string>& before,
                const std::optional<std::string>& after, const char* before_name = "from",
                const char* after_name = "to") {
    std::map<std::pair<std::string, std::string>, std::string> x, y;
    if (before) flatten(*load_content(subtree, before), subtree, "", x);
    if (after) flatten(*load_content(subtree, after), subtree, "", y);
    json::array arr;
    auto show = [&](char op, const std::pair<std::string, std::string>& k, const std::string* old_v,
                    const std::string* new_v) {
        auto key = k.first.empty() ? subtree : subtree + "/" + k.first;
        json::object o{{"change", op == '+' ? "added" : op == '-' ? "removed" : "changed"}, {"key", key}};
        if (!k.second.empty()) o["name"] = k.second;
        if (old_v) o[before_name] = *old_v;
        if (new_v) o[after_name] = *new_v;
        arr.emplace_back(std::move(o));
        if (a.json) return;
        std::cout << op << " " << key << (k.second.empty() ? "" : "  " + k.second);
        if (op == '~')
            std::cout << " = " << *old_v << " -> " << *new_v;
        else if (!k.second.empty())
            std::cout << " = " << *(old_v ? old_v : new_v);
        std::cout << "\n";
    };
    for (auto& [k, v] : x) {
        auto it = y.find(k);
        if (it == y.end())
            show('-', k, &v, nullptr);
        else if (it->second != v)
            show('~', k, &v, &it->second);
    }
    for (auto& [k, v] : y)
        if (!x.count(k)) show('+', k, nullptr, &v);
    if (a.json)
        print_json(arr);
    else if (arr.empty())
        std::cout << "(no differences)\n";
}

const char* checkpoint_help =
    "usage: qreg checkpoint COMMAND --store SPEC [--hive DIR] [--node NAME] [--json]\n"
    "  list [RESOURCE]                  resources with checkpoints (or RESOURCE's subtrees)\n"
    "  add RESOURCE SUBTREE --hive DIR  checkpoint SUBTREE of RESOURCE from this node's hive\n"
    "  remove RESOURCE SUBTREE --hive DIR\n"
    "  history RESOURCE SUBTREE         stored generations, oldest first\n"
    "  restore RESOURCE SUBTREE GENERATION   make GENERATION current again (as a new generation)\n"
    "  show RESOURCE SUBTREE [GEN]      a generation's content (default: the latest), as a hive export\n"
    "  diff RESOURCE SUBTREE GEN1 GEN2  what changed from GEN1 to GEN2\n"
    "  set RESOURCE KEY NAME DATA... [--type T]   change a checkpointed value in the quorum (writes)\n"
    "  delete RESOURCE KEY [NAME]       delete a checkpointed value or key in the quorum (writes)\n"
    "  import RESOURCE FILE [KEY] [--merge]   make KEY (default: the file's key) what a hive export\n"
    "                                   or checkpoint show FILE holds; --merge overlays (writes)\n"
    "  policy RESOURCE [reject|preserve|adopt_local]   show or set (writes) what online() does\n"
    "                                   with offline edits of RESOURCE, on every node\n"
    "  conflicts RESOURCE               local copies preserved because they diverged\n"
    "  conflicts RESOURCE show ID       a conflict record's content and how it differs from the latest\n"
    "  conflicts RESOURCE adopt ID      make it the subtree's content (a new generation; writes)\n"
    "  conflicts RESOURCE discard ID    delete the record (writes)\n"
    "set, delete, import and adopt make a new generation that the next online() restores; a resource\n"
    "online on another node is refused (\"owned by node X\"): change it there, or offline first.\n";

int cmd_checkpoint(const args& a) {
    if (a.help || a.pos.empty()) {
        std::cout << checkpoint_help;
        return a.help ? ok : usage_error;
    }
    const std::string& sub = a.pos[0];
    static const std::vector<std::string> subs{"list", "add", "remove", "history", "restore", "show",
                                               "diff", "set", "delete", "import",  "policy",  "conflicts"};
    if (std::find(subs.begin(), subs.end(), sub) == subs.end())
        throw usage("unknown checkpoint command \"" + sub + "\"");
    bool needs_hive = sub == "add" || sub == "remove";
    if (needs_hive) a.need("hive", "the node's local hive directory, source of the checkpointed keys");
    std::string conflict_action = sub == "conflicts" && a.pos.size() > 2 ? a.pos[2] : "list";
    if (conflict_action != "list" && conflict_action != "show" && conflict_action != "adopt" &&
        conflict_action != "discard")
        throw usage("unknown conflicts action \"" + conflict_action + "\" (show, adopt or discard)");
    bool reads_only = sub == "list" || sub == "history" || sub == "show" || sub == "diff" ||
                      (sub == "policy" && a.pos.size() < 3) ||
                      (sub == "conflicts" && (conflict_action == "list" || conflict_action == "show"));
    auto store = open_store(a, reads_only);
    // Read-only commands and offline restores never touch local keys: a scratch hive serves.
    std::optional<std::string> scratch;
    std::string hive_dir;
    if (auto h = a.get("hive"))
        hive_dir = *h;
    else {
        auto tmpl = (fs::temp_directory_path() / "qreg-hive-XXXXXX").string();
        if (!::mkdtemp(tmpl.data()))
            throw failure(failed, "cannot create a scratch hive in " + fs::temp_directory_path().string());
        scratch = hive_dir = tmpl;
    }
    struct cleanup {
        std::optional<std::string>& d;
        ~cleanup() {
            std::error_code ec;
            if (d) fs::remove_all(*d, ec);
        }
    } clean{scratch};
    qr::hive local(hive_dir);
    qr::checkpoint_manager_options o;
    o.node = node_name(a);
    qr::checkpoint_manager cp(local, *store, o);

    if (sub == "list") {
        a.max_positional(2);
        if (a.pos.size() == 1) {
            json::array arr;
            table t{{"RESOURCE", "OWNER", "SUBTREES", "CONFLICTS"}, {}};
            for (auto& r : checkpoint_resources(*store)) {
                auto subtrees = cp.checkpoints(r);
                auto conflicts = cp.conflicts(r);
                auto owner = owner_of(*store, r);
                arr.emplace_back(json::object{
                    {"resource", r}, {"owner", owner}, {"subtrees", subtrees.size()}, {"conflicts", conflicts.size()}});
                t.rows.push_back({r, owner.empty() ? "(offline)" : owner, std::to_string(subtrees.size()),
                                  std::to_string(conflicts.size())});
            }
            if (a.json)
                print_json(arr);
            else
                t.print();
            return ok;
        }
        const auto& res = a.pos[1];
        auto subtrees = cp.checkpoints(res);
        if (subtrees.empty()) throw failure(not_found, "resource \"" + res + "\" has no checkpoints");
        json::array arr;
        table t{{"SUBTREE", "GENERATION", "WRITER", "TIME"}, {}};
        for (auto& s : subtrees) {
            auto h = cp.history(res, s);
            std::uint64_t g = h.empty() ? 0 : h.back().generation;
            std::string w = h.empty() ? "" : h.back().writer, tm = h.empty() ? "" : iso_time(h.back().time);
            arr.emplace_back(json::object{{"subtree", s}, {"generation", g}, {"writer", w}, {"time", tm}});
            t.rows.push_back({s, std::to_string(g), w, tm});
        }
        if (a.json)
            print_json(arr);
        else
            t.print();
        return ok;
    }
    if (sub == "add" || sub == "remove") {
        a.max_positional(3);
        if (sub == "add")
            cp.add_checkpoint(a.at(1, "RESOURCE"), a.at(2, "SUBTREE"));
        else
            cp.remove_checkpoint(a.at(1, "RESOURCE"), a.at(2, "SUBTREE"));
        return ok;
    }
    if (sub == "history") {
        a.max_positional(3);
        auto h = cp.history(a.at(1, "RESOURCE"), a.at(2, "SUBTREE"));
        if (h.empty())
            throw failure(not_found, "no checkpoint of \"" + a.pos[2] + "\" for resource \"" + a.pos[1] + "\"");
        json::array arr;
        table t{{"GENERATION", "WRITER", "TIME", "SHA256"}, {}};
        for (auto& g : h) {
            arr.emplace_back(json::object{{"generation", g.generation},
                                          {"writer", g.writer},
                                          {"time", iso_time(g.time)},
                                          {"sha256", g.sha256},
                                          {"absent", g.absent}});
            t.rows.push_back({std::to_string(g.generation), g.writer, iso_time(g.time),
                              g.absent ? "(subtree absent)" : g.sha256.substr(0, 16)});
        }
        if (a.json)
            print_json(arr);
        else
            t.print();
        return ok;
    }
    if (sub == "restore") {
        a.max_positional(4);
        auto gen = parse_number(a.at(3, "GENERATION"), ~0ull, "generation number");
        const auto& res = a.at(1, "RESOURCE");
        const auto& subtree = a.at(2, "SUBTREE");
        auto h = cp.history(res, subtree);
        if (std::none_of(h.begin(), h.end(), [&](auto& x) { return x.generation == gen; }))
            throw failure(not_found, "generation " + std::to_string(gen) + " of \"" + subtree + "\" (resource \"" +
                                         res + "\") is not in the store; see qreg checkpoint history");
        cp.restore(res, subtree, gen);
        auto after = cp.history(res, subtree);
        std::cout << "restored generation " << gen << " of " << subtree << " as generation "
                  << (after.empty() ? 0 : after.back().generation) << "\n";
        return ok;
    }
    if (sub == "show") {
        a.max_positional(4);
        const auto& res = a.at(1, "RESOURCE");
        const auto& subtree = a.at(2, "SUBTREE");
        auto gen = a.pos.size() == 4 ? parse_number(a.pos[3], ~0ull, "generation number") : 0;
        if (a.pos.size() == 4 && gen == 0) throw usage("generation numbers start at 1");
        auto content = generation_or_fail(cp, res, subtree, gen);
        print_json(content_export(subtree, content,
                                  {{"resource", res}, {"generation", gen ? gen : latest_of(cp, res, subtree)}}));
        return ok;
    }
    if (sub == "diff") {
        a.max_positional(5);
        const auto& res = a.at(1, "RESOURCE");
        const auto& subtree = a.at(2, "SUBTREE");
        auto g1 = parse_number(a.at(3, "GEN1"), ~0ull, "generation number");
        auto g2 = parse_number(a.at(4, "GEN2"), ~0ull, "generation number");
        if (g1 == 0 || g2 == 0) throw usage("generation numbers start at 1");
        print_diff(a, subtree, generation_or_fail(cp, res, subtree, g1), generation_or_fail(cp, res, subtree, g2));
        return ok;
    }
    if (sub == "set" || sub == "delete") {
        const auto& res = a.at(1, "RESOURCE");
        const auto& key = a.at(2, "KEY");
        qr::transaction t;
        if (sub == "set") {
            a.at(3, "NAME");
            a.at(4, "DATA");
            t.set_value(
                key, a.pos[3],
                make_value(a.get("type").value_or("string"), std::vector<std::string>(a.pos.begin() + 4, a.pos.end())));
        } else {
            a.max_positional(4);
            if (a.pos.size() == 4)
                t.delete_value(key, a.pos[3]);
            else
                t.delete_key(key);
        }
        cp.edit_checkpoint(res, t);
        return ok;
    }
    if (sub == "import") {
        a.max_positional(4);
        const auto& res = a.at(1, "RESOURCE");
        auto doc = read_export(a.at(2, "FILE"));
        std::string key = a.pos.size() == 4 ? a.pos[3] : doc.key;
        qr::transaction t;
        if (a.merge)
            doc.add_to(t, key);
        else {
            // Recreate: KEY becomes exactly the file's tree, whatever the latest generation holds.
            qr::registry scratch_tree;
            qr::transaction build;
            doc.add_to(build, key);
            scratch_tree.commit(build);
            t.replace_subtree(key, scratch_tree.export_subtree(key));
        }
        cp.edit_checkpoint(res, t);
        std::cout << "imported " << doc.file << " into " << key << " of " << res << "\n";
        return ok;
    }
    if (sub == "policy") {
        a.max_positional(3);
        const auto& res = a.at(1, "RESOURCE");
        if (a.pos.size() == 3) {
            auto p = qr::parse_offline_edit_policy(a.pos[2]);
            if (!p) throw usage("unknown policy \"" + a.pos[2] + "\" (reject, preserve or adopt_local)");
            cp.set_offline_edit_policy(res, *p);
            return ok;
        }
        auto p = cp.catalog().offline_edit_policy_of(res);
        std::string shown(p ? qr::to_string(*p) : "preserve");
        if (a.json)
            print_json(json::object{{"resource", res}, {"policy", shown}, {"set", p.has_value()}});
        else
            std::cout << shown << (p ? "" : " (default: none set)") << "\n";
        return ok;
    }
    // conflicts
    if (conflict_action != "list") {
        a.max_positional(4);
        const auto& res = a.at(1, "RESOURCE");
        const auto& id = a.at(3, "ID");
        if (conflict_action == "adopt") {
            cp.adopt_conflict(res, id);
            std::cout << "adopted conflict " << id << " as the current content\n";
        } else if (conflict_action == "discard") {
            cp.discard_conflict(res, id);
        } else {
            auto cs = cp.conflicts(res);
            auto c = std::find_if(cs.begin(), cs.end(), [&](const auto& x) { return x.id == id; });
            if (c == cs.end())
                throw failure(not_found, "no conflict record \"" + id + "\" for resource \"" + res + "\"");
            std::optional<std::string> kept = cp.conflict_content(res, id);
            if (a.json) {
                print_json(content_export(c->subtree, kept, {{"resource", res}, {"conflict", id}, {"node", c->node}}));
                return ok;
            }
            std::cout << "conflict " << id << " of " << c->subtree << ", kept from node " << c->node << " at "
                      << iso_time(c->time) << "; against the latest generation:\n";
            std::error_code ec;
            std::string why;
            auto latest = cp.catalog().generation_content(res, c->subtree, 0, ec, why);
            if (ec && ec != qr::errc::not_found) throw qr::error(ec, "generation_content (" + why + ")");
            print_diff(a, c->subtree, latest, kept, "latest", "conflict");
        }
        return ok;
    }
    a.max_positional(2);
    auto cs = cp.conflicts(a.at(1, "RESOURCE"));
    json::array arr;
    table t{{"ID", "SUBTREE", "NODE", "TIME", "SHA256"}, {}};
    for (auto& c : cs) {
        arr.emplace_back(json::object{
            {"id", c.id}, {"subtree", c.subtree}, {"node", c.node}, {"time", iso_time(c.time)}, {"sha256", c.sha256}});
        t.rows.push_back({c.id, c.subtree, c.node, iso_time(c.time), c.sha256.substr(0, 16)});
    }
    if (a.json)
        print_json(arr);
    else
        t.print();
    return ok;
}

// ---- resource types --------------------------------------------------------------------------

qr::resource_type_registry_options type_options(const args& a, const std::string& library = {}) {
    qr::resource_type_registry_options o;
    if (auto it = a.opt.find("plugin-dir"); it != a.opt.end())
        for (auto& d : it->second)
            o.plugin_directories.emplace_back(d);
    else if (!library.empty())
        o.plugin_directories.push_back(fs::path(library).parent_path());
    o.node_id = node_name(a);
    o.monitor_command = {"/proc/self/exe"}; // qreg is its own registration probe
    return o;
}

json::object type_json(const qr::resource_type_info& t) {
    return {{"name", t.name},
            {"library", t.library},
            {"sha256", t.sha256},
            {"display_name", t.display_name},
            {"looks_alive_ms", t.looks_alive_interval.count()},
            {"is_alive_ms", t.is_alive_interval.count()},
            {"deadlock_timeout_ms", t.deadlock_timeout.count()},
            {"separate_monitor", (t.flags & qr::separate_monitor) != 0},
            {"registered_by", t.registered_by},
            {"revision", t.revision}};
}

/// One or two words for a node's check, for the RESULT column.
std::string verification_result(const qr::node_verification& v) {
    if (!v.result) return v.current ? "ok" : "stale";
    if (v.result == qr::errc::plugin_missing) return "missing";
    if (v.result == qr::errc::plugin_hash_mismatch) return "sha mismatch";
    if (v.result == qr::errc::plugin_not_allowed) return "not allowed";
    if (v.result == qr::errc::plugin_load_failed) return "load failed";
    if (v.result == qr::errc::plugin_type_mismatch) return "wrong type";
    return "failed";
}

/// `text` broken at spaces into lines of at most `width` columns (a word longer than a line,
/// such as a long path, gets a line of its own); continuation lines start with `indent`.
std::string wrap(const std::string& text, std::size_t width, const std::string& indent) {
    std::string out, line;
    std::istringstream words(text);
    for (std::string w; words >> w;) {
        if (!line.empty() && line.size() + 1 + w.size() > width) {
            out += line + "\n";
            line = indent;
        } else if (!line.empty() && line != indent)
            line += ' ';
        line += w;
    }
    if (!line.empty() && line != indent) out += line + "\n";
    return out;
}

const char* type_help =
    "usage: qreg type COMMAND --store SPEC [--node NAME] [--json]\n"
    "  list                               registered resource types\n"
    "  add NAME LIBRARY [--plugin-dir DIR]...   register NAME as implemented by LIBRARY (absolute\n"
    "                                     path); LIBRARY must lie in a --plugin-dir (default: its own\n"
    "                                     directory); it is hashed and probed in a throwaway monitor\n"
    "  remove NAME                        unregister NAME\n"
    "  verify NAME [--plugin-dir DIR]...  check this node's copy of the library (recorded in the\n"
    "                                     store), then print every node's result; exit 5 if any fails\n";

int cmd_type(const args& a) {
    if (a.help || a.pos.empty()) {
        std::cout << type_help;
        return a.help ? ok : usage_error;
    }
    const std::string& sub = a.pos[0];
    if (sub != "list" && sub != "add" && sub != "remove" && sub != "verify")
        throw usage("unknown type command \"" + sub + "\"");
    if (sub == "add") {
        a.max_positional(3);
        a.at(2, "LIBRARY");
    }
    auto store = open_store(a, sub == "list");
    if (sub == "list") {
        a.max_positional(1);
        qr::resource_type_registry types(*store, type_options(a));
        json::array arr;
        table t{{"NAME", "LIBRARY", "SHA256", "REGISTERED_BY"}, {}};
        for (auto& ti : types.list()) {
            arr.push_back(type_json(ti));
            t.rows.push_back({ti.name, ti.library, ti.sha256.substr(0, 16), ti.registered_by});
        }
        if (a.json)
            print_json(arr);
        else
            t.print();
        return ok;
    }
    if (sub == "add") {
        auto lib = fs::absolute(a.pos[2]).lexically_normal().string();
        qr::resource_type_registry types(*store, type_options(a, lib));
        qr::resource_type_info ti;
        ti.name = a.pos[1];
        ti.library = lib;
        auto stored = types.register_type(ti);
        if (a.json)
            print_json(type_json(stored));
        else
            std::cout << "registered " << stored.name << " -> " << stored.library << " (sha256 " << stored.sha256
                      << ")\n";
        return ok;
    }
    a.max_positional(2);
    const auto& name = a.at(1, "NAME");
    if (sub == "remove") {
        qr::resource_type_registry types(*store, type_options(a));
        types.unregister_type(name);
        return ok;
    }
    // verify
    qr::resource_type_registry probe(*store, type_options(a));
    auto info = probe.lookup(name);
    qr::resource_type_registry types(*store, type_options(a, a.opt.count("plugin-dir") ? "" : info.library));
    auto mine = types.verify_on_this_node(name);
    auto report = types.verification_report(name);
    bool all = !report.empty();
    json::array arr;
    // Short results keep the table inside 80 columns; the reasons follow it, wrapped.
    table t{{"NODE", "RESULT", "SHA256", "CHECKED"}, {}};
    std::string reasons;
    for (auto& v : report) {
        all = all && v.ok();
        auto when = iso_time(std::chrono::system_clock::time_point(std::chrono::milliseconds(v.checked_at_ms)));
        std::string result = v.ok() ? "ok" : verification_result(v);
        if (!v.ok())
            reasons += wrap(
                v.node + ": " +
                    (!v.current && !v.result ? "checked an older registration; run qreg type verify there" : v.message),
                80, "    ");
        arr.emplace_back(json::object{{"node", v.node},
                                      {"ok", v.ok()},
                                      {"current", v.current},
                                      {"message", v.message},
                                      {"observed_sha256", v.observed_sha256},
                                      {"registered_sha256", v.registered_sha256},
                                      {"checked", when}});
        t.rows.push_back({v.node, result, v.observed_sha256.substr(0, 16), when});
    }
    if (a.json)
        print_json(arr);
    else {
        t.print();
        std::cout << reasons;
    }
    if (!mine.ok()) std::cerr << "qreg: this node (" << mine.node << "): " << mine.message << "\n";
    return all ? ok : check_failed;
}

// ---- resources ------------------------------------------------------------------------------

const char* resource_help =
    "usage: qreg resource COMMAND --store SPEC [--json]\n"
    "  list            resources the store knows (checkpointed resources), with their owner node\n"
    "  status NAME     owner, checkpointed subtrees with their latest generation, conflicts\n"
    "Resources hosted by a monitor_controller live in that application's process; the store\n"
    "holds their types (qreg type list) and per-node plugin checks (qreg type verify).\n";

int cmd_resource(const args& a) {
    if (a.help || a.pos.empty()) {
        std::cout << resource_help;
        return a.help ? ok : usage_error;
    }
    const std::string& sub = a.pos[0];
    if (sub != "list" && sub != "status") throw usage("unknown resource command \"" + sub + "\"");
    auto store = open_store(a, true);
    qr::checkpoint_catalog cp(*store); // read-only: no hive, no writes
    if (sub == "list") {
        a.max_positional(1);
        json::array arr;
        table t{{"RESOURCE", "STATE", "OWNER", "SUBTREES", "CONFLICTS"}, {}};
        for (auto& r : checkpoint_resources(*store)) {
            auto owner = owner_of(*store, r);
            auto n = cp.checkpoints(r).size(), c = cp.conflicts(r).size();
            arr.emplace_back(json::object{{"resource", r},
                                          {"state", owner.empty() ? "offline" : "online"},
                                          {"owner", owner},
                                          {"subtrees", n},
                                          {"conflicts", c}});
            t.rows.push_back({r, owner.empty() ? "offline" : "online", owner.empty() ? "-" : owner, std::to_string(n),
                              std::to_string(c)});
        }
        if (a.json)
            print_json(arr);
        else
            t.print();
        return ok;
    }
    a.max_positional(2);
    const auto& res = a.at(1, "NAME");
    auto subtrees = cp.checkpoints(res);
    auto owner = owner_of(*store, res);
    if (subtrees.empty() && owner.empty()) throw failure(not_found, "resource \"" + res + "\" is not in the store");
    auto conflicts = cp.conflicts(res);
    json::array sarr;
    for (auto& s : subtrees) {
        auto h = cp.history(res, s);
        sarr.emplace_back(json::object{{"subtree", s},
                                       {"generation", h.empty() ? 0 : h.back().generation},
                                       {"writer", h.empty() ? "" : h.back().writer},
                                       {"time", h.empty() ? "" : iso_time(h.back().time)},
                                       {"generations_kept", h.size()}});
    }
    if (a.json) {
        print_json(json::object{{"resource", res},
                                {"state", owner.empty() ? "offline" : "online"},
                                {"owner", owner},
                                {"subtrees", sarr},
                                {"conflicts", conflicts.size()}});
        return ok;
    }
    std::cout << "resource   " << res << "\nstate      " << (owner.empty() ? "offline" : "online") << "\nowner      "
              << (owner.empty() ? "-" : owner) << "\nconflicts  " << conflicts.size() << "\n\n";
    table t{{"SUBTREE", "GENERATION", "WRITER", "TIME", "KEPT"}, {}};
    for (auto& s : sarr) {
        auto& o = s.as_object();
        t.rows.push_back({std::string(o.at("subtree").as_string()), json::serialize(o.at("generation")),
                          std::string(o.at("writer").as_string()), std::string(o.at("time").as_string()),
                          json::serialize(o.at("generations_kept"))});
    }
    t.print();
    return ok;
}

// ---- dependency graph ---------------------------------------------------------------------------

const char* graph_help = "usage: qreg graph --dot FILE [--output OUT]   the graph in FILE as Graphviz DOT\n"
                         "       qreg graph check FILE [--json]         check for cycles; print the start order\n"
                         "FILE, one statement per line ('#' starts a comment):\n"
                         "  a -> b            a requires b (b starts first; starting a pulls b in)\n"
                         "  a -> (b | c)      a requires one of b, c (tried in that order)\n"
                         "  a after b         order only: a starts after b when both start\n"
                         "  a                 a service with no dependencies\n"
                         "Exit 5 if the graph has a cycle (the cycle is printed), 1 if FILE is malformed.\n";

using graph_file = qr::detail::graph_text;

graph_file load_graph(const std::string& path) {
    // An ifstream opens a directory without complaint and reads it as empty: "0 services".
    std::error_code ec;
    auto st = fs::status(path, ec);
    if (!fs::exists(st)) throw failure(not_found, "no graph file " + path);
    if (!fs::is_regular_file(st))
        throw failure(failed, path + " is not a graph file (" +
                                  (fs::is_directory(st) ? "a directory" : "not a regular file") + ")");
    std::ifstream f(path);
    if (!f) throw failure(failed, "cannot read graph file " + path);
    graph_file gf;
    std::string why;
    if (qr::detail::parse_graph_text(f, path, gf, why)) throw failure(failed, why);
    return gf;
}

int cmd_graph(const args& a) {
    if (a.help) {
        std::cout << graph_help;
        return ok;
    }
    if (auto dot = a.get("dot")) {
        a.max_positional(0);
        auto gf = load_graph(*dot);
        if (!gf.cycle.empty())
            throw failure(check_failed, *dot + ":" + std::to_string(gf.cycle_line) + ": \"" + gf.cycle_text +
                                            "\" closes the cycle " + gf.graph.format_cycle(gf.cycle));
        auto text = gf.graph.to_dot();
        if (auto out = a.get("output")) {
            std::ofstream f(*out, std::ios::trunc);
            f << text;
            if (!f.flush()) throw failure(failed, "cannot write " + *out);
        } else
            std::cout << text;
        return ok;
    }
    if (a.pos.empty()) {
        std::cout << graph_help;
        return usage_error;
    }
    if (a.pos[0] != "check") throw usage("unknown graph command \"" + a.pos[0] + "\"");
    a.max_positional(2);
    const auto& file = a.at(1, "FILE");
    auto gf = load_graph(file);
    if (!gf.cycle.empty()) {
        auto text = gf.graph.format_cycle(gf.cycle);
        if (a.json) {
            json::array c;
            for (auto& s : gf.cycle)
                c.emplace_back(s);
            print_json(json::object{{"ok", false}, {"cycle", c}, {"line", gf.cycle_line}});
        } else
            std::cout << "cycle: " << text << "\n";
        std::cerr << "qreg: " << file << ":" << gf.cycle_line << ": \"" << gf.cycle_text << "\" closes the cycle "
                  << text << "\n";
        return check_failed;
    }
    auto waves = gf.graph.start_waves();
    if (a.json) {
        json::array w;
        for (auto& wave : waves) {
            json::array x;
            for (auto& s : wave)
                x.emplace_back(s);
            w.emplace_back(std::move(x));
        }
        print_json(json::object{{"ok", true}, {"services", gf.graph.nodes().size()}, {"start_waves", w}});
        return ok;
    }
    std::cout << "no cycle: " << gf.graph.nodes().size() << " services start in " << waves.size() << " waves\n";
    for (std::size_t i = 0; i < waves.size(); ++i) {
        std::cout << "  " << i + 1 << ":";
        for (auto& s : waves[i])
            std::cout << " " << s;
        std::cout << "\n";
    }
    return ok;
}

// ---- stores ---------------------------------------------------------------------------------

const char* store_help = "usage: qreg store COMMAND --store SPEC [--json]\n"
                         "  init        create a new, empty store with a new identity (exit 6 if one exists there)\n"
                         "  identity    print the store's identity (the id its nodes record and check)\n"
                         "No other command creates a store: a missing one is \"no store at PATH\", exit 3.\n";

int cmd_store(const args& a) {
    if (a.help || a.pos.empty()) {
        std::cout << store_help;
        return a.help ? ok : usage_error;
    }
    const std::string& sub = a.pos[0];
    if (sub != "init" && sub != "identity") throw usage("unknown store command \"" + sub + "\"");
    a.max_positional(1);
    auto store = open_store(a, sub == "identity", sub == "init");
    auto id = store->identity();
    if (a.json)
        print_json(json::object{{"store", store->describe()}, {"identity", id}});
    else if (sub == "init")
        std::cout << "created store " << store->describe() << " (identity " << id << ")\n";
    else
        std::cout << (id.empty() ? "(none: created by a format-version-1 library)" : id) << "\n";
    return ok;
}

const char* main_help =
    "usage: qreg COMMAND ... [--json] [--help]    qreg --version\n"
    "Administer quorumreg: local hives, checkpoints, resource types, resources, dependency graphs.\n"
    "  hive        get | set | delete | ls | export | import   (--hive DIR)\n"
    "  checkpoint  list | add | remove | history | restore | conflicts   (--store SPEC)\n"
    "  type        list | add | remove | verify   (--store SPEC)\n"
    "  resource    list | status   (--store SPEC)\n"
    "  store       init | identity   (--store SPEC)\n"
    "  graph       --dot FILE | check FILE\n"
    "Common options: --store dir:PATH | etcd:http://127.0.0.1:2379,... (credentials from\n"
    "  QUORUMREG_ETCD_USER / QUORUMREG_ETCD_PASSWORD, CA from QUORUMREG_ETCD_CA), --node NAME\n"
    "  (default: host name), --timeout MS (store deadline, default 5000), --json.\n"
    "Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 not found (also: no store or hive at\n"
    "  PATH), 4 store unreachable, 5 a check found a problem (graph cycle, a node whose plugin\n"
    "  does not verify), 6 `store init`: a store already exists.\n"
    "Run `qreg COMMAND --help` for a command's details.\n";

} // namespace

int main(int argc, char** argv) {
    if (auto rc = qr::run_monitor_if_requested(argc, argv)) return *rc; // registration probes
    std::string cmd = argc > 1 ? argv[1] : "";
    try {
        if (cmd.empty()) {
            std::cerr << main_help;
            return usage_error;
        }
        if (cmd == "--help" || cmd == "-h" || cmd == "help") {
            std::cout << main_help;
            return ok;
        }
        if (cmd == "--version" || cmd == "version") {
            std::cout << "qreg (quorumreg) " << qr::version_string << "\n";
            return ok;
        }
        auto a = parse(argc, argv, 2);
        if (cmd == "hive") return cmd_hive(a);
        if (cmd == "checkpoint") return cmd_checkpoint(a);
        if (cmd == "type") return cmd_type(a);
        if (cmd == "resource") return cmd_resource(a);
        if (cmd == "graph") return cmd_graph(a);
        if (cmd == "store") return cmd_store(a);
        throw usage("unknown command \"" + cmd + "\"");
    } catch (const usage& e) {
        // Point at the command's own help only when the command exists.
        static const std::vector<std::string> commands{"hive", "checkpoint", "type", "resource", "graph", "store"};
        bool known = std::find(commands.begin(), commands.end(), cmd) != commands.end();
        std::cerr << "qreg: " << e.what() << "\n"
                  << "Try `qreg " << (known ? cmd + " " : "") << "--help`.\n";
        return usage_error;
    } catch (const failure& e) {
        std::cerr << "qreg: " << e.what() << "\n";
        return e.code;
    } catch (const std::system_error& e) {
        std::cerr << "qreg: " << e.what();
        if (code_for(e.code()) == unreachable && !opened_store.empty()) std::cerr << " (store " << opened_store << ")";
        std::cerr << "\n";
        return code_for(e.code());
    } catch (const std::exception& e) {
        std::cerr << "qreg: " << e.what() << "\n";
        return failed;
    }
}
