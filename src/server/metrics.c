/*
** metrics.c — counters for GET /metrics (Prometheus text format 0.0.4):
** requests by status code, a fixed-bucket latency histogram, and the engine
** statistics summed over open ledgers (tally_db_stats).
**
** Invariants:
**   (1) counters are relaxed atomics: no lock on the request path;
**   (2) the histogram has METRICS_BUCKETS fixed upper bounds plus +Inf, and
**       the text is rendered into a buffer of bounded size.
*/
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "server/server.h"

#define METRICS_STATUS_MAX 600
#define METRICS_BUCKETS 14
#define METRICS_TEXT_BYTES_MAX 65536

static const double bucket_le_s[METRICS_BUCKETS] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                    1.0, 5.0 };
static atomic_uint_fast64_t by_status[METRICS_STATUS_MAX];
static atomic_uint_fast64_t bucket_count[METRICS_BUCKETS + 1]; /* last: +Inf only */
static atomic_uint_fast64_t dur_ns_total;
static atomic_uint_fast64_t req_total;

void metrics_observe(unsigned status, uint64_t dur_ns)
{
    if (status >= METRICS_STATUS_MAX)
        status = 0;
    atomic_fetch_add_explicit(&by_status[status], 1, memory_order_relaxed);
    double s = (double)dur_ns / 1e9;
    int b = 0;
    while (b < METRICS_BUCKETS && s > bucket_le_s[b])
        b++;
    atomic_fetch_add_explicit(&bucket_count[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&dur_ns_total, dur_ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&req_total, 1, memory_order_relaxed);
}

typedef struct mbuf {
    char *p;
    size_t len, cap;
} mbuf;

static void put(mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(mbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len = b->len + (size_t)n < b->cap ? b->len + (size_t)n : b->cap - 1;
}

static void render_http(mbuf *b)
{
    put(b, "# HELP http_requests_total HTTP requests by status code.\n"
           "# TYPE http_requests_total counter\n");
    for (unsigned c = 0; c < METRICS_STATUS_MAX; c++) {
        uint64_t n = atomic_load_explicit(&by_status[c], memory_order_relaxed);
        if (n)
            put(b, "http_requests_total{code=\"%u\"} %" PRIu64 "\n", c, n);
    }
    put(b, "# HELP http_request_seconds HTTP request latency.\n"
           "# TYPE http_request_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i <= METRICS_BUCKETS; i++) {
        cum += atomic_load_explicit(&bucket_count[i], memory_order_relaxed);
        if (i < METRICS_BUCKETS)
            put(b, "http_request_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", bucket_le_s[i], cum);
        else
            put(b, "http_request_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    put(b, "http_request_seconds_sum %.9f\nhttp_request_seconds_count %" PRIu64 "\n",
        (double)atomic_load(&dur_ns_total) / 1e9, cum);
}

char *metrics_render(tallyd *s, size_t *len)
{
    mbuf b = { malloc(METRICS_TEXT_BYTES_MAX), 0, METRICS_TEXT_BYTES_MAX };
    if (!b.p)
        return NULL;
    b.p[0] = '\0';
    tally_stats st;
    reg_stats(s, &st);
    put(&b, "# HELP tally_commits_total Transactions committed (open ledgers).\n"
            "# TYPE tally_commits_total counter\ntally_commits_total %" PRIu64 "\n", st.commits);
    put(&b, "# HELP tally_fdatasync_total fdatasync calls on ledger logs.\n"
            "# TYPE tally_fdatasync_total counter\ntally_fdatasync_total %" PRIu64 "\n", st.syncs);
    put(&b, "# HELP tally_fdatasync_seconds_total Time spent in fdatasync.\n"
            "# TYPE tally_fdatasync_seconds_total counter\n"
            "tally_fdatasync_seconds_total %.9f\n", (double)st.sync_ns_total / 1e9);
    put(&b, "# HELP tally_group_size_mean Mean transactions per fdatasync (group commit).\n"
            "# TYPE tally_group_size_mean gauge\ntally_group_size_mean %.3f\n",
        st.syncs ? (double)st.commits / (double)st.syncs : 0.0);
    put(&b, "# HELP tally_checkpoints_paused Open ledgers whose index checkpoints are paused "
            "by an error (the log is intact; the in-memory index grows).\n"
            "# TYPE tally_checkpoints_paused gauge\ntally_checkpoints_paused %d\n",
        st.checkpoint_error);
    put(&b, "# HELP tally_ledgers_open Ledgers with an open handle.\n"
            "# TYPE tally_ledgers_open gauge\ntally_ledgers_open %" PRIu64 "\n",
        (uint64_t)atomic_load(&s->ledgers_open));
    put(&b, "# HELP tally_ledgers_closed_idle_total Ledger handles closed after --ledger-idle-close "
            "seconds unused.\n# TYPE tally_ledgers_closed_idle_total counter\n"
            "tally_ledgers_closed_idle_total %" PRIu64 "\n",
        (uint64_t)atomic_load(&s->ledgers_closed_idle));
    put(&b, "# HELP tallyd_connections_timed_out_total Connections closed because a request "
            "was not received and answered within --request-timeout.\n"
            "# TYPE tallyd_connections_timed_out_total counter\n"
            "tallyd_connections_timed_out_total %" PRIu64 "\n",
        (uint64_t)atomic_load(&s->conns_timed_out));
    put(&b, "# HELP tallyd_requests_dropped_client_gone_total GET/HEAD requests not run "
            "because their client closed the connection while they waited for the worker "
            "pool.\n# TYPE tallyd_requests_dropped_client_gone_total counter\n"
            "tallyd_requests_dropped_client_gone_total %" PRIu64 "\n",
        (uint64_t)atomic_load(&s->dropped_gone));
    render_http(&b);
    *len = b.len;
    return b.p;
}
