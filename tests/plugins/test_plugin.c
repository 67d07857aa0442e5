/* Test resource plugins for the monitor tests, one source built five ways (QR_PLUGIN_KIND):
 *   1 good        type "GoodType": behaves, with failure injection through marker files
 *   2 crash       type "CrashType": online() kills its monitor (SIGSEGV)
 *   3 hang        type "HangType": online() hangs forever, once, when <dir>/<name>.hang exists
 *   4 wrongtype   implements only "SomethingElse" (registering it as another type must fail)
 *   5 nostartup   exports no startup symbol
 *   6 loadcrash   type "LoadCrashType": crashes while being loaded (in a constructor) when a file
 *                 named like the library plus ".crash" exists beside it
 * A resource's parameters are a directory; in it, for resource <name>:
 *   <name>.sick          looks_alive and is_alive report failure
 *   <name>.online-fail   online() reports failure
 *   <name>.log           every call appends one line ("open", "online", "looks_alive", ...)
 * control code 1 echoes "<name>:<input>"; other codes are unsupported.
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

#ifndef QR_PLUGIN_KIND
#error "define QR_PLUGIN_KIND"
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

static quorumreg_resource_t t_open(const char* name, const char* parameters) {
    test_resource* r = (test_resource*)calloc(1, sizeof *r);
    if (!r) return NULL;
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->dir, sizeof r->dir, "%s", parameters ? parameters : "");
    note(r, "open");
    return r;
}

static void t_close(quorumreg_resource_t h) {
    note((test_resource*)h, "close");
    free(h);
}

static int t_online(quorumreg_resource_t h) {
    test_resource* r = (test_resource*)h;
    note(r, "online");
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

#if QR_PLUGIN_KIND == 1
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
