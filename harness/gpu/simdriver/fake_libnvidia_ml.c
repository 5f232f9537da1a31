/*
 * A simulated NVIDIA driver library (libnvidia-ml.so.1) for the harness's simulated cluster.
 *
 * It stands in for the DRIVER, not for the Python bindings: the probe pod's own, unmodified
 * nvidia-ml-py bindings load it with ctypes exactly as they load the real library, so the sim runs
 * the same Python code a GPU node runs. Only the C entry points those bindings call for the probe
 * exist; anything else is absent, and the bindings report NVMLError_FunctionNotFound, as they do
 * against an old driver.
 *
 * What it reports comes from two places, read at nvmlInit (not at load):
 *  - `sim-nvml.tsv` in the directory this library was loaded from (the sim kubelet writes it per
 *    container): the node's GPUs, MIG devices, compute processes, the driver version and injected
 *    faults. Tab-separated lines:
 *        driver <version>
 *        gpu    <host index> <uuid> <name> <memory bytes> <mig capable 0|1>
 *        mig    <parent host index> <uuid> <name> <memory bytes>
 *        proc   <gpu or mig uuid> <pid> <used memory bytes>
 *        fault  <nvml function name> <visible index or -1> <nvmlReturn_t code>
 *  - NVIDIA_VISIBLE_DEVICES, which decides which device nodes the container was given, the way the
 *    NVIDIA container runtime decides it: `none` = none, `all` = all, else UUIDs / host indices;
 *    a MIG UUID gives its parent with only that MIG device. An id the node does not have is an
 *    error at init (the real runtime would not have started the container).
 * Return codes and struct layouts follow nvml.h (the same values nvidia-ml-py declares).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK 0
#define E_UNINITIALIZED 1
#define E_INVALID_ARGUMENT 2
#define E_NOT_SUPPORTED 3
#define E_NO_PERMISSION 4
#define E_NOT_FOUND 6
#define E_INSUFFICIENT_SIZE 7
#define E_UNKNOWN 999

#define MAX_GPUS 64
#define MAX_MIG 7
#define MAX_PROCS 256
#define MAX_FAULTS 64
#define TEXT 96

typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } mem_v2_t;
typedef struct { unsigned int gpu, memory; } util_t;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId, computeInstanceId; } proc_t;

typedef struct {
    char uuid[TEXT];
    char name[TEXT];
    unsigned long long memory;
} spec_t;

typedef struct {
    spec_t spec;
    int host_index;
    int mig_capable;
    int mig_count;          /* MIG devices configured on the node's GPU (MIG mode on when > 0) */
    spec_t mig[MAX_MIG];
} node_gpu_t;

/* A handle: a visible GPU, or one MIG device of it. */
typedef struct device {
    int is_mig;
    int visible_index;
    node_gpu_t *gpu;
    spec_t *spec;
    int mig_given;          /* parents only: MIG devices this container was given */
    int mig_slots[MAX_MIG]; /* their slots on the node's GPU */
    struct device *migs[MAX_MIG];
} device_t;

static node_gpu_t node[MAX_GPUS];
static int node_count;
static device_t devices[MAX_GPUS];
static device_t mig_handles[MAX_GPUS][MAX_MIG];
static int visible_count;
static struct { char uuid[TEXT]; unsigned int pid; unsigned long long used; } procs[MAX_PROCS];
static int proc_count;
static struct { char call[TEXT]; int index; int code; } faults[MAX_FAULTS];
static int fault_count;
static char driver[TEXT] = "550.54.15";
static int refcount;

static void copy_text(char *dst, const char *src) {
    strncpy(dst, src, TEXT - 1);
    dst[TEXT - 1] = '\0';
}

