/* SPDX-License-Identifier: MIT */
/*
 * The station model and its two renderings (station.h).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "format.h"
#include "station.h"

#define ANSI_RESET  "\033[0m"
#define ANSI_RED    "\033[1;31m"
#define ANSI_GREEN  "\033[32m"
#define ANSI_YELLOW "\033[33m"
#define ANSI_CYAN   "\033[36m"
#define ANSI_DIM    "\033[2m"

#define BAR_WIDTH 22

void station_init(Station *s)
{
    *s = (Station){};
}

void station_done(Station *s)
{
    free(s->ports);
    *s = (Station){};
}

bool station_use_colour(void)
{
    const char *term = getenv("TERM");

    return isatty(STDOUT_FILENO) && term && *term && strcmp(term, "dumb") != 0 &&
           !getenv("NO_COLOR");
}

bool station_state_is_final(const char *state)
{
    return wire_job_state_is_final(state);
}

/* What the daemon says, as the screen may show it: control characters escaped. */
static void copy(char *dst, size_t size, const char *src)
{
    fmt_safe(src, dst, size);
}

/* The port for path, created in path order when missing; NULL when full. */
static StationPort *port_get(Station *s, const char *path)
{
    size_t i = 0;

    if (!path)
        return NULL;
    for (; i < s->n_ports; i++) {
        int c = strcmp(s->ports[i].path, path);

        if (c == 0)
            return &s->ports[i];
        if (c > 0)
            break;
    }
    if (s->n_ports == STATION_MAX_PORTS)
        return NULL;
    if ((s->n_ports & (s->n_ports - 1)) == 0) { /* grow at powers of two */
        StationPort *p = reallocarray(s->ports, s->n_ports ? s->n_ports * 2 : 8, sizeof(*p));

        if (!p)
            return NULL;
        s->ports = p;
    }
    memmove(&s->ports[i + 1], &s->ports[i], (s->n_ports - i) * sizeof(*s->ports));
    s->n_ports++;
    s->ports[i] = (StationPort){.job = -1};
    copy(s->ports[i].path, sizeof(s->ports[i].path), path);
    copy(s->ports[i].state, sizeof(s->ports[i].state), "empty");
    return &s->ports[i];
}

void station_device(Station *s, json_object *device)
{
    StationPort *p = port_get(s, jstr(device, "path"));

    if (!p)
        return;
    p->present = true;
    copy(p->chip, sizeof(p->chip), jstr(device, "chip"));
    copy(p->state, sizeof(p->state), jstr(device, "state"));
}

static void device_removed(Station *s, json_object *data)
{
    StationPort *p = port_get(s, jstr(data, "path"));

    if (!p)
        return;
    p->present = false;
    copy(p->state, sizeof(p->state), "empty");
}

char *station_job_result(json_object *job, char *buf, size_t size)
{
    const char *state = jstr(job, "state");
    json_object *e = jget(job, "error");
    char d[FMT_SIZE_MAX];

    if (!station_state_is_final(state))
        snprintf(buf, size, "%s", "");
    else if (strcmp(state, "succeeded") == 0)
        snprintf(buf, size, "ok in %s",
                 fmt_duration(jnum(job, "finished") - jnum(job, "started"), d, sizeof(d)));
    else
        snprintf(buf, size, "%s: %s [%s]", state, jstr(e, "message") ?: "no error given",
                 jstr(e, "code") ?: "?");
    return buf;
}

void station_job(Station *s, json_object *job)
{
    StationPort *p = port_get(s, jstr(job, "path"));
    json_object *pr = jget(job, "progress");

    if (!p)
        return;
    if (!p->chip[0])
        copy(p->chip, sizeof(p->chip), jstr(job, "chip"));
    p->job = jint(job, "id");
    copy(p->job_state, sizeof(p->job_state), jstr(job, "state"));
    p->percent = (int)jint(pr, "percent");
    p->bytes = (uint64_t)jnum(pr, "bytes");
    p->total = (uint64_t)jnum(pr, "total");
    p->rate = jnum(pr, "rate");
    if (station_state_is_final(p->job_state))
        station_job_result(job, p->result, sizeof(p->result));
}

