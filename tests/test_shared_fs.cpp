// The directory store on shared file systems whose clients cache attributes and data (issue 14,
// defect 5). Two mounts of one backing directory through tests/fuse/qr_cachefs (kernel caching
// on, 30 s attribute and entry timeouts, locks forwarded across mounts) act as two NFS clients.
#include <quorumreg/stores/directory_store.hpp>

#include "process_util.hpp"
#include "test_support.hpp"

#include <chrono>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace quorumreg;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr long fuse_magic = 0x65735546;

/// POSIX I/O, except that statfs() reports file system type `magic` (or fails with an errno).
struct fake_fs_io : file_io {
    explicit fake_fs_io(std::uint32_t m) : magic(m) {}
    std::uint32_t magic;
    int fail_errno = 0;
    int statfs(const char* path, struct ::statfs* st) override {
        if (fail_errno) {
            errno = fail_errno;
            return -1;
        }
        int r = file_io::statfs(path, st);
        st->f_type = static_cast<decltype(st->f_type)>(magic);
        return r;
    }
};

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

#ifdef QR_CACHEFS
/// Runs a command to completion (bounded), returns its exit code or -1.
int run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 10s) {
    qr_test::child_process p(argv);
    return p.finish(timeout);
}

/// One qr_cachefs mount of `backing` on `mountpoint`; always unmounted on destruction, also
/// when a REQUIRE fails in between (fusermount3 -u, then a lazy unmount, then SIGKILL).
class cachefs_mount {
public:
    cachefs_mount(const fs::path& backing, fs::path mountpoint, std::vector<std::string> extra = {})
        : mnt_(std::move(mountpoint)) {
        fs::create_directories(mnt_);
        std::vector<std::string> argv{QR_CACHEFS};
        argv.insert(argv.end(), extra.begin(), extra.end());
        // Foreground, single-threaded (libfuse 3.14's multi-threaded loop warns about its own
        // default thread limit; one client per mount needs no more).
        argv.insert(argv.end(), {backing.string(), mnt_.string(), "-f", "-s"});
        daemon_ = std::make_unique<qr_test::child_process>(argv);
        auto until = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < until) {
            struct ::statfs s {};
            if (::statfs(mnt_.c_str(), &s) == 0 && static_cast<long>(s.f_type) == fuse_magic) {
                mounted_ = true;
                break;
            }
            std::this_thread::sleep_for(20ms);
        }
    }
    ~cachefs_mount() {
        if (mounted_ && run({"/usr/bin/fusermount3", "-u", mnt_.string()}) != 0)
            run({"/usr/bin/fusermount3", "-u", "-z", mnt_.string()});
        daemon_->finish(5s); // exits once unmounted; killed after 5 s
        std::error_code ec;
        fs::remove(mnt_, ec);
    }
    cachefs_mount(const cachefs_mount&) = delete;
    cachefs_mount& operator=(const cachefs_mount&) = delete;
    bool mounted() const noexcept { return mounted_; }
    const fs::path& path() const noexcept { return mnt_; }

private:
    fs::path mnt_;
    std::unique_ptr<qr_test::child_process> daemon_;
    bool mounted_ = false;
};

bool fuse_available() { return ::access("/dev/fuse", R_OK | W_OK) == 0 && ::access("/usr/bin/fusermount3", X_OK) == 0; }

/// A forked child with a pipe each way: the parent sends one byte to start it and reads what
/// it printed once it exits.
struct client {
    pid_t pid = -1;
    int to_child = -1;
    int from_child = -1;
};

