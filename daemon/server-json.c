/* SPDX-License-Identifier: MIT */
/*
 * Device as the protocol shows it (docs/protocol.md, "Objects"); Job is in
 * job-json.c, shared with the history store.
 */
#include "server-json.h"

#include "job-json.h"

json_object *device_to_json(Manager *m, const Device *d)
{
    const Job *j = d->last_job ? manager_get_job(m, d->last_job) : NULL;
    JsonObj b = json_obj_new();

    json_obj_add_str(&b, "path", d->info.path);
    json_obj_add_str(&b, "chip", chip_to_string(d->info.chip));
    json_obj_add_int(&b, "vid", d->info.vid);
    json_obj_add_int(&b, "pid", d->info.pid);
    json_obj_add_str(&b, "mode", device_mode_to_string(d->info.mode));
    json_obj_add_str(&b, "state", device_plug_to_string(d->plug));
    json_obj_add_int(&b, "bcd_device", d->info.bcd_device);
    json_obj_add_str(&b, "serial", d->info.serial);
    json_obj_add_int(&b, "busnum", d->info.busnum);
    json_obj_add_int(&b, "devnum", d->info.devnum);
    json_obj_add_time(&b, "arrived", d->arrived_realtime_usec);
    /* Why a board a rule wants is not flashed (yet); null when nothing is wrong. */
    json_obj_add_str(&b, "note", d->note[0] ? d->note : NULL);
    /* The job working on the board now; a finished one is history, see `jobs`. */
    if (j && !job_state_is_final(j->state))
        json_obj_add_int(&b, "job", (int64_t)j->id);
    else
        json_obj_add(&b, "job", NULL, true);
    return json_obj_end(&b);
}
