/* SPDX-License-Identifier: MIT */
#pragma once

/* A Device as the protocol's Device object (docs/protocol.md), for replies and events.
 * NULL on allocation failure. A Job is job-json.h's. */

#include <json-c/json.h>

#include "manager.h"

json_object *device_to_json(Manager *m, const Device *d);