/// One client of the CAS workload: opens the store at `dir`, prints "ready" (or "refused CODE
/// MESSAGE" and exits), waits for the go byte, then increments "counter" by compare-and-swap
/// until it has `n` acknowledged increments or 20 s pass, printing "ack COMPARED VALUE REVISION"
/// for each acknowledged one (the value stored is "VALUE ID").
client start_client(const fs::path& dir, directory_store_options opts, int n, int id) {
    int down[2], up[2];
    REQUIRE(::pipe(down) == 0);
    REQUIRE(::pipe(up) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(down[1]);
        ::close(up[0]);
        std::string out;
        auto say = [&](const std::string& line) {
            std::string l = line + "\n";
            (void)!::write(up[1], l.data(), l.size());
        };
        std::error_code ec;
        std::unique_ptr<directory_store> store;
        try {
            store = std::make_unique<directory_store>(dir, opts);
        } catch (const std::system_error& e) {
            say("refused " + std::to_string(e.code().value()) + " " + e.what());
            ::_exit(0);
        }
        say("ready");
        char go = 0;
        if (::read(down[0], &go, 1) != 1) ::_exit(3);
        auto until = std::chrono::steady_clock::now() + 20s;
        int acked = 0;
        while (acked < n && std::chrono::steady_clock::now() < until) {
            auto kv = store->get("counter", ec);
            if (ec) continue;
            long long v = kv ? std::stoll(kv->value) : 0;
            store_revision compared = kv ? kv->mod_revision : 0;
            store_txn t;
            t.compares.push_back(kv ? key_compare::mod_revision_is("counter", compared)
                                    : key_compare::absent("counter"));
            // The writer's id in the value makes every frame unique, so an overwritten frame
            // cannot pass for the one that replaced it.
            t.on_success.push_back(store_op::put("counter", std::to_string(v + 1) + " " + std::to_string(id)));
            auto r = store->commit(t, ec);
            if (ec || !r.succeeded) continue;
            ++acked;
            say("ack " + std::to_string(compared) + " " + std::to_string(v + 1) + " " + std::to_string(r.revision));
        }
        store.reset();
        ::_exit(0);
    }
    ::close(down[0]);
    ::close(up[1]);
    return {pid, down[1], up[0]};
}

/// Reads one line from the client (bounded wait).
std::string read_line(int fd, std::chrono::milliseconds timeout) {
    std::string line;
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        char c;
        if (::read(fd, &c, 1) != 1) break;
        if (c == '\n') return line;
        line += c;
    }
    return line;
}

/// Waits for the client's exit (killing it after `timeout`) and returns everything it printed.
std::vector<std::string> finish_client(client& c, std::chrono::seconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(c.pid, &status, WNOHANG) != c.pid) {
        if (std::chrono::steady_clock::now() >= until) {
            ::kill(c.pid, SIGKILL);
            ::waitpid(c.pid, &status, 0);
            break;
        }
        std::this_thread::sleep_for(10ms);
    }
    std::vector<std::string> lines;
    std::string all;
    char b[4096];
    ssize_t n;
    while ((n = ::read(c.from_child, b, sizeof b)) > 0)
        all.append(b, static_cast<std::size_t>(n));
    std::istringstream in(all);
    for (std::string l; std::getline(in, l);)
        lines.push_back(l);
    ::close(c.from_child);
    ::close(c.to_child);
    return lines;
}

struct ack {
    store_revision compared = 0;
    long long value = 0;
    store_revision revision = 0;
    int client = 0;
};

std::vector<ack> parse_acks(const std::vector<std::string>& lines, int client) {
    std::vector<ack> out;
    for (const auto& l : lines) {
        std::istringstream in(l);
        std::string word;
        ack a;
        a.client = client;
        if (in >> word >> a.compared >> a.value >> a.revision && word == "ack") out.push_back(a);
    }
    return out;
}

/// The counter as the store at `dir` (opened locally, not through a mount) holds it now.
std::optional<key_value> final_counter(const fs::path& dir, std::string& failure) {
    directory_store_options o;
    o.create = false;
    try {
        directory_store store(dir, o);
        return store.get("counter");
    } catch (const std::system_error& e) {
        failure = e.what();
        return std::nullopt;
    }
}

