/* quorumreg — the resource plugin ABI (plain C, versioned).
 *
 * A resource plugin is a shared library (a "resource DLL" in MSCS terms) that a resource
 * monitor process loads with dlopen(). It exports exactly one symbol,
 * QUORUMREG_RESOURCE_STARTUP_SYMBOL ("quorumreg_resource_startup"), which the monitor calls
 * once per resource type it hosts; the function returns a table of entry points for that
 * type, or NULL if the library does not implement the type (a registration with a type name
 * the library does not know is therefore rejected as errc::plugin_type_mismatch).
 *
 * @code
 * #include <quorumreg/resource_api.h>
 * static quorumreg_resource_t my_open(const char* name, const char* params) { ... }
 * ...
 * QUORUMREG_RESOURCE_EXPORT const quorumreg_resource_functions*
 * quorumreg_resource_startup(uint32_t api_version, const char* type_name,
 *                            const quorumreg_monitor_services* services) {
 *     static const quorumreg_resource_functions table = {
 *         sizeof(quorumreg_resource_functions), QUORUMREG_RESOURCE_API_VERSION,
 *         my_open, my_close, my_online, my_offline, my_terminate, my_looks_alive, my_is_alive, NULL};
 *     if (api_version < 1 || strcasecmp(type_name, "Contoso.Cache") != 0) return NULL;
 *     return &table;
 * }
 * @endcode
 *
 * Threading contract (mirrors the MSCS resource API, made explicit):
 *  - startup runs once per (type, monitor process), before any other entry point of that
 *    type, on the monitor's loader thread. It must be quick and must not block on I/O that
 *    can hang: it runs under the type's deadlock timeout like every other call.
 *  - Every resource has its own worker thread in the monitor. All entry points for ONE
 *    resource are called on that thread, one at a time, in the order the controller issued
 *    them: open, then online/offline/looks_alive/is_alive/terminate any number of times,
 *    then close. They never overlap for the same resource.
 *  - Entry points for DIFFERENT resources (of the same or other types) run concurrently on
 *    different threads, so state shared between resources (globals) must be thread-safe.
 *  - online and offline may block until the resource really is online/offline; there is no
 *    separate "pending" protocol: the resource is online-pending (offline-pending) for the
 *    duration of the call.
 *  - looks_alive must be cheap (a glance: "is the process still there?"), is_alive thorough.
 *    They are polled at the type's registered intervals (defaults 5 s and 60 s); a
 *    looks_alive failure triggers an immediate is_alive; an is_alive failure marks the
 *    resource failed and applies the restart policy (terminate, then online again).
 *  - terminate must bring the resource down immediately and unconditionally; it is used after
 *    a failure, instead of offline. It is never called concurrently with another call for the
 *    same resource.
 *
 * Timeout contract: every call (startup included) must return within the type's registered
 * deadlock timeout. A call that exceeds it gets the WHOLE monitor process killed (SIGKILL):
 * a hung plugin cannot be interrupted safely inside a process. Every resource hosted by that
 * monitor is then re-hosted in a new monitor (types re-resolved from the cluster store, libraries
 * reloaded and hash-checked, resources reopened and brought back to their target state).
 * A plugin that crashes or hangs its monitor twice within the restart period is moved to a
 * monitor of its own. Plugins must therefore keep no state that only lives in the monitor's
 * memory and cannot be rebuilt by open().
 *
 * Versioning: QUORUMREG_RESOURCE_API_VERSION grows when entry points are appended. A monitor
 * passes the highest version it speaks; a plugin returns a table whose api_version is at most
 * that and whose struct_size covers the fields of that version. Fields are only ever appended.
 */
#ifndef QUORUMREG_RESOURCE_API_H
#define QUORUMREG_RESOURCE_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Highest ABI version this header describes. */
#define QUORUMREG_RESOURCE_API_VERSION 1u

/** Name of the one symbol a plugin exports. */
#define QUORUMREG_RESOURCE_STARTUP_SYMBOL "quorumreg_resource_startup"

/** Marks the startup function as exported even when the plugin builds with hidden visibility. */
#if defined(__GNUC__) || defined(__clang__)
#define QUORUMREG_RESOURCE_EXPORT __attribute__((visibility("default")))
#else
#define QUORUMREG_RESOURCE_EXPORT
#endif

/** Opaque per-resource handle returned by open(); the plugin owns what it points to. */
typedef void* quorumreg_resource_t;

/** Status codes returned by online/offline/control. Anything non-zero is a failure. */
typedef enum quorumreg_status {
    QUORUMREG_STATUS_OK = 0,
    QUORUMREG_STATUS_FAILED = 1,
    QUORUMREG_STATUS_INVALID_ARGUMENT = 2,
    QUORUMREG_STATUS_UNSUPPORTED = 3
} quorumreg_status;

/** Log levels for quorumreg_monitor_services::log. */
typedef enum quorumreg_log_level {
    QUORUMREG_LOG_ERROR = 0,
    QUORUMREG_LOG_WARNING = 1,
    QUORUMREG_LOG_INFO = 2,
    QUORUMREG_LOG_DEBUG = 3
} quorumreg_log_level;

/** Services the monitor offers to plugins; valid for the lifetime of the monitor process. */
typedef struct quorumreg_monitor_services {
    uint32_t struct_size; /**< sizeof(quorumreg_monitor_services) of the monitor's build */
    uint32_t api_version; /**< the monitor's QUORUMREG_RESOURCE_API_VERSION */
    /** Writes one line to the monitor's log (stderr of the monitor). Thread-safe. */
    void (*log)(int level, const char* type_name, const char* message);
} quorumreg_monitor_services;

/** The entry points of one resource type (version 1). */
typedef struct quorumreg_resource_functions {
    uint32_t struct_size; /**< sizeof(quorumreg_resource_functions) as the plugin was built */
    uint32_t api_version; /**< ABI version this table follows (<= the monitor's) */
    /** Opens a resource: allocate state, parse parameters; must not bring it online.
     *  Returns NULL on failure. `parameters` is the resource's opaque parameter string. */
    quorumreg_resource_t (*open)(const char* resource_name, const char* parameters);
    /** Releases what open() allocated. The resource is offline or terminated. */
    void (*close)(quorumreg_resource_t resource);
    /** Brings the resource online; blocks until it is (or failed). */
    int (*online)(quorumreg_resource_t resource);
    /** Takes the resource offline gracefully; blocks until it is. */
    int (*offline)(quorumreg_resource_t resource);
    /** Takes the resource down immediately, without grace. */
    void (*terminate)(quorumreg_resource_t resource);
    /** Cheap health check: non-zero if the resource appears to be alive. */
    int (*looks_alive)(quorumreg_resource_t resource);
    /** Thorough health check: non-zero if the resource is alive. */
    int (*is_alive)(quorumreg_resource_t resource);
    /** Optional (may be NULL): resource-specific control code. Writes at most out_size bytes
     *  to out and their count to *out_written. */
    int (*control)(quorumreg_resource_t resource, uint32_t code, const void* in, size_t in_size, void* out,
                   size_t out_size, size_t* out_written);
} quorumreg_resource_functions;

/** Signature of the startup symbol. Returns the table for `type_name` (compare it the way the
 *  cluster does: ASCII case-insensitively), or NULL if this library does not implement it or
 *  does not speak `api_version`. The returned table must stay valid while the library is loaded. */
typedef const quorumreg_resource_functions* (*quorumreg_resource_startup_fn)(
    uint32_t api_version, const char* type_name, const quorumreg_monitor_services* services);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* QUORUMREG_RESOURCE_API_H */
