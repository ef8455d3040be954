/* Availability windows: the weekly hours during which a provider lets new
 * VMs be placed on its node ("mon-fri 19:00-07:00", "sat-sun 00:00-24:00").
 * Pure parsing and matching; the scheduler asks availwin_open for each node
 * when it loads the fleet, and running VMs are never touched. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most windows one node may have. */
#define AVAILWIN_MAX 16

/* One weekly window: it opens at `start` (minutes from midnight, local to
 * the node's offset) on each day in `days` (bit 0 Monday .. bit 6 Sunday)
 * and closes at `end` (1..1440) the same day, or the next day when end <=
 * start (an overnight window: "19:00-07:00"). */
struct availwin {
    uint8_t days;
    int16_t start, end;
};

/* Parse one window "DAYS HH:MM-HH:MM", DAYS a comma list of days or day
 * ranges (mon..sun; "fri-mon" wraps; "daily" is every day). 0, or -EINVAL
 * with the offending token in *ret_bad (caller frees). */
int availwin_parse(const char *text, struct availwin *ret, char **ret_bad);

/* Parse a time zone: "UTC", "Z" or a fixed offset "+HH:MM"/"-HH:MM" (up to
 * 14 h) into minutes east of UTC. 0 or -EINVAL. */
int availwin_tz_parse(const char *text, int *ret_min);

/* The canonical text of w ("mon-fri 19:00-07:00"); caller frees. */
char *availwin_format(const struct availwin *w);

/* The canonical text of a zone offset ("UTC", "+05:30"); caller frees. */
char *availwin_tz_format(int tz_min);

/* Whether new placements are allowed at unix time t for a node with
 * windows w[0..n) at tz_min minutes east of UTC: true when n is 0 (no
 * windows: always) or t falls inside one of them. */
bool availwin_open(const struct availwin *w, size_t n, int64_t t, int tz_min);

/* Parse the stored list ("; "-separated canonical windows) into w (room for
 * AVAILWIN_MAX); *ret_n gets the count. 0 or -EINVAL. */
int availwin_list_parse(const char *text, struct availwin *w, size_t *ret_n);

/* The stored list as a JSON array of canonical windows (empty when none);
 * caller owns it. */
json_t *availwin_list_json(const char *text);
