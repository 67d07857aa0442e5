/* An example resource plugin: type "Contoso.Cache".
 *
 * A cache whose parameters name a directory; online() creates <dir>/<name>.online, offline() and
 * terminate() remove it, and the health checks look for it. Everything the plugin knows is
 * rebuilt by open() from its parameters, so a monitor that is killed (kill -9) loses nothing:
 * the controller starts a new monitor, reloads this library and reopens the resource.
 */
#define _POSIX_C_SOURCE 200809L
#include <quorumreg/resource_api.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct cache {
    char marker[1400]; /* <dir>/<name>.online */
} cache;

static quorumreg_resource_t cache_open(const char* name, const char* parameters) {
    cache* c;
    if (!parameters || !*parameters) return NULL; /* a cache needs its directory */
    c = (cache*)calloc(1, sizeof *c);
    if (c) snprintf(c->marker, sizeof c->marker, "%s/%s.online", parameters, name);
    return c;
}
static void cache_close(quorumreg_resource_t r) { free(r); }
static int cache_online(quorumreg_resource_t r) {
    FILE* f = fopen(((cache*)r)->marker, "w");
    if (!f) return QUORUMREG_STATUS_FAILED;
    fclose(f);
    return QUORUMREG_STATUS_OK;
}
static int cache_offline(quorumreg_resource_t r) {
    unlink(((cache*)r)->marker);
    return QUORUMREG_STATUS_OK;
}
static void cache_terminate(quorumreg_resource_t r) { unlink(((cache*)r)->marker); }
static int cache_alive(quorumreg_resource_t r) { return access(((cache*)r)->marker, F_OK) == 0; }

QUORUMREG_RESOURCE_EXPORT const quorumreg_resource_functions*
quorumreg_resource_startup(uint32_t api_version, const char* type_name, const quorumreg_monitor_services* services) {
    static const quorumreg_resource_functions table = {sizeof(quorumreg_resource_functions),
                                                       QUORUMREG_RESOURCE_API_VERSION,
                                                       cache_open,
                                                       cache_close,
                                                       cache_online,
                                                       cache_offline,
                                                       cache_terminate,
                                                       cache_alive,
                                                       cache_alive,
                                                       NULL};
    (void)services;
    if (api_version < 1 || strcasecmp(type_name, "Contoso.Cache") != 0) return NULL;
    return &table;
}
