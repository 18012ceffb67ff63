/* SPDX-License-Identifier: MIT */
/*
 * Time zones from the IANA tz database (TZif files), and the RFC 3339 times
 * refreshd prints and reads. A Tz is loaded once per zone name and shared
 * (reference counted) by every environment that names it; lookups are pure
 * binary searches over transitions that are extended with the zone's POSIX
 * rule up to TZ_MAX_YEAR, so no lookup reads a file or the process's TZ.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Tz Tz;

/* Transitions are generated from the zone's rule up to the end of this year;
 * later instants keep the last offset. */
#define TZ_MAX_YEAR 2400

/* Longest text tz_format_local() writes, with its NUL. */
#define TZ_ISO_MAX 40

/* True if NAME looks like an IANA zone name (no "..", no leading '/'). */
bool tz_name_is_valid(const char *name);

/* Loads zone NAME from $TZDIR or /usr/share/zoneinfo. -EINVAL for a bad name,
 * -ENOENT when there is no such zone, -EBADMSG for a damaged file. */
int tz_load(const char *name, Tz **ret);

/* Parses a TZif image (RFC 8536, versions 1 to 4) that belongs to zone NAME. */
int tz_parse(const char *name, const void *data, size_t size, Tz **ret);

Tz *tz_ref(Tz *tz);
Tz *tz_unref(Tz *tz);

/* The zone's name; "UTC" for NULL, which stands for UTC everywhere. */
const char *tz_name(const Tz *tz);

/* The offset east of UTC, in seconds, in force at INSTANT; its abbreviation
 * ("CET") in *ret_abbr when that is not NULL. */
int32_t tz_offset(const Tz *tz, int64_t instant, const char **ret_abbr);

/* The latest wall-clock time shown at or before INSTANT: INSTANT's own,
 * except during the second pass through a repeated hour, when it is the
 * time shown just before the clocks went back. */
int64_t tz_wall_reached(const Tz *tz, int64_t instant);

/* The instant at which local wall-clock time WALL (seconds counted as if the
 * zone were UTC) happens. A wall time skipped by a forward change maps to the
 * instant of that change (the first instant after the gap); a wall time that
 * happens twice maps to its first occurrence. Monotonic in WALL. */
int64_t tz_wall_to_instant(const Tz *tz, int64_t wall);

/* Writes INSTANT as "2026-12-06T03:00:00+01:00" in zone TZ. */
int tz_format_local(const Tz *tz, int64_t instant, char *buf, size_t size);

/* Writes INSTANT as "2026-12-06T02:00:00Z". */
int tz_format_utc(int64_t instant, char *buf, size_t size);

/* Parses an ISO 8601 / RFC 3339 time: "2026-12-06", "2026-12-06T03:00",
 * "2026-12-06T03:00:00.5+01:00", "… Z". A time without an offset is UTC;
 * fractions of a second are dropped. -EINVAL when it is not such a time. */
int tz_parse_iso8601(const char *s, int64_t *ret);
