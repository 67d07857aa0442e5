/* Test resource plugins for the monitor tests, one source built five ways (QR_PLUGIN_KIND):
 *   1 good        type "GoodType": behaves, with failure injection through marker files
 *   2 crash       type "CrashType": online() kills its monitor (SIGSEGV)
 *   3 hang        type "HangType": online() hangs forever, once, when <dir>/<name>.hang exists
 *   4 wrongtype   implements only "SomethingElse" (registering it as another type must fail)
 *   5 nostartup   exports no startup symbol
 *   6 loadcrash   type "LoadCrashType": crashes while being loaded (in a constructor) when a file
 *                 named like the library plus ".crash" exists beside it
 *   7 alt         type "GoodType" too (a second build to re-register the type on); misbehaves on
 *                 markers beside the library: <lib>.probe-hang (the constructor closes stdout and
 *                 sleeps 20 s), <lib>.probe-fork (the constructor forks a child that keeps stdout
 *                 open for 20 s); the constructor writes its pid to <lib>.pid and the forked
 *                 child's to <lib>.childpid
 * A resource's parameters are a directory; in it, for resource <name>:
 *   <name>.sick          looks_alive and is_alive report failure
 *   <name>.online-fail   online() reports failure
 *   <name>.log           every call appends one line ("open", "online", "looks_alive", ...)
 *   <name>.stderr        online() writes a line to stderr first (which the test may have made a
 *                        broken pipe)
 *   <name>.fork          online() forks a child that sleeps 120 s; its pid goes to <name>.childpid
 *   <name>.thread-crash  (kind 7) open() starts a thread that crashes the monitor 300 ms later
 * control code 1 echoes "<name>:<input>"; code 77 answers the build's identity ("good", "alt", ...);
 * code 78 sleeps <input> milliseconds, then answers "slept";
 * other codes are unsupported.
 */
#define _GNU_SOURCE 1 /* dladdr */
#include <quorumreg/resource_api.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#if QR_PLUGIN_KIND == 7
#include <pthread.h>
#endif

#ifndef QR_PLUGIN_KIND
#error "define QR_PLUGIN_KIND"
#endif

/* Monitors load the verified copy of a library from a sealed memfd ("/proc/self/fd/N", which
 * readlink()s to "/memfd:qr:<original path> (deleted)"): dladdr() below reports the original
 * path, so markers beside the library keep working. */
static char qr_origin[1400];
__attribute__((unused)) static int qr_dladdr(const void* addr, Dl_info* info) {
    if (!dladdr(addr, info)) return 0;
    if (info->dli_fname && strncmp(info->dli_fname, "/proc/self/fd/", 14) == 0) {
        char link[1400];
        ssize_t n = readlink(info->dli_fname, link, sizeof link - 1);
        if (n > 0) {
            link[n] = 0;
            const char* prefix = "/memfd:qr:";
            char* end = strstr(link, " (deleted)");
            if (end) *end = 0;
            if (strncmp(link, prefix, strlen(prefix)) == 0) {
                snprintf(qr_origin, sizeof qr_origin, "%s", link + strlen(prefix));
                info->dli_fname = qr_origin;
            }
        }
    }
    return 1;
}
#define dladdr qr_dladdr

#if QR_PLUGIN_KIND == 7
#define QR_IDENT "alt"
#elif QR_PLUGIN_KIND == 1
#define QR_IDENT "good"
#else
#define QR_IDENT "other"
#endif

typedef struct test_resource {
    char name[256];
    char dir[1024];
} test_resource;

static int marker(const test_resource* r, const char* suffix) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s.%s", r->dir, r->name, suffix);
    return access(path, F_OK) == 0;
}

static void note(const test_resource* r, const char* what) {
    if (!r->dir[0]) return;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s.log", r->dir, r->name);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return;
    char line[64];
    int n = snprintf(line, sizeof line, "%s\n", what);
    if (n > 0) (void)!write(fd, line, (size_t)n);
    close(fd);
}

#if QR_PLUGIN_KIND == 7
/* A plugin-owned thread that brings the monitor down outside any plugin call. */
static void* crash_later(void* arg) {
    (void)arg;
    usleep(300 * 1000);
    raise(SIGSEGV);
    return NULL;
}
#endif

static quorumreg_resource_t t_open(const char* name, const char* parameters) {
    test_resource* r = (test_resource*)calloc(1, sizeof *r);
    if (!r) return NULL;
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->dir, sizeof r->dir, "%s", parameters ? parameters : "");
    note(r, "open");
#if QR_PLUGIN_KIND == 7
    if (marker(r, "thread-crash")) {
        pthread_t t;
        if (pthread_create(&t, NULL, crash_later, NULL) == 0) pthread_detach(t);
    }
#endif
    return r;
}

static void t_close(quorumreg_resource_t h) {
    note((test_resource*)h, "close");
    free(h);
}

static int t_online(quorumreg_resource_t h) {
    test_resource* r = (test_resource*)h;
    note(r, "online");
    if (marker(r, "fork")) {
        pid_t child = fork();
        if (child == 0) {
            for (int fd = 3; fd < 1024; ++fd)
                close(fd);
            sleep(120);
            _exit(0);
        }
        if (child > 0) {
            char path[1400], text[32];
            snprintf(path, sizeof path, "%s/%s.childpid", r->dir, r->name);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            int n = snprintf(text, sizeof text, "%d\n", (int)child);
            if (fd >= 0) {
                if (n > 0) (void)!write(fd, text, (size_t)n);
                close(fd);
            }
        }
    }
    if (marker(r, "stderr")) {
        static const char line[] = "test plugin: a line on stderr\n";
        (void)!write(STDERR_FILENO, line, sizeof line - 1);
    }
#if QR_PLUGIN_KIND == 2
    raise(SIGSEGV);
#elif QR_PLUGIN_KIND == 3
    if (marker(r, "hang") && !marker(r, "hung")) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s.hung", r->dir, r->name);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) close(fd);
        for (;;)
            pause();
    }
