/* SPDX-License-Identifier: Apache-2.0 */
/* UTC calendar arithmetic without the C library's time zone state.
 *
 * glibc's gmtime_r and timegm take the process-wide time zone lock (tzset_lock). A fork while
 * another thread holds it leaves that lock taken for ever in the child, so a child that logs or
 * parses a date before exec would hang in its first C_Initialize (docs/reliability.md "Fork").
 * These two conversions are plain arithmetic on the proleptic Gregorian calendar (the days-from-
 * civil algorithm), take no lock, and are exact for every year from -9999 to 9999. */
#ifndef AKV_UTIL_UTC_H
#define AKV_UTIL_UTC_H

#include <stdint.h>

struct akv_utc {
  int year;  /* e.g. 2026 */
  int month; /* 1..12 */
  int day;   /* 1..31 */
  int hour, min, sec;
};

/* Days since 1970-01-01 of the civil date y-m-d (m 1..12, d 1..31; not checked here). */
static inline int64_t akv_utc_days(int64_t y, int m, int d)
{
  int64_t era, yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* Seconds since the epoch of a UTC date and time (timegm without its lock). */
static inline int64_t akv_utc_to_epoch(const struct akv_utc *u)
{
  return akv_utc_days(u->year, u->month, u->day) * 86400 + u->hour * 3600 + u->min * 60 + u->sec;
}

/* The UTC date and time of t seconds since the epoch (gmtime_r without its lock). */
static inline void akv_utc_from_epoch(int64_t t, struct akv_utc *u)
{
  int64_t days = t / 86400, rem = t % 86400, era, doe, yoe, y, doy, mp;
  if (rem < 0) {
    rem += 86400;
    days--;
  }
  u->hour = (int)(rem / 3600);
  u->min = (int)(rem % 3600 / 60);
  u->sec = (int)(rem % 60);
  days += 719468;
  era = (days >= 0 ? days : days - 146096) / 146097;
  doe = days - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = yoe + era * 400;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  u->day = (int)(doy - (153 * mp + 2) / 5 + 1);
  u->month = (int)(mp < 10 ? mp + 3 : mp - 9);
  u->year = (int)(y + (u->month <= 2));
}

#endif
