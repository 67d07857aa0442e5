// Arbitration for the directory store: a Boost.Interprocess file_lock between processes and
// a timed mutex between threads of one process, shared by every directory_store object that
// opens the same directory in this process.
//
// Why the per-process registry: file_lock is a POSIX fcntl lock, and fcntl locks belong to
// the process, not the thread or the object: two objects in one process would not exclude
// each other, and closing ANY descriptor of the lock file drops every lock the process holds
// on it. So each process opens the lock file once (keyed by device and inode) and keeps that
// descriptor open while any store object uses it; threads serialize on the mutex.
#pragma once

#include <quorumreg/detail/file_io.hpp>
#include <quorumreg/error.hpp>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/sync/file_lock.hpp>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quorumreg::detail {

class dir_process_lock {
public:
    /// The process-wide lock object for the lock file at `path`, created 0600 if missing.
    /// The file calls go through `io` (the opening store's seam).
    /// With `read_only`, the file is never created or opened for writing: it is opened
    /// O_RDONLY and only shared locks are taken on it (fcntl F_RDLCK works on a read-only
    /// descriptor); a missing file is nullptr with `ec` clear (the caller reads unlocked). A
    /// writer that later asks for the same file in this process upgrades the shared object.
    static std::shared_ptr<dir_process_lock> get(file_io& io, const std::string& path, std::error_code& ec,
                                                 std::string& detail, bool read_only = false) {
        static std::mutex registry_mu;
        static auto* registry = new std::map<std::pair<dev_t, ino_t>, std::weak_ptr<dir_process_lock>>();
        // Deliberately leaked: a forked child must never run the parent's entries' destructors
        // (closing their descriptors would be harmless, but order at exit is not ours to pick).
        std::lock_guard g(registry_mu);
        struct ::stat st {};
        if (io.stat(path.c_str(), &st) == 0) {
            auto it = registry->find({st.st_dev, st.st_ino});
            if (it != registry->end()) {
                auto p = it->second.lock();
                if (p && p->pid_ == ::getpid()) {
                    if (!read_only && !p->writable_ && !p->upgrade(io, path, ec, detail)) return nullptr;
                    return p;
                }
            }
        }
        // Nobody in this process has the file open (or only a parent did, before fork): opening
        // it now cannot drop a lock this process holds.
        int fd = read_only ? io.open(path.c_str(), O_RDONLY, 0) : io.open(path.c_str(), O_RDWR | O_CREAT, 0600);
        if (fd < 0) {
            int e = errno;
            if (read_only && e == ENOENT) return nullptr;
            ec = from_errno(e);
            detail = "open " + path + ": " + std::strerror(e);
            return nullptr;
        }
        if (io.fstat(fd, &st) != 0) {
            int e = errno;
            io.close(fd);
            ec = from_errno(e);
            detail = "stat " + path + ": " + std::strerror(e);
            return nullptr;
        }
        std::shared_ptr<dir_process_lock> p(new dir_process_lock(fd));
        if (!read_only && !p->upgrade(io, path, ec, detail)) return nullptr; // ~dir_process_lock closes fd
        (*registry)[{st.st_dev, st.st_ino}] = p;
        return p;
    }

    ~dir_process_lock() {
        // The file_lock's descriptor closes first (it holds no lock by now), then ours.
        lock_ = boost::interprocess::file_lock();
        ::close(fd_);
    }
    dir_process_lock(const dir_process_lock&) = delete;
    dir_process_lock& operator=(const dir_process_lock&) = delete;

    /// Takes the thread mutex, then the file lock (exclusive or shared), before `until`.
    bool lock(bool exclusive, std::chrono::steady_clock::time_point until) {
        {
            // A mutex + condition variable rather than std::timed_mutex: its timed lock goes
            // through pthread_mutex_clocklock, which ThreadSanitizer cannot see.
            std::unique_lock lk(mu_);
            if (!free_.wait_until(lk, until, [&] { return !held_; })) return false;
            held_ = true;
        }
        auto pause = std::chrono::microseconds(50);
        while (true) {
            bool ok = false;
            if (!writable_) {
                // Opened read-only: shared locks only, taken on our O_RDONLY descriptor.
                if (exclusive) {
                    release_thread_lock();
                    return false;
                }
                struct ::flock fl {};
                fl.l_type = F_RDLCK;
                fl.l_whence = SEEK_SET;
                ok = ::fcntl(fd_, F_SETLK, &fl) == 0;
            } else {
                try {
                    ok = exclusive ? lock_.try_lock() : lock_.try_lock_sharable();
                } catch (const boost::interprocess::interprocess_exception&) {
                    ok = false;
                }
            }
            if (ok) {
                exclusive_ = exclusive;
                return true;
            }
            if (std::chrono::steady_clock::now() >= until) {
                release_thread_lock();
                return false;
            }
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::microseconds(2000));
        }
    }

    void unlock() {
        if (!writable_) {
            struct ::flock fl {};
            fl.l_type = F_UNLCK;
            fl.l_whence = SEEK_SET;
            ::fcntl(fd_, F_SETLK, &fl);
            release_thread_lock();
            return;
        }
        try {
            if (exclusive_)
                lock_.unlock();
            else
                lock_.unlock_sharable();
        } catch (const boost::interprocess::interprocess_exception&) {
            // Unlocking an fcntl lock only fails on a bad descriptor, which we own.
        }
        release_thread_lock();
    }

private:
    void release_thread_lock() {
        {
            std::lock_guard lk(mu_);
            held_ = false;
        }
        free_.notify_one();
    }

    explicit dir_process_lock(int fd) : fd_(fd), pid_(::getpid()) {}

    /// Attaches the Boost file_lock (which opens the file read-write itself). Waits until no
    /// thread of this process holds the lock, so no lock call sees the switch half done.
    bool upgrade(file_io& io, const std::string& path, std::error_code& ec, std::string& detail) {
        std::unique_lock lk(mu_);
        free_.wait(lk, [&] { return !held_; });
        struct wake_next { // a waiter woken for us passes the turn on
            std::condition_variable& cv;
            ~wake_next() { cv.notify_one(); }
        } wake{free_};
        if (writable_) return true;
        if (io.attach_lock(path.c_str()) != 0) {
            int e = errno;
            ec = from_errno(e);
            detail = "file_lock " + path + ": " + std::strerror(e);
            return false;
        }
        try {
            lock_ = boost::interprocess::file_lock(path.c_str());
        } catch (const boost::interprocess::interprocess_exception& e) {
            ec = errc::lock_failed;
            detail = "file_lock " + path + ": " + e.what();
            return false;
        }
        writable_ = true;
        return true;
    }

    int fd_;
    bool writable_ = false; // the Boost file_lock is attached (exclusive locks possible)
    boost::interprocess::file_lock lock_;
    pid_t pid_;
    std::mutex mu_;
    std::condition_variable free_;
    bool held_ = false;      // a thread of this process holds the store lock
    bool exclusive_ = false; // written and read only by the holder
};

} // namespace quorumreg::detail