#endif
    return marker(r, "online-fail") ? QUORUMREG_STATUS_FAILED : QUORUMREG_STATUS_OK;
}

static int t_offline(quorumreg_resource_t h) {
    note((test_resource*)h, "offline");
    return QUORUMREG_STATUS_OK;
}

static void t_terminate(quorumreg_resource_t h) { note((test_resource*)h, "terminate"); }

static int t_looks_alive(quorumreg_resource_t h) {
    note((test_resource*)h, "looks_alive");
    return !marker((test_resource*)h, "sick");
}

static int t_is_alive(quorumreg_resource_t h) {
    note((test_resource*)h, "is_alive");
    return !marker((test_resource*)h, "sick");
}

/* Control code 1 echoes "<name>:<input>"; every other code is unsupported. */
static int t_control(quorumreg_resource_t h, uint32_t code, const void* in, size_t in_size, void* out, size_t out_size,
                     size_t* out_written) {
    test_resource* r = (test_resource*)h;
    note(r, "control");
    if (code == 77) {
        size_t n = strlen(QR_IDENT);
        if (n > out_size) return QUORUMREG_STATUS_INVALID_ARGUMENT;
        memcpy(out, QR_IDENT, n);
        *out_written = n;
        return QUORUMREG_STATUS_OK;
    }
    if (code == 78) { /* a slow call: sleeps <input> ms (< 1024 bytes), then answers "slept" */
        char ms[16] = {0};
        memcpy(ms, in, in_size < sizeof ms - 1 ? in_size : sizeof ms - 1);
        usleep((useconds_t)atoi(ms) * 1000);
        if (out_size < 5) return QUORUMREG_STATUS_INVALID_ARGUMENT;
        memcpy(out, "slept", 5);
        *out_written = 5;
        return QUORUMREG_STATUS_OK;
    }
    if (code != 1) return QUORUMREG_STATUS_UNSUPPORTED;
    size_t name_len = strlen(r->name);
    if (name_len + 1 + in_size > out_size) return QUORUMREG_STATUS_INVALID_ARGUMENT;
    memcpy(out, r->name, name_len);
    ((char*)out)[name_len] = ':';
    if (in_size) memcpy((char*)out + name_len + 1, in, in_size);
    *out_written = name_len + 1 + in_size;
    return QUORUMREG_STATUS_OK;
}

static const quorumreg_resource_functions table = {sizeof(quorumreg_resource_functions),
                                                   QUORUMREG_RESOURCE_API_VERSION,
                                                   t_open,
                                                   t_close,
                                                   t_online,
                                                   t_offline,
                                                   t_terminate,
                                                   t_looks_alive,
                                                   t_is_alive,
                                                   t_control};

#if QR_PLUGIN_KIND == 1 || QR_PLUGIN_KIND == 7
#define QR_TYPE "GoodType"
#elif QR_PLUGIN_KIND == 2
#define QR_TYPE "CrashType"
#elif QR_PLUGIN_KIND == 3
#define QR_TYPE "HangType"
#elif QR_PLUGIN_KIND == 4
#define QR_TYPE "SomethingElse"
#elif QR_PLUGIN_KIND == 6
#define QR_TYPE "LoadCrashType"
__attribute__((constructor)) static void crash_on_load_if_asked(void) {
    Dl_info info;
    if (!dladdr((void*)&crash_on_load_if_asked, &info) || !info.dli_fname) return;
    char marker_path[1400];
    snprintf(marker_path, sizeof marker_path, "%s.crash", info.dli_fname);
    if (access(marker_path, F_OK) == 0) raise(SIGSEGV);
}
#endif

#if QR_PLUGIN_KIND == 7
static int beside(const char* lib, const char* suffix, char* path, size_t size) {
    snprintf(path, size, "%s.%s", lib, suffix);
    return access(path, F_OK) == 0;
}
static void write_pid(const char* lib, const char* suffix) {
    char path[1400], text[32];
    snprintf(path, sizeof path, "%s.%s", lib, suffix);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    int n = snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (n > 0) (void)!write(fd, text, (size_t)n);
    close(fd);
}
__attribute__((constructor)) static void misbehave_on_load_if_asked(void) {
    Dl_info info;
    if (!dladdr((void*)&misbehave_on_load_if_asked, &info) || !info.dli_fname) return;
    char path[1400];
    write_pid(info.dli_fname, "pid");
    if (beside(info.dli_fname, "probe-hang", path, sizeof path)) {
        close(STDOUT_FILENO);
        sleep(20); /* bounded, so a test against an unfixed probe still ends */
        _exit(0);
    }
    if (beside(info.dli_fname, "probe-fork", path, sizeof path)) {
        pid_t child = fork();
        if (child == 0) {
            write_pid(info.dli_fname, "childpid");
            sleep(20); /* holds the probe's stdout open */
            _exit(0);
        }
    }
}
#endif

#if QR_PLUGIN_KIND != 5
QUORUMREG_RESOURCE_EXPORT const quorumreg_resource_functions*
quorumreg_resource_startup(uint32_t api_version, const char* type_name, const quorumreg_monitor_services* services) {
    (void)services;
    if (api_version < 1 || !type_name || strcasecmp(type_name, QR_TYPE) != 0) return NULL;
    return &table;
}
#else
/* Exports something, but not the startup function. */
QUORUMREG_RESOURCE_EXPORT const void* quorumreg_resource_startup_misspelled(void) { return &table; }
#endif