static int inventory_path(char *out, size_t size) {
    Dl_info info;
    if (!dladdr((void *)&inventory_path, &info) || !info.dli_fname) return 0;
    const char *slash = strrchr(info.dli_fname, '/');
    size_t dir = slash ? (size_t)(slash - info.dli_fname) : 0;
    if (dir + 16 >= size) return 0;
    memcpy(out, info.dli_fname, dir);
    strcpy(out + dir, dir ? "/sim-nvml.tsv" : "sim-nvml.tsv");
    return 1;
}

static node_gpu_t *by_host_index(int index) {
    for (int i = 0; i < node_count; i++)
        if (node[i].host_index == index) return &node[i];
    return NULL;
}

static int load_inventory(void) {
    char path[4096], line[1024];
    node_count = proc_count = fault_count = 0;
    if (!inventory_path(path, sizeof path)) return E_UNKNOWN;
    FILE *f = fopen(path, "r");
    if (!f) return E_UNKNOWN;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *fields[8] = {0};
        int n = 0;
        for (char *save = NULL, *tok = strtok_r(line, "\t", &save); tok && n < 8; tok = strtok_r(NULL, "\t", &save))
            fields[n++] = tok;
        if (n == 2 && !strcmp(fields[0], "driver")) {
            copy_text(driver, fields[1]);
        } else if (n == 6 && !strcmp(fields[0], "gpu") && node_count < MAX_GPUS) {
            node_gpu_t *g = &node[node_count++];
            memset(g, 0, sizeof *g);
            g->host_index = atoi(fields[1]);
            copy_text(g->spec.uuid, fields[2]);
            copy_text(g->spec.name, fields[3]);
            g->spec.memory = strtoull(fields[4], NULL, 10);
            g->mig_capable = atoi(fields[5]);
        } else if (n == 5 && !strcmp(fields[0], "mig")) {
            node_gpu_t *g = by_host_index(atoi(fields[1]));
            if (!g || g->mig_count >= MAX_MIG) { fclose(f); return E_UNKNOWN; }
            spec_t *m = &g->mig[g->mig_count++];
            copy_text(m->uuid, fields[2]);
            copy_text(m->name, fields[3]);
            m->memory = strtoull(fields[4], NULL, 10);
        } else if (n == 4 && !strcmp(fields[0], "proc") && proc_count < MAX_PROCS) {
            copy_text(procs[proc_count].uuid, fields[1]);
            procs[proc_count].pid = (unsigned int)strtoul(fields[2], NULL, 10);
            procs[proc_count].used = strtoull(fields[3], NULL, 10);
            proc_count++;
        } else if (n == 4 && !strcmp(fields[0], "fault") && fault_count < MAX_FAULTS) {
            copy_text(faults[fault_count].call, fields[1]);
            faults[fault_count].index = atoi(fields[2]);
            faults[fault_count].code = atoi(fields[3]);
            fault_count++;
        } else {
            fclose(f);
            return E_UNKNOWN;  /* a malformed inventory is a harness bug: never guess */
        }
    }
    fclose(f);
    return OK;
}

static device_t *parent_slot(node_gpu_t *g) {
    for (int i = 0; i < visible_count; i++)
        if (devices[i].gpu == g) return &devices[i];
    if (visible_count >= MAX_GPUS) return NULL;
    device_t *d = &devices[visible_count++];
    memset(d, 0, sizeof *d);
    d->gpu = g;
    d->spec = &g->spec;
    return d;
}

static int give_mig(device_t *d, int slot) {
    for (int i = 0; i < d->mig_given; i++)
        if (d->mig_slots[i] == slot) return OK;
    if (d->mig_given >= MAX_MIG) return E_UNKNOWN;
    d->mig_slots[d->mig_given++] = slot;
    return OK;
}

