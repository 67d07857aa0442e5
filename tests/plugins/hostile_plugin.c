/* A hostile resource plugin (type "HostileType") for the monitor boundary tests. From inside its
 * monitor process it attacks the controller's channel (fd 3, a SOCK_SEQPACKET socket) the way a
 * buggy or malicious plugin could. Parameters: "<dir>|<mode>"; online() of resource <name>
 * attacks once (while <dir>/<name>.attacked does not exist, which it then creates) and returns
 * success, so the re-hosted resource comes online in its replacement monitor. Modes:
 *   huge_length  length prefix 0xFFFFFFF0 on a short frame
 *   oversize     one 100 KiB datagram (longer than any frame)
 *   truncated    length prefix says 100 bytes, 10 follow
 *   empty        a zero-length datagram
 *   bad_kind     well-formed frame of an unknown message kind
 *   bad_index    a reply with request id 0 and an unknown error code
 *   bad_utf8     a reply whose text is not UTF-8
 *   garbage      random bytes
 *   flood        heartbeats as fast as the socket takes them, for up to 3 s
 *   reply_flood  2000 well-formed replies to request 1
 *   close_fd     closes the channel descriptor and carries on
 * Against the Boost.Interprocess transport (fd 3 is no socket), it scribbles over the
 * monitor-to-controller queue segment in /dev/shm instead.
 */
#include <quorumreg/resource_api.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct hostile {
    char name[256];
    char dir[1024];
    char mode[64];
} hostile;

static size_t put_u32(unsigned char* p, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = (unsigned char)(v >> (8 * i));
    return 4;
}

/* payload: magic, kind, varint req, varint res, u32 code, flag, str a, str b, str c */
static size_t payload(unsigned char* p, unsigned kind, unsigned req, uint32_t code, const char* a, size_t alen) {
    size_t n = put_u32(p, 0x514D4F32u);
    p[n++] = (unsigned char)kind;
    p[n++] = (unsigned char)req; /* < 128: one varint byte */
    p[n++] = 0;
    n += put_u32(p + n, code);
    p[n++] = 0;
    p[n++] = (unsigned char)alen; /* < 128 */
    memcpy(p + n, a, alen);
    n += alen;
    p[n++] = 0;
    p[n++] = 0;
    return n;
}

static void send_frame(const unsigned char* pl, size_t n) {
    unsigned char f[512];
    put_u32(f, (uint32_t)n);
    memcpy(f + 4, pl, n);
    (void)!send(3, f, n + 4, MSG_NOSIGNAL);
}

static void scribble_legacy_queue(void) {
    char cmd[4096];
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, cmd, sizeof cmd - 1);
    close(fd);
    if (n <= 0) return;
    cmd[n] = 0;
    for (char* p = cmd; p < cmd + n; p += strlen(p) + 1) {
        if (strncmp(p, "qrmon.", 6) != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "/dev/shm/%.400s.m2c", p);
        int q = open(path, O_RDWR | O_CLOEXEC);
        if (q < 0) return;
        unsigned char junk[256];
        memset(junk, 0xFF, sizeof junk);
        (void)!pwrite(q, junk, sizeof junk, 0);
        close(q);
        return;
    }
}

static void attack(const char* mode) {
    unsigned char pl[256];
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
        scribble_legacy_queue();
        return;
    }
    if (!strcmp(mode, "huge_length")) {
        unsigned char f[16] = {0};
        put_u32(f, 0xFFFFFFF0u);
        (void)!send(3, f, sizeof f, MSG_NOSIGNAL);
    } else if (!strcmp(mode, "oversize")) {
        size_t big = 100 * 1024;
        unsigned char* f = (unsigned char*)calloc(1, big);
        if (!f) return;
        put_u32(f, (uint32_t)(big - 4));
        (void)!send(3, f, big, MSG_NOSIGNAL);
        free(f);
    } else if (!strcmp(mode, "truncated")) {
        unsigned char f[14] = {0};
        put_u32(f, 100);
        (void)!send(3, f, sizeof f, MSG_NOSIGNAL);
    } else if (!strcmp(mode, "empty")) {
        (void)!send(3, "", 0, MSG_NOSIGNAL);
    } else if (!strcmp(mode, "bad_kind")) {
        send_frame(pl, payload(pl, 77, 1, 0, "", 0));
    } else if (!strcmp(mode, "bad_index")) {
        send_frame(pl, payload(pl, 32, 0, 0x7FFFFFF0u, "", 0));
    } else if (!strcmp(mode, "bad_utf8")) {
        send_frame(pl, payload(pl, 32, 1, 0, "\xff\xfe\xc0\x80", 4));
    } else if (!strcmp(mode, "garbage")) {
        unsigned char f[200];
        srand((unsigned)time(NULL));
        for (size_t i = 0; i < sizeof f; ++i)
            f[i] = (unsigned char)rand();
        put_u32(f, (uint32_t)(sizeof f - 4)); /* a well-framed frame of nonsense */
        (void)!send(3, f, sizeof f, MSG_NOSIGNAL);
    } else if (!strcmp(mode, "flood")) {
        size_t n = payload(pl, 33, 0, 0, "", 0);
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            unsigned char f[64];
            put_u32(f, (uint32_t)n);
            memcpy(f + 4, pl, n);
            if (send(3, f, n + 4, MSG_NOSIGNAL) < 0) {
                usleep(100); /* socket buffer full: keep pushing */
            }
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec >= 3) break;
        }
    } else if (!strcmp(mode, "reply_flood")) {
        size_t n = payload(pl, 32, 1, 0, "", 0);
        for (int i = 0; i < 2000; ++i)
            send_frame(pl, n);
    } else if (!strcmp(mode, "close_fd")) {
        close(3);
    }
}

static quorumreg_resource_t h_open(const char* name, const char* parameters) {
    hostile* h = (hostile*)calloc(1, sizeof *h);
    if (!h) return NULL;
    snprintf(h->name, sizeof h->name, "%s", name);
    const char* bar = parameters ? strchr(parameters, '|') : NULL;
    if (bar) {
        snprintf(h->dir, sizeof h->dir, "%.*s", (int)(bar - parameters), parameters);
        snprintf(h->mode, sizeof h->mode, "%s", bar + 1);
    }
    return h;
}

static void h_close(quorumreg_resource_t r) { free(r); }

static int h_online(quorumreg_resource_t r) {
    hostile* h = (hostile*)r;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s.attacked", h->dir, h->name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        attack(h->mode);
    }
    return QUORUMREG_STATUS_OK;
}

static int h_offline(quorumreg_resource_t r) {
    (void)r;
    return QUORUMREG_STATUS_OK;
}
static void h_terminate(quorumreg_resource_t r) { (void)r; }
static int h_alive(quorumreg_resource_t r) {
    (void)r;
    return 1;
}

static const quorumreg_resource_functions table = {sizeof(quorumreg_resource_functions),
                                                   QUORUMREG_RESOURCE_API_VERSION,
                                                   h_open,
                                                   h_close,
                                                   h_online,
                                                   h_offline,
                                                   h_terminate,
                                                   h_alive,
                                                   h_alive,
                                                   NULL};

QUORUMREG_RESOURCE_EXPORT const quorumreg_resource_functions*
quorumreg_resource_startup(uint32_t api_version, const char* type_name, const quorumreg_monitor_services* services) {
    (void)services;
    if (api_version < 1 || !type_name || strcasecmp(type_name, "HostileType") != 0) return NULL;
    return &table;
}