/// Runs the CAS workload with one client per entry of `dirs` (all the same store), checks
/// that every acknowledged increment survived and that no compare was accepted twice, and
/// returns the clients' output (the first line of each: "ready" or "refused ...").
std::vector<std::vector<std::string>> cas_workload(const fs::path& backing, const std::vector<fs::path>& dirs,
                                                   const directory_store_options& opts, int n) {
    std::vector<client> clients;
    for (const auto& d : dirs)
        clients.push_back(start_client(d, opts, n, static_cast<int>(clients.size())));
    std::vector<std::string> first;
    for (auto& c : clients)
        first.push_back(read_line(c.from_child, 15s));
    for (auto& c : clients)
        if (first[&c - clients.data()] == "ready") (void)!::write(c.to_child, "g", 1);
    std::vector<std::vector<std::string>> out;
    for (std::size_t i = 0; i < clients.size(); ++i) {
        auto lines = finish_client(clients[i], 60s);
        lines.insert(lines.begin(), first[i]);
        out.push_back(std::move(lines));
    }

    std::vector<ack> acks;
    for (std::size_t i = 0; i < out.size(); ++i) {
        auto a = parse_acks(out[i], static_cast<int>(i));
        MESSAGE("client " << i << " through " << dirs[i] << ": " << out[i].front() << ", " << a.size() << " acks");
        acks.insert(acks.end(), a.begin(), a.end());
    }
    std::string failure;
    auto last = final_counter(backing, failure);
    CHECK_MESSAGE(failure.empty(), "the backing store no longer opens: " << failure);
    // Each acknowledged CAS read value v and wrote v + 1; if every one was serialized and
    // survived, the values are 1..acks, each written once, and the counter holds the last.
    std::map<store_revision, int> by_compare;
    std::map<long long, int> by_value;
    const ack* newest = nullptr;
    for (const auto& a : acks) {
        ++by_compare[a.compared];
        ++by_value[a.value];
        if (!newest || a.revision > newest->revision) newest = &a;
    }
    int stale_compares = 0;
    for (const auto& [rev, count] : by_compare)
        stale_compares += count - 1;
    long long final_value = last ? std::stoll(last->value) : -1;
    std::error_code sec;
    auto log_size = fs::file_size(backing / directory_store::log_file_name, sec);
    MESSAGE(acks.size() << " acknowledged CAS increments; " << stale_compares
                        << " of them passed a compare that another acknowledged increment had already consumed; "
                        << "the store holds "
                        << (last ? "\"" + last->value + "\" at revision " + std::to_string(last->mod_revision)
                                 : std::string("no counter"))
                        << " (log "
                        << (sec ? std::string("missing: ") + sec.message() : std::to_string(log_size) + " bytes")
                        << ")");
    CHECK(stale_compares == 0);
    CHECK(final_value == static_cast<long long>(acks.size()));
    if (newest && last) CHECK(last->value == std::to_string(newest->value) + " " + std::to_string(newest->client));
    return out;
}

struct backing_store {
    qr_test::temp_dir root{"shared-fs"};
    fs::path backing = root.path() / "backing";
    backing_store() {
        fs::create_directories(backing);
        directory_store_options o;
        o.create = true;
        directory_store s(backing, o);
        s.put("counter", "0");
    }
};
#endif

} // namespace