static int select_token(const char *token) {
    char *end;
    long index = strtol(token, &end, 10);
    node_gpu_t *g = NULL;
    if (*token && !*end) g = by_host_index((int)index);
    for (int i = 0; !g && i < node_count; i++)
        if (!strcmp(node[i].spec.uuid, token)) g = &node[i];
    if (g) {
        device_t *d = parent_slot(g);
        if (!d) return E_UNKNOWN;
        for (int s = 0; s < g->mig_count; s++)
            if (give_mig(d, s) != OK) return E_UNKNOWN;
        return OK;
    }
    for (int i = 0; i < node_count; i++)
        for (int s = 0; s < node[i].mig_count; s++)
            if (!strcmp(node[i].mig[s].uuid, token)) {
                device_t *d = parent_slot(&node[i]);
                return d ? give_mig(d, s) : E_UNKNOWN;
            }
    return E_UNKNOWN;
}

static int cmp_host_index(const void *a, const void *b) {
    return ((const device_t *)a)->gpu->host_index - ((const device_t *)b)->gpu->host_index;
}

static int select_devices(void) {
    const char *sel = getenv("NVIDIA_VISIBLE_DEVICES");
    visible_count = 0;
    if (!sel || !*sel || !strcmp(sel, "void")) return 12;  /* no driver inside the container */
    if (!strcmp(sel, "none")) return OK;
    if (!strcmp(sel, "all")) {
        for (int i = 0; i < node_count; i++) {
            char idx[16];
            snprintf(idx, sizeof idx, "%d", node[i].host_index);
            if (select_token(idx) != OK) return E_UNKNOWN;
        }
    } else {
        char buf[4096];
        strncpy(buf, sel, sizeof buf - 1);
        buf[sizeof buf - 1] = '\0';
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ') tok++;
            char *e = tok + strlen(tok);
            while (e > tok && e[-1] == ' ') *--e = '\0';
            if (*tok && select_token(tok) != OK) return E_UNKNOWN;
        }
    }
    /* MIG handles are made once the parents' order is final (handles point into fixed slots). */
    qsort(devices, (size_t)visible_count, sizeof devices[0], cmp_host_index);
    for (int i = 0; i < visible_count; i++) {
        devices[i].visible_index = i;
        for (int m = 0; m < devices[i].mig_given; m++) {
            device_t *h = &mig_handles[i][m];
            memset(h, 0, sizeof *h);
            h->is_mig = 1;
            h->visible_index = i;
            h->gpu = devices[i].gpu;
            h->spec = &devices[i].gpu->mig[devices[i].mig_slots[m]];
            devices[i].migs[m] = h;
        }
    }
    return OK;
}

static int check(const char *call, const device_t *d) {
    if (refcount <= 0) return E_UNINITIALIZED;
    for (int i = 0; i < fault_count; i++) {
        if (strcmp(faults[i].call, call)) continue;
        if (faults[i].index >= 0 && (!d || d->is_mig || d->visible_index != faults[i].index)) continue;
        return faults[i].code;
    }
    return OK;
}

static int valid(const device_t *d) {
    for (int i = 0; i < visible_count; i++) {
        if (d == &devices[i]) return 1;
        for (int m = 0; m < devices[i].mig_given; m++)
            if (d == devices[i].migs[m]) return 1;
    }
    return 0;
}

#define GUARD(call, d) do { if (refcount > 0 && (d) && !valid(d)) return E_INVALID_ARGUMENT; \
                            int rc_ = check(call, d); if (rc_ != OK) return rc_; } while (0)

/* An unprivileged container may not query a MIG-enabled parent GPU. */
static int mig_parent(const device_t *d) { return !d->is_mig && d->gpu->mig_count > 0; }

static unsigned long long used_on(const device_t *d) {
    unsigned long long sum = 0;
    for (int p = 0; p < proc_count; p++) {
        if (!strcmp(procs[p].uuid, d->spec->uuid)) sum += procs[p].used;
        for (int m = 0; !d->is_mig && m < d->mig_given; m++)
            if (!strcmp(procs[p].uuid, d->migs[m]->spec->uuid)) sum += procs[p].used;
    }
    return sum;
}

