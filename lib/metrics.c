/* metrics.c - Prometheus registry: families of series, lock-free updates, text exposition. */
#include "kchat/metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kchat/util.h"

enum { T_COUNTER, T_GAUGE, T_HISTOGRAM };
static const char *const type_names[] = {"counter", "gauge", "histogram"};

struct kc_family;

struct kc_series {
    struct kc_family *fam;
    char *labels; /* rendered: k="v",k2="v2" (escaped); "" when none */
    _Atomic double value;
    size_t nb;
    double *bounds;
    _Atomic uint64_t *buckets; /* per bucket (not cumulative); [nb] is +Inf */
    _Atomic double sum;
    _Atomic uint64_t count;
    struct kc_series *next;
};

struct kc_family {
    char *name;
    char *help;
    int type;
    struct kc_series *first, *last;
    struct kc_family *next;
};

typedef struct {
    kc_metrics_collect_fn fn;
    void *arg;
} collector_t;

struct kc_metrics {
    pthread_mutex_t mu;
    struct kc_family *first, *last;
    collector_t collectors[16];
    size_t ncollectors;
    kc_gauge_t *proc_cpu, *proc_rss, *proc_vsz, *proc_fds, *proc_start;
};

static const double default_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};

kc_metrics_t *kc_metrics_new(void)
{
    kc_metrics_t *m = kc_xcalloc(1, sizeof(*m));
    if (pthread_mutex_init(&m->mu, NULL) != 0)
        abort();
    return m;
}