TEST_SUITE("shared_fs") {

#ifdef QR_CACHEFS
    TEST_CASE("the cachefs harness caches like two NFS clients and forwards locks between mounts") {
        if (!fuse_available()) {
            MESSAGE("skipped: /dev/fuse or /usr/bin/fusermount3 is missing");
            return;
        }
        qr_test::temp_dir root("cachefs");
        auto backing = root.path() / "backing";
        fs::create_directories(backing);
        {
            std::FILE* f = std::fopen((backing / "data").c_str(), "w");
            REQUIRE(f);
            std::fputs("one", f);
            std::fclose(f);
        }
        cachefs_mount a(backing, root.path() / "a"), b(backing, root.path() / "b");
        REQUIRE(a.mounted());
        REQUIRE(b.mounted());
        CHECK(fs::file_size(b.path() / "data") == 3); // b caches the size now

        // a appends; b keeps its cached size (and data) for the attribute timeout.
        int fa = ::open((a.path() / "data").c_str(), O_WRONLY | O_APPEND);
        REQUIRE(fa >= 0);
        CHECK(::write(fa, " two", 4) == 4);
        CHECK(::fsync(fa) == 0);
        ::close(fa);
        CHECK(fs::file_size(backing / "data") == 7);
        CHECK(fs::file_size(a.path() / "data") == 7);
        CHECK(fs::file_size(b.path() / "data") == 3);

        // An fcntl lock through a excludes one through b (as with NFSv4 or lockd).
        int la = ::open((a.path() / "data").c_str(), O_RDWR);
        REQUIRE(la >= 0);
        struct flock w {};
        w.l_type = F_WRLCK;
        w.l_whence = SEEK_SET;
        REQUIRE(::fcntl(la, F_SETLK, &w) == 0);
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int lb = ::open((b.path() / "data").c_str(), O_RDWR);
            struct flock w2 {};
            w2.l_type = F_WRLCK;
            w2.l_whence = SEEK_SET;
            int r = ::fcntl(lb, F_SETLK, &w2);
            ::_exit(r == -1 && (errno == EAGAIN || errno == EACCES) ? 0 : 1);
        }
        int status = 0;
        ::waitpid(pid, &status, 0);
        CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0),
                      "a lock through mount b was granted while a held it");
        ::close(la);
    }

    // Against the code before the fs check (commit cd2d084) both clients opened and ran: in 8
    // of 8 runs of 40 increments each, 1 to 19 of the 80 acknowledged CAS puts passed a compare
    // that the other client's acknowledged put had already consumed, and the counter ended
    // short by as many (docs/stores.md, "Supported file systems", has the other variants).
    TEST_CASE("two caching clients of one store never lose an acknowledged CAS put") {
        if (!fuse_available()) {
            MESSAGE("skipped: /dev/fuse or /usr/bin/fusermount3 is missing");
            return;
        }
        backing_store s;
        auto before = read_file(s.backing / directory_store::log_file_name);
        cachefs_mount a(s.backing, s.root.path() / "a"), b(s.backing, s.root.path() / "b");
        REQUIRE(a.mounted());
        REQUIRE(b.mounted());
        directory_store_options o;
        o.create = false;
        o.keep_revisions = 10; // compactions (renames) too, every 20 frames
        auto out = cas_workload(s.backing, {a.path(), b.path()}, o, 40);
        // Now refused, naming the file system and the path, before touching any file.
        for (std::size_t i = 0; i < out.size(); ++i) {
            CHECK_MESSAGE(
                out[i].front().rfind("refused " + std::to_string(static_cast<int>(errc::unsupported_filesystem)) + " ",
                                     0) == 0,
                out[i].front());
            CHECK(out[i].front().find("directory store on fuse at " + (i == 0 ? a : b).path().string()) !=
                  std::string::npos);
        }
        CHECK(read_file(s.backing / directory_store::log_file_name) == before);
        CHECK(!fs::exists(s.backing / "quorumreg.log.tmp"));
    }

    // The documented safe case of the override: every process through the same mount.
    TEST_CASE("with unsafe_single_client_fs, two processes through one caching mount lose nothing") {
        if (!fuse_available()) {
            MESSAGE("skipped: /dev/fuse or /usr/bin/fusermount3 is missing");
            return;
        }
        backing_store s;
        cachefs_mount a(s.backing, s.root.path() / "a");
        REQUIRE(a.mounted());
        directory_store_options o;
        o.create = false;
        o.keep_revisions = 10;
        o.unsafe_single_client_fs = true;
        auto out = cas_workload(s.backing, {a.path(), a.path()}, o, 40);
        for (const auto& lines : out)
            CHECK(parse_acks(lines, 0).size() == 40); // both ran to the end
    }

    // Why the override is unsafe: the defect itself, through two mounts. Not run by default
    // (it shows lost writes, so it fails by design, and how many is timing-dependent):
    //   test_shared_fs --test-suite=shared_fs --no-skip --test-case='*two caching mounts*'
    TEST_CASE("with unsafe_single_client_fs, two caching mounts lose acknowledged writes" * doctest::skip()) {
        if (!fuse_available()) return;
        backing_store s;
        cachefs_mount a(s.backing, s.root.path() / "a"), b(s.backing, s.root.path() / "b");
        REQUIRE(a.mounted());
        REQUIRE(b.mounted());
        directory_store_options o;
        o.create = false;
        o.keep_revisions = 10;
        o.unsafe_single_client_fs = true;
        cas_workload(s.backing, {a.path(), b.path()}, o, 40);
    }