static int put_text(char *buf, unsigned int size, const char *text) {
    if (!buf) return E_INVALID_ARGUMENT;
    if (strlen(text) + 1 > size) return E_INSUFFICIENT_SIZE;
    strcpy(buf, text);
    return OK;
}

int nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    if (refcount > 0) { refcount++; return OK; }
    int rc = load_inventory();
    if (rc == OK) rc = select_devices();
    if (rc == OK) refcount = 1;
    return rc;
}
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlInit(void) { return nvmlInitWithFlags(0); }

int nvmlShutdown(void) {
    if (refcount <= 0) return E_UNINITIALIZED;
    refcount--;
    return OK;
}

const char *nvmlErrorString(int result) {
    switch (result) {
    case OK: return "Success";
    case E_UNINITIALIZED: return "Uninitialized";
    case E_INVALID_ARGUMENT: return "Invalid Argument";
    case E_NOT_SUPPORTED: return "Not Supported";
    case E_NO_PERMISSION: return "Insufficient Permissions";
    case E_NOT_FOUND: return "Not Found";
    case E_INSUFFICIENT_SIZE: return "Insufficient Size";
    case 12: return "NVML Shared Library Not Found";
    default: return "Unknown Error";
    }
}

int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    GUARD("nvmlSystemGetDriverVersion", NULL);
    return put_text(version, length, driver);
}

int nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    char text[TEXT + 8];
    GUARD("nvmlSystemGetNVMLVersion", NULL);
    /* "-sim": a simulated document never passes for one from a real driver. */
    snprintf(text, sizeof text, "12.%s-sim", driver);
    return put_text(version, length, text);
}

static int cuda_version(int *out) {
    if (!out) return E_INVALID_ARGUMENT;
    /* Driver branch -> the CUDA version it ships with; the sim needs a plausible, stable value. */
    int branch = atoi(driver);
    *out = branch == 535 ? 12020 : branch == 560 ? 12060 : branch == 570 ? 12080 : 12040;
    return OK;
}
int nvmlSystemGetCudaDriverVersion(int *v) { GUARD("nvmlSystemGetCudaDriverVersion", NULL); return cuda_version(v); }
int nvmlSystemGetCudaDriverVersion_v2(int *v) { GUARD("nvmlSystemGetCudaDriverVersion", NULL); return cuda_version(v); }

int nvmlDeviceGetCount_v2(unsigned int *count) {
    GUARD("nvmlDeviceGetCount", NULL);
    if (!count) return E_INVALID_ARGUMENT;
    *count = (unsigned int)visible_count;
    return OK;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, device_t **handle) {
    GUARD("nvmlDeviceGetHandleByIndex", NULL);
    if (!handle || index >= (unsigned int)visible_count) return E_INVALID_ARGUMENT;
    *handle = &devices[index];
    return OK;
}

int nvmlDeviceGetIndex(device_t *d, unsigned int *index) {
    GUARD("nvmlDeviceGetIndex", d);
    if (!d || !index) return E_INVALID_ARGUMENT;
    *index = (unsigned int)d->visible_index;
    return OK;
}

int nvmlDeviceGetName(device_t *d, char *name, unsigned int length) {
    GUARD("nvmlDeviceGetName", d);
    if (!d) return E_INVALID_ARGUMENT;
    return put_text(name, length, d->spec->name);
}

int nvmlDeviceGetUUID(device_t *d, char *uuid, unsigned int length) {
    GUARD("nvmlDeviceGetUUID", d);
    if (!d) return E_INVALID_ARGUMENT;
    return put_text(uuid, length, d->spec->uuid);
}

int nvmlDeviceGetMemoryInfo(device_t *d, mem_t *memory) {
    GUARD("nvmlDeviceGetMemoryInfo", d);
    if (!d || !memory) return E_INVALID_ARGUMENT;
    if (mig_parent(d)) return E_NO_PERMISSION;
    unsigned long long used = used_on(d);
    memory->total = d->spec->memory;
    memory->used = used < memory->total ? used : memory->total;
    memory->free = memory->total - memory->used;
    return OK;
}

