/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The station model behind `espdfuctl watch` and `flash --wait`: one row per
 * port, kept current from the daemon's Device and Job objects and events, and
 * drawn as a screen (a terminal) or described one line per event (a pipe).
 * No I/O except into the FILE* given; the caller owns the connection.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "wire.h"

#define STATION_TEXT_MAX  320u
#define STATION_MAX_PORTS 1024u /* more rows than any station has ports */

typedef struct StationPort {
    char path[WIRE_MAX_PATH + 1];
    char chip[16];
    char state[24]; /* the device state, "empty" when no board */
    bool present;
    int64_t job; /* the job shown (running or last), -1 when none */
    char job_state[24];
    int percent;
    uint64_t bytes, total;
    double rate;
    char result[STATION_TEXT_MAX]; /* of the last finished job, "" when none */
} StationPort;

typedef struct Station {
    StationPort *ports; /* sorted by path */
    size_t n_ports;
} Station;

void station_init(Station *s);
void station_done(Station *s);

/* Apply one Device object / Job object / job.progress data / a whole event. */
void station_device(Station *s, json_object *device);
void station_job(Station *s, json_object *job);
void station_progress(Station *s, json_object *data);
void station_event(Station *s, const WireMessage *m);

/* The screen: a header and one row per port, coloured by state when asked. */
void station_render(const Station *s, FILE *f, bool colour);

/* "ok in 2.3s", "failed: <message> [<code>]", "cancelled: ...", "" while running. */
char *station_job_result(json_object *job, char *buf, size_t size);

/* One line that says what an event means, for a pipe or a log; NULL when an
 * event adds nothing to the lines before and after it. */
char *station_event_line(const WireMessage *m, char *buf, size_t size);

/* Colour on stdout: a terminal, TERM set and not "dumb", NO_COLOR unset (no-color.org). */
bool station_use_colour(void);

/* Whether a job state is final (succeeded, failed, cancelled). */
bool station_state_is_final(const char *state);