void station_progress(Station *s, json_object *data)
{
    StationPort *p = port_get(s, jstr(data, "path"));

    if (!p)
        return;
    p->job = jint(data, "id");
    copy(p->job_state, sizeof(p->job_state), jstr(data, "state"));
    p->percent = (int)jint(data, "percent");
    p->bytes = (uint64_t)jnum(data, "bytes");
    p->total = (uint64_t)jnum(data, "total");
    p->rate = jnum(data, "rate");
}

void station_event(Station *s, const WireMessage *m)
{
    switch (m->event) {
    case WIRE_EVENT_DEVICE_ADDED:
    case WIRE_EVENT_DEVICE_CHANGED:
        station_device(s, m->data);
        break;
    case WIRE_EVENT_DEVICE_REMOVED:
        device_removed(s, m->data);
        break;
    case WIRE_EVENT_JOB_QUEUED:
    case WIRE_EVENT_JOB_STARTED:
    case WIRE_EVENT_JOB_CHANGED:
    case WIRE_EVENT_JOB_FINISHED:
        station_job(s, m->data);
        break;
    case WIRE_EVENT_JOB_PROGRESS:
        station_progress(s, m->data);
        break;
    case WIRE_EVENT_DROPPED:
    case _WIRE_EVENT_MAX: /* one this client does not know: ignored, as the protocol says */
        break;
    }
}

static const char *state_colour(const char *state)
{
    static const struct {
        const char *state, *colour;
    } table[] = {
            {"failed", ANSI_RED},
            {"cancelled", ANSI_RED},
            {"interrupted", ANSI_RED},
            {"expired", ANSI_RED},
            {"succeeded", ANSI_GREEN},
            {"flashed-needs-reset", ANSI_GREEN},
            {"downloading", ANSI_YELLOW},
            {"manifesting", ANSI_YELLOW},
            {"detaching", ANSI_YELLOW},
            {"waiting-for-replug", ANSI_YELLOW},
            {"busy", ANSI_YELLOW},
            {"queued", ANSI_CYAN},
            {"waiting-for-board", ANSI_CYAN},
            {"replugging", ANSI_CYAN},
            {"empty", ANSI_DIM},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].state, state) == 0)
            return table[i].colour;
    return "";
}

/* What a row shows as its state: the job's while it runs, else the board's. */
static const char *shown_state(const StationPort *p)
{
    if (p->job >= 0 && p->job_state[0] && !station_state_is_final(p->job_state))
        return p->job_state;
    if (!p->present && p->job >= 0 && p->job_state[0])
        return p->job_state;
    return p->state;
}

static void render_row(const StationPort *p, FILE *f, bool colour, int path_w)
{
    char bar[BAR_WIDTH + 1], rate[FMT_SIZE_MAX], eta[FMT_SIZE_MAX], pct[16];
    const char *state = shown_state(p);
    bool running = p->job >= 0 && !station_state_is_final(p->job_state);
    const char *c = colour ? state_colour(state) : "";

    if (running) {
        fmt_bar(p->percent, BAR_WIDTH, bar, sizeof(bar));
        snprintf(pct, sizeof(pct), "%3d%%", p->percent < 0 ? 0 : p->percent);
        fmt_rate(p->rate, rate, sizeof(rate));
        fmt_eta(p->bytes, p->total, p->rate, eta, sizeof(eta));
    } else {
        bar[0] = pct[0] = eta[0] = '\0';
        copy(rate, sizeof(rate), "");
    }
    fprintf(f, "%-*s  %-8s  %s%-19s%s  %-*s %4s  %-11s %-9s  %s\n", path_w, p->path,
            p->chip[0] ? p->chip : "-", c, state, *c ? ANSI_RESET : "", BAR_WIDTH, bar, pct, rate,
            eta, p->result);
}

void station_render(const Station *s, FILE *f, bool colour)
{
    int path_w = 4;

    for (size_t i = 0; i < s->n_ports; i++)
        if ((int)strlen(s->ports[i].path) > path_w)
            path_w = (int)strlen(s->ports[i].path);
    fprintf(f, "%-*s  %-8s  %-19s  %-*s %4s  %-11s %-9s  %s\n", path_w, "PORT", "CHIP", "STATE",
            BAR_WIDTH, "PROGRESS", "", "RATE", "ETA", "LAST RESULT");
    if (s->n_ports == 0)
        fprintf(f, "(no boards)\n");
    for (size_t i = 0; i < s->n_ports; i++)
        render_row(&s->ports[i], f, colour, path_w);
}

