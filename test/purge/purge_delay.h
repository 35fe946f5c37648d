/* SPDX-License-Identifier: MIT */
/* purge_delay.h - the purge tests' way to set the delay of every tier. */
#ifndef PURGE_DELAY_H
#define PURGE_DELAY_H

#include "core_internal.h"

#define NEVER 3600000u /* an hour: nothing is purged within a test */
#define SHORT 5u       /* waited past with wait_past or call_until */

/* The configuration every tier reads, as start-up would pass it down. */
static inline void set_delay(unsigned ms) {
  hak_config.purge_delay_ms = ms;
  struct hak_tiny_config tiny = {.dirty_slab_limit = 4096,
                                 .purge_delay_ms = ms};
  hak_tiny_configure(&tiny);
  hak_mid_configure(ms, 64);
  struct hak_os_config os = hak_os_default_config();
  os.purge_delay_ms = ms;
  hak_os_configure(&os);
}

#endif