int nvmlDeviceGetMemoryInfo_v2(device_t *d, mem_v2_t *memory) {
    mem_t plain;
    if (!memory) return E_INVALID_ARGUMENT;
    int rc = nvmlDeviceGetMemoryInfo(d, &plain);
    if (rc != OK) return rc;
    memory->total = plain.total;
    memory->reserved = 0;
    memory->free = plain.free;
    memory->used = plain.used;
    return OK;
}

int nvmlDeviceGetMigMode(device_t *d, unsigned int *current, unsigned int *pending) {
    GUARD("nvmlDeviceGetMigMode", d);
    if (!d || !current || !pending) return E_INVALID_ARGUMENT;
    if (d->is_mig) return E_NOT_SUPPORTED;
    if (d->gpu->mig_count > 0) { *current = *pending = 1; return OK; }
    if (d->gpu->mig_capable) { *current = *pending = 0; return OK; }
    return E_NOT_SUPPORTED;
}

int nvmlDeviceGetMaxMigDeviceCount(device_t *d, unsigned int *count) {
    GUARD("nvmlDeviceGetMaxMigDeviceCount", d);
    if (!d || !count) return E_INVALID_ARGUMENT;
    if (d->is_mig || !(d->gpu->mig_count > 0 || d->gpu->mig_capable)) return E_NOT_SUPPORTED;
    *count = MAX_MIG;
    return OK;
}

int nvmlDeviceGetMigDeviceHandleByIndex(device_t *d, unsigned int index, device_t **mig) {
    GUARD("nvmlDeviceGetMigDeviceHandleByIndex", d);
    if (!d || !mig || d->is_mig) return E_INVALID_ARGUMENT;
    /* Empty slots, and MIG devices given to other containers, are NotFound as on real hardware. */
    if (index >= (unsigned int)d->mig_given) return E_NOT_FOUND;
    *mig = d->migs[index];
    return OK;
}

static int running(device_t *d, unsigned int *count, proc_t *infos) {
    GUARD("nvmlDeviceGetComputeRunningProcesses", d);
    if (!d || !count) return E_INVALID_ARGUMENT;
    if (mig_parent(d)) return E_NO_PERMISSION;
    unsigned int n = 0;
    for (int p = 0; p < proc_count; p++) {
        int mine = !strcmp(procs[p].uuid, d->spec->uuid);
        for (int m = 0; !mine && !d->is_mig && m < d->mig_given; m++)
            mine = !strcmp(procs[p].uuid, d->migs[m]->spec->uuid);
        if (!mine) continue;
        if (infos && n < *count) {
            infos[n].pid = procs[p].pid;
            infos[n].usedGpuMemory = procs[p].used;
            infos[n].gpuInstanceId = infos[n].computeInstanceId = 0xFFFFFFFFu;
        }
        n++;
    }
    int enough = infos && n <= *count;
    *count = n;
    return (n == 0 || enough) ? OK : E_INSUFFICIENT_SIZE;
}
int nvmlDeviceGetComputeRunningProcesses_v3(device_t *d, unsigned int *c, proc_t *i) { return running(d, c, i); }
int nvmlDeviceGetComputeRunningProcesses_v2(device_t *d, unsigned int *c, proc_t *i) { return running(d, c, i); }

int nvmlDeviceGetUtilizationRates(device_t *d, util_t *util) {
    GUARD("nvmlDeviceGetUtilizationRates", d);
    if (!d || !util) return E_INVALID_ARGUMENT;
    if (mig_parent(d)) return E_NO_PERMISSION;
    if (d->is_mig) return E_NOT_SUPPORTED;
    int busy = used_on(d) > 0;
    util->gpu = busy ? 35 : 0;
    util->memory = busy ? 10 : 0;
    return OK;
}
