/* config.c - the configuration: compile-time defaults, overridden once at
 * start-up by HAKMEM_* environment variables in the standard and observe
 * builds.  Nothing reads the environment after that.  docs/CONFIG.md lists
 * every variable. */
#include "core_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_DEFAULTS                                                       \
  {                                                                           \
      .stats = HAK_GATE_REPORT_AT_EXIT ? HAK_REPORT_TEXT : HAK_REPORT_OFF,    \
      .verbose = 0,                                                           \
      .superslab_cache = 32,                                                  \
      .superslab_reserve = 16,                                                \
      .huge_cache_mb = 512,                                                   \
      .thp = false,                                                           \
      .tiny_dirty_slabs = 1024,                                               \
      .mid_dirty_slabs = 64,                                                  \
      .purge_delay_ms = 10,                                                   \
      .mid_cache_kb = 128,                                                    \
      .stats_signal = 0,                                                      \
      .guard_pages = false,                                                   \
      .checks = HAK_GATE_CHECKS ? 1 : 0,                                      \
  }

struct hak_config hak_config = CONFIG_DEFAULTS;

void hak_config_defaults(struct hak_config *cfg) {
  *cfg = (struct hak_config)CONFIG_DEFAULTS;
}

#if HAK_GATE_ENV_CONFIG
static void warn(const char *name, const char *value, const char *used) {
  char msg[256];
  int n = snprintf(msg, sizeof msg,
                   "hakmem: ignoring %s=%s (%s); using %s\n", name, value,
                   "invalid or out of range", used);
  if (n > 0)
    hak_os_write_stderr(msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

/* An unsigned number in [lo, hi]; anything else keeps *out and warns. */
static void parse_uint(const char *name, size_t lo, size_t hi, size_t *out) {
  const char *v = getenv(name);
  if (!v)
    return;
  char *end;
  unsigned long long x = strtoull(v, &end, 10);
  if (*v == '\0' || *v == '-' || *end != '\0' || x < lo || x > hi) {
    char used[32];
    snprintf(used, sizeof used, "%zu", *out);
    warn(name, v, used);
    return;
  }
  *out = (size_t)x;
}

static void parse_bool(const char *name, bool *out) {
  const char *v = getenv(name);
  if (!v)
    return;
  if (!strcmp(v, "1") || !strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true"))
    *out = true;
  else if (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false"))
    *out = false;
  else
    warn(name, v, *out ? "1" : "0");
}

void hak_config_load(struct hak_config *cfg) {
  const char *v = getenv("HAKMEM_STATS");
  if (v) {
    if (!strcmp(v, "0") || !strcmp(v, "off"))
      cfg->stats = HAK_REPORT_OFF;
    else if (!strcmp(v, "1") || !strcmp(v, "text") || !strcmp(v, "on"))
      cfg->stats = HAK_REPORT_TEXT;
    else if (!strcmp(v, "json"))
      cfg->stats = HAK_REPORT_JSON;
    else
      warn("HAKMEM_STATS", v, cfg->stats == HAK_REPORT_JSON ? "json"
                              : cfg->stats ? "text" : "0");
  }
  bool b = cfg->verbose;
  parse_bool("HAKMEM_VERBOSE", &b);
  cfg->verbose = b;
  size_t x = cfg->superslab_cache;
  parse_uint("HAKMEM_SUPERSLAB_CACHE", 0, HAK_OS_SUPERSLAB_SLOTS, &x);
  cfg->superslab_cache = (unsigned)x;
  x = cfg->superslab_reserve;
  parse_uint("HAKMEM_SUPERSLAB_RESERVE", 0, HAK_OS_SUPERSLAB_SLOTS, &x);
  cfg->superslab_reserve = (unsigned)x;
  parse_uint("HAKMEM_HUGE_CACHE_MB", 0, 65536, &cfg->huge_cache_mb);
  parse_bool("HAKMEM_THP", &cfg->thp);
  parse_bool("HAKMEM_GUARD_PAGES", &cfg->guard_pages);
  x = cfg->tiny_dirty_slabs;
  parse_uint("HAKMEM_TINY_DIRTY_SLABS", 0, 4096, &x);
  cfg->tiny_dirty_slabs = (unsigned)x;
  x = cfg->purge_delay_ms;
  parse_uint("HAKMEM_PURGE_DELAY_MS", 0, 3600000, &x);
  cfg->purge_delay_ms = (unsigned)x;
  parse_uint("HAKMEM_MID_CACHE_KB", 0, 4096, &cfg->mid_cache_kb);
  parse_uint("HAKMEM_STATS_SIGNAL", 0, 64, &cfg->stats_signal);
  /* The per-call checks are compiled in (they cost too little to be worth
   * a branch on every call); what the level adds runs on slow paths. */
  x = cfg->checks;
  parse_uint("HAKMEM_CHECKS", 1, 2, &x);
  cfg->checks = (unsigned)x;
  if (cfg->checks >= 2)
    cfg->guard_pages = true;
}
#else
/* The fast build has no runtime configuration: the library must not even
 * reference getenv (test/config checks the symbols). */
void hak_config_load(struct hak_config *cfg) { (void)cfg; }
#endif