void kc_metrics_destroy(kc_metrics_t *m)
{
    if (!m)
        return;
    struct kc_family *f = m->first;
    while (f) {
        struct kc_family *fn = f->next;
        struct kc_series *s = f->first;
        while (s) {
            struct kc_series *sn = s->next;
            free(s->labels);
            free(s->bounds);
            free((void *)s->buckets);
            free(s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void check_name(const char *name)
{
    int ok = name[0] && (isalpha((unsigned char)name[0]) || name[0] == '_' || name[0] == ':');
    for (const char *p = name; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '_' || *p == ':';
    if (!ok) {
        fprintf(stderr, "invalid metric name '%s'\n", name);
        abort();
    }
}

static void escape_label(kc_buf_t *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            kc_buf_puts(b, "\\\\");
        else if (*p == '"')
            kc_buf_puts(b, "\\\"");
        else if (*p == '\n')
            kc_buf_puts(b, "\\n");
        else
            kc_buf_putc(b, *p);
    }
}

static char *render_labels(const char *const *labels)
{
    kc_buf_t b = {0};
    for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
        check_name(labels[i]);
        if (i)
            kc_buf_putc(&b, ',');
        kc_buf_printf(&b, "%s=\"", labels[i]);
        escape_label(&b, labels[i + 1]);
        kc_buf_putc(&b, '"');
    }
    return kc_buf_steal(&b);
}

static struct kc_series *get_series(kc_metrics_t *m, int type, const char *name, const char *help,
                                    const char *const *labels, const double *bounds, size_t nb)
{
    check_name(name);
    char *lbl = render_labels(labels);
    pthread_mutex_lock(&m->mu);
    struct kc_family *f = m->first;
    while (f && strcmp(f->name, name) != 0)
        f = f->next;
    if (!f) {
        f = kc_xcalloc(1, sizeof(*f));
        f->name = kc_xstrdup(name);
        f->help = kc_xstrdup(help ? help : "");
        f->type = type;
        if (m->last)
            m->last->next = f;
        else
            m->first = f;
        m->last = f;
    } else if (f->type != type) {
        fprintf(stderr, "metric '%s' registered as %s and %s\n", name, type_names[f->type],
                type_names[type]);
        abort();
    }
    struct kc_series *s = f->first;
    while (s && strcmp(s->labels, lbl) != 0)
        s = s->next;
    if (s) {
        free(lbl);
    } else {
        s = kc_xcalloc(1, sizeof(*s));
        s->fam = f;
        s->labels = lbl;
        if (type == T_HISTOGRAM) {
            if (!bounds || !nb) {
                bounds = default_bounds;
                nb = KC_ARRAY_LEN(default_bounds);
            }
            s->nb = nb;
            s->bounds = kc_xmalloc(nb * sizeof(double));
            memcpy(s->bounds, bounds, nb * sizeof(double));
            s->buckets = kc_xcalloc(nb + 1, sizeof(*s->buckets));
        }
        if (f->last)
            f->last->next = s;
        else
            f->first = s;
        f->last = s;
    }
    pthread_mutex_unlock(&m->mu);
    return s;
}

kc_counter_t *kc_metrics_counter(kc_metrics_t *m, const char *name, const char *help,
                                 const char *const *labels)
{
    return get_series(m, T_COUNTER, name, help, labels, NULL, 0);
}

kc_gauge_t *kc_metrics_gauge(kc_metrics_t *m, const char *name, const char *help,
                             const char *const *labels)
{
    return get_series(m, T_GAUGE, name, help, labels, NULL, 0);
}

kc_histogram_t *kc_metrics_histogram(kc_metrics_t *m, const char *name, const char *help,
                                     const char *const *labels, const double *bounds,
                                     size_t nbounds)
{
    return get_series(m, T_HISTOGRAM, name, help, labels, bounds, nbounds);
}

void kc_counter_add(kc_counter_t *c, double v)
{
    if (c && v > 0)
        c->value += v;
}

void kc_counter_inc(kc_counter_t *c)
{
    kc_counter_add(c, 1);
}

void kc_gauge_set(kc_gauge_t *g, double v)
{
    if (g)
        atomic_store(&g->value, v);
}

void kc_gauge_add(kc_gauge_t *g, double v)
{
    if (g)
        g->value += v;
}

void kc_histogram_observe(kc_histogram_t *h, double v)
{
    if (!h || isnan(v))
        return;
    size_t i = 0;
    while (i < h->nb && v > h->bounds[i])
        i++;
    atomic_fetch_add(&h->buckets[i], 1);
    h->sum += v;
    atomic_fetch_add(&h->count, 1);
}

double kc_series_value(const struct kc_series *s)
{
    if (s->fam->type == T_HISTOGRAM)
        return (double)atomic_load(&s->count);
    return atomic_load(&s->value);
}

void kc_metrics_on_collect(kc_metrics_t *m, kc_metrics_collect_fn fn, void *arg)
{
    pthread_mutex_lock(&m->mu);
    if (m->ncollectors < KC_ARRAY_LEN(m->collectors))
        m->collectors[m->ncollectors++] = (collector_t){fn, arg};
    else
        abort();
    pthread_mutex_unlock(&m->mu);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as v: 5.55, not 5.5499999999999998,
 * and never a lossy %g (a bound of 1000001 is not "1e+06"). */
static void format_double(char *out, size_t size, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void put_value(kc_buf_t *b, double v)
{
    char num[32];
    if (isnan(v)) {
        kc_buf_puts(b, "NaN");
    } else if (isinf(v)) {
        kc_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    } else {
        format_double(num, sizeof(num), v);
        kc_buf_puts(b, num);
    }
}

static void put_sample(kc_buf_t *b, const char *name, const char *suffix, const char *labels,
                       const char *extra, double v)
{
    kc_buf_printf(b, "%s%s", name, suffix);
    if (*labels || extra) {
        kc_buf_putc(b, '{');
        kc_buf_puts(b, labels);
        if (extra) {
            if (*labels)
                kc_buf_putc(b, ',');
            kc_buf_puts(b, extra);
        }
        kc_buf_putc(b, '}');
    }
    kc_buf_putc(b, ' ');
    put_value(b, v);
    kc_buf_putc(b, '\n');
}

static void escape_help(kc_buf_t *b, const char *h)
{
    for (const char *p = h; *p; p++) {
        if (*p == '\\')
            kc_buf_puts(b, "\\\\");
        else if (*p == '\n')
            kc_buf_puts(b, "\\n");
        else
            kc_buf_putc(b, *p);
    }
}

void kc_metrics_render(kc_metrics_t *m, kc_buf_t *out)
{
    pthread_mutex_lock(&m->mu);
    size_t nc = m->ncollectors;
    collector_t cs[KC_ARRAY_LEN(m->collectors)];
    memcpy(cs, m->collectors, sizeof(cs));
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < nc; i++)
        cs[i].fn(cs[i].arg);

    pthread_mutex_lock(&m->mu);
    for (struct kc_family *f = m->first; f; f = f->next) {
        kc_buf_printf(out, "# HELP %s ", f->name);
        escape_help(out, f->help);
        kc_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (struct kc_series *s = f->first; s; s = s->next) {
            if (f->type != T_HISTOGRAM) {
                put_sample(out, f->name, "", s->labels, NULL, atomic_load(&s->value));
                continue;
            }
            uint64_t cum = 0;
            char le[64], num[32];
            for (size_t i = 0; i <= s->nb; i++) {
                cum += atomic_load(&s->buckets[i]);
                if (i < s->nb) {
                    format_double(num, sizeof(num), s->bounds[i]);
                    snprintf(le, sizeof(le), "le=\"%s\"", num);
                } else {
                    snprintf(le, sizeof(le), "le=\"+Inf\"");
                }
                put_sample(out, f->name, "_bucket", s->labels, le, (double)cum);
            }
            put_sample(out, f->name, "_sum", s->labels, NULL, atomic_load(&s->sum));
            put_sample(out, f->name, "_count", s->labels, NULL, (double)cum);
        }
    }
    pthread_mutex_unlock(&m->mu);
}

/* process_* series, read from /proc at scrape time. */
static void collect_process(void *arg)
{
    kc_metrics_t *m = arg;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        if (fclose(f) != 0)
            n = 0;
        /* Fields after the command name, which sits in parentheses and may hold spaces. */
        char *p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0, vsize = 0;
        long rss = 0;
        unsigned long long start = 0;
        if (n && p &&
            sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
                   "%llu %lu %ld",
                   &utime, &stime, &start, &vsize, &rss) == 5 &&
            tick > 0) {
            kc_gauge_set(m->proc_cpu, (double)(utime + stime) / (double)tick);
            kc_gauge_set(m->proc_vsz, (double)vsize);
            kc_gauge_set(m->proc_rss, (double)rss * (double)page);
            FILE *st = fopen("/proc/stat", "r");
            if (st) {
                char line[256];
                unsigned long long btime = 0;
                while (fgets(line, sizeof(line), st))
                    if (sscanf(line, "btime %llu", &btime) == 1)
                        break;
                if (fclose(st) == 0 && btime)
                    kc_gauge_set(m->proc_start, (double)btime + (double)start / (double)tick);
            }
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int count = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                count++;
        closedir(d);
        kc_gauge_set(m->proc_fds, count - 1); /* less the one opendir holds */
    }
}

void kc_metrics_add_process(kc_metrics_t *m)
{
    /* process_cpu_seconds_total is a counter by convention; we set it from /proc, so it is a
     * counter whose value we store, not add to. */
    m->proc_cpu = get_series(m, T_COUNTER, "process_cpu_seconds_total",
                             "Total user and system CPU time spent in seconds.", NULL, NULL, 0);
    m->proc_rss = kc_metrics_gauge(m, "process_resident_memory_bytes",
                                   "Resident memory size in bytes.", NULL);
    m->proc_vsz = kc_metrics_gauge(m, "process_virtual_memory_bytes",
                                   "Virtual memory size in bytes.", NULL);
    m->proc_fds = kc_metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", NULL);
    m->proc_start = kc_metrics_gauge(m, "process_start_time_seconds",
                                     "Start time of the process since unix epoch in seconds.", NULL);
    kc_metrics_on_collect(m, collect_process, m);
}