#endif

    // ---- the check itself, with a faked statfs -------------------------------------------------

    TEST_CASE("classify_filesystem: network, cluster and FUSE types are refused, local and unknown ones allowed") {
        using detail::fs_kind;
        struct expect {
            std::uint32_t magic;
            const char* name;
            fs_kind kind;
        };
        for (const auto& e :
             {expect{0x6969, "nfs", fs_kind::network}, expect{0x517B, "smb", fs_kind::network},
              expect{0xFF534D42, "cifs", fs_kind::network}, expect{0xFE534D42, "smb2", fs_kind::network},
              expect{0x01021997, "9p", fs_kind::network}, expect{0x5346414F, "afs", fs_kind::network},
              expect{0x00C36400, "ceph", fs_kind::cluster}, expect{0x0BD00BD0, "lustre", fs_kind::cluster},
              expect{0x01161970, "gfs2", fs_kind::cluster}, expect{0x7461636F, "ocfs2", fs_kind::cluster},
              expect{0x65735546, "fuse", fs_kind::fuse}, expect{0xEF53, "ext4", fs_kind::local},
              expect{0x58465342, "xfs", fs_kind::local}, expect{0x9123683E, "btrfs", fs_kind::local},
              expect{0x01021994, "tmpfs", fs_kind::local}, expect{0x2FC12FC1, "zfs", fs_kind::local},
              expect{0xF2F52010, "f2fs", fs_kind::local}, expect{0x794C7630, "overlayfs", fs_kind::local},
              expect{0x12345678, "unknown", fs_kind::unknown}}) {
            auto info = detail::classify_filesystem(e.magic);
            CHECK_MESSAGE(std::string(info.name) == e.name, std::hex << e.magic);
            CHECK_MESSAGE(info.kind == e.kind, std::hex << e.magic);
        }
        // statfs's f_type is a signed long: CIFS's magic arrives sign-extended on 32-bit targets.
        struct ::statfs st {};
        st.f_type = static_cast<decltype(st.f_type)>(static_cast<std::int32_t>(0xFF534D42u));
        CHECK(std::string(detail::classify_filesystem(st).name) == "cifs");
    }

    TEST_CASE("a directory store on NFS or SMB is refused, naming the file system, and nothing is created") {
        for (std::uint32_t magic :
             {0x6969u, 0x517Bu, 0xFF534D42u, 0xFE534D42u, 0x01021997u, 0x00C36400u, 0x65735546u}) {
            qr_test::temp_dir d("fs-refused");
            directory_store_options o;
            o.create = true;
            o.io = std::make_shared<fake_fs_io>(magic);
            std::string name = detail::classify_filesystem(magic).name;
            try {
                directory_store s(d.path(), o);
                FAIL("opened on " << name);
            } catch (const error& e) {
                CHECK(e.code() == errc::unsupported_filesystem);
                std::string what = e.what();
                CHECK_MESSAGE(what.find("directory store on " + name + " at " + d.str()) != std::string::npos, what);
                CHECK_MESSAGE(what.find("use a local file system or the etcd store") != std::string::npos, what);
            }
            CHECK(fs::is_empty(d.path())); // no lock file, no log
            std::error_code ec;
            CHECK(directory_store::open(d.path(), o, ec) == nullptr);
            CHECK(ec == errc::unsupported_filesystem);
            // A store directory that does not exist yet is refused before it is created.
            CHECK(qr_test::code_of([&] { directory_store s(d.path() / "new" / "store", o); }) ==
                  errc::unsupported_filesystem);
            CHECK(fs::is_empty(d.path()));
        }
    }

    TEST_CASE("an existing store on NFS is refused for read-only opens too") {
        qr_test::temp_dir d("fs-ro");
        {
            directory_store_options o;
            o.create = true;
            directory_store s(d.path(), o);
            s.put("k", "v");
        }
        directory_store_options o;
        o.read_only = true;
        o.io = std::make_shared<fake_fs_io>(0x6969);
        CHECK(qr_test::code_of([&] { directory_store s(d.path(), o); }) == errc::unsupported_filesystem);
        o.read_only = false;
        CHECK(qr_test::code_of([&] { directory_store s(d.path(), o); }) == errc::unsupported_filesystem);
    }

    TEST_CASE("unsafe_single_client_fs opens on NFS; local and unknown file systems open without it") {
        qr_test::temp_dir d("fs-ok");
        directory_store_options o;
        o.create = true;
        o.io = std::make_shared<fake_fs_io>(0x6969);
        o.unsafe_single_client_fs = true;
        {
            directory_store s(d.path(), o);
            CHECK(s.put("k", "v") > 0);
        }
        o.unsafe_single_client_fs = false;
        for (std::uint32_t magic : {0xEF53u, 0x01021994u, 0x58465342u, 0x794C7630u, 0x12345678u}) {
            o.io = std::make_shared<fake_fs_io>(magic);
            directory_store s(d.path(), o);
            auto kv = s.get("k");
            REQUIRE(kv);
            CHECK(kv->value == "v");
        }
    }

    TEST_CASE("a failing statfs is reported, not taken for a local file system") {
        qr_test::temp_dir d("fs-eio");
        directory_store_options o;
        o.create = true;
        auto io = std::make_shared<fake_fs_io>(0xEF53);
        io->fail_errno = EIO;
        o.io = io;
        try {
            directory_store s(d.path(), o);
            FAIL("opened although statfs failed");
        } catch (const error& e) {
            CHECK(e.code() == errc::io_error); // EIO, mapped by from_errno
            CHECK(std::string(e.what()).find("statfs " + d.str()) != std::string::npos);
        }
        CHECK(fs::is_empty(d.path()));
    }

} // TEST_SUITE