static char *job_event_line(const WireMessage *m, char *buf, size_t size)
{
    json_object *d = m->data, *h = jget(d, "history");
    size_t n = h ? json_object_array_length(h) : 0;
    const char *reason = n ? jstr(json_object_array_get_idx(h, n - 1), "reason") : NULL;
    char r[STATION_TEXT_MAX];

    /* job.finished follows with the same news and the error code. */
    if (m->event == WIRE_EVENT_JOB_CHANGED && station_state_is_final(jstr(d, "state")))
        return NULL;
    if (m->event == WIRE_EVENT_JOB_STARTED)
        snprintf(buf, size, "job %lld [%s] started: %s", (long long)jint(d, "id"),
                 jstr(d, "path") ?: "?", jstr(d, "chip") ?: "?");
    else if (m->event == WIRE_EVENT_JOB_FINISHED)
        snprintf(buf, size, "job %lld [%s] %s", (long long)jint(d, "id"), jstr(d, "path") ?: "?",
                 station_job_result(d, r, sizeof(r)));
    else
        snprintf(buf, size, "job %lld [%s] %s%s%s", (long long)jint(d, "id"),
                 jstr(d, "path") ?: "?", jstr(d, "state") ?: "?", reason ? ": " : "", reason ?: "");
    return buf;
}

static char *progress_line(const WireMessage *m, char *buf, size_t size)
{
    json_object *d = m->data;
    char rate[FMT_SIZE_MAX], eta[FMT_SIZE_MAX];
    uint64_t bytes = (uint64_t)jnum(d, "bytes"), total = (uint64_t)jnum(d, "total");

    snprintf(buf, size, "job %lld [%s] %s %lld%% (%llu/%llu bytes) %s %s", (long long)jint(d, "id"),
             jstr(d, "path") ?: "?", jstr(d, "state") ?: "?", (long long)jint(d, "percent"),
             (unsigned long long)bytes, (unsigned long long)total,
             fmt_rate(jnum(d, "rate"), rate, sizeof(rate)),
             fmt_eta(bytes, total, jnum(d, "rate"), eta, sizeof(eta)));
    return buf;
}

static char *event_line(const WireMessage *m, char *buf, size_t size)
{
    json_object *d = m->data;

    switch (m->event) {
    case WIRE_EVENT_DEVICE_ADDED:
    case WIRE_EVENT_DEVICE_CHANGED:
        snprintf(buf, size, "board [%s] %s: %s %s, %s", jstr(d, "path") ?: "?",
                 m->event == WIRE_EVENT_DEVICE_ADDED ? "arrived" : "changed",
                 jstr(d, "chip") ?: "?", jstr(d, "mode") ?: "?", jstr(d, "state") ?: "?");
        return buf;
    case WIRE_EVENT_DEVICE_REMOVED:
        snprintf(buf, size, "board [%s] left", jstr(d, "path") ?: "?");
        return buf;
    case WIRE_EVENT_JOB_QUEUED:
    case WIRE_EVENT_JOB_STARTED:
    case WIRE_EVENT_JOB_CHANGED:
    case WIRE_EVENT_JOB_FINISHED:
        return job_event_line(m, buf, size);
    case WIRE_EVENT_JOB_PROGRESS:
        return progress_line(m, buf, size);
    case WIRE_EVENT_DROPPED:
        snprintf(buf, size, "dropped by espdfud: %s", jstr(d, "reason") ?: "?");
        return buf;
    case _WIRE_EVENT_MAX:
        break;
    }
    snprintf(buf, size, "%s", m->event_name ?: "?");
    return buf;
}

char *station_event_line(const WireMessage *m, char *buf, size_t size)
{
    char raw[STATION_TEXT_MAX];

    /* Names and messages come from the daemon: shown, never acted on by the terminal. */
    if (!event_line(m, raw, sizeof(raw)))
        return NULL;
    return fmt_safe(raw, buf, size);
}
