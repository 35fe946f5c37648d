/* SPDX-License-Identifier: MIT */
/* config.c - the configuration: compile-time defaults, overridden once at
 * start-up in the standard and observe builds.  Nothing reads the
 * environment after that.  docs/CONFIG.md lists every setting.
 *
 * One table names every setting, so the three sources agree on names,
 * ranges and spellings.  Later sources win:
 *   1. the defaults below;
 *   2. `hakmem_conf`, a string a program linked with hakmem may define;
 *   3. HAKMEM_CONF, the same syntax in the environment;
 *   4. each HAKMEM_<NAME> variable.
 * The option strings are "name=value" pairs separated by commas, names as
 * the variables without the HAKMEM_ prefix, in any case:
 * "purge_delay_ms=50,thp=on". */
#include "core_internal.h"

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_DEFAULTS                                                       \
  {                                                                           \
      .stats = HAK_GATE_REPORT_AT_EXIT ? HAK_REPORT_TEXT : HAK_REPORT_OFF,    \
      .verbose = false,                                                       \
      .superslab_cache = 32,                                                  \
      .superslab_reserve = 16,                                                \
      .huge_cache_mb = 512,                                                   \
      .thp = false,                                                           \
      .tiny_dirty_slabs = 1024,                                               \
      .mid_dirty_slabs = 64,                                                  \
      .purge_delay_ms = 10,                                                   \
      .mid_cache_kb = 128,                                                    \
      .stats_signal = 0,                                                      \
      .stats_file = "",                                                       \
      .guard_pages = false,                                                   \
      .guard_sample = 0,                                                      \
      .guard_slots = 1024,                                                    \
      .guard_max = (size_t)256 << 10,                                         \
      .checks = HAK_GATE_CHECKS ? 1 : 0,                                      \
  }

struct hak_config hak_config = CONFIG_DEFAULTS;

void hak_config_defaults(struct hak_config *cfg) {
  *cfg = (struct hak_config)CONFIG_DEFAULTS;
}

#if HAK_GATE_ENV_CONFIG
/* How a setting's text is read and where its value is stored. */
enum kind {
  KIND_UNSIGNED, /* a number in [lo, hi] into an unsigned */
  KIND_SIZE,     /* a number in [lo, hi] into a size_t */
  KIND_BOOL,     /* 1/0, on/off, yes/no, true/false into a bool */
  KIND_REPORT,   /* a boolean, or text / json, into an int */
  KIND_SIGNAL,   /* 0 or a signal that may carry a report, into a size_t */
  KIND_PATH,     /* a file name, copied into a char[256] ("" none) */
};

struct setting {
  const char *name; /* the variable without "HAKMEM_" */
  enum kind kind;
  size_t lo, hi;
  size_t offset; /* in struct hak_config */
};

#define SETTING(name, field, kind, lo, hi)                                    \
  { name, kind, lo, hi, offsetof(struct hak_config, field) }

static const struct setting settings[] = {
    SETTING("STATS", stats, KIND_REPORT, 0, 0),
    SETTING("VERBOSE", verbose, KIND_BOOL, 0, 0),
    SETTING("SUPERSLAB_CACHE", superslab_cache, KIND_UNSIGNED, 0,
            HAK_OS_SUPERSLAB_SLOTS),
    SETTING("SUPERSLAB_RESERVE", superslab_reserve, KIND_UNSIGNED, 0,
            HAK_OS_SUPERSLAB_SLOTS),
    SETTING("HUGE_CACHE_MB", huge_cache_mb, KIND_SIZE, 0, 65536),
    SETTING("THP", thp, KIND_BOOL, 0, 0),
    SETTING("GUARD_PAGES", guard_pages, KIND_BOOL, 0, 0),
    /* Guarded allocations by sampling (libhak-os's guard.c). */
    SETTING("GUARD_SAMPLE", guard_sample, KIND_UNSIGNED, 0, 1000000000),
    SETTING("GUARD_SLOTS", guard_slots, KIND_UNSIGNED, 1, 65536),
    SETTING("GUARD_MAX", guard_max, KIND_SIZE, 0, (size_t)1 << 30),
    SETTING("TINY_DIRTY_SLABS", tiny_dirty_slabs, KIND_UNSIGNED, 0, 4096),
    SETTING("PURGE_DELAY_MS", purge_delay_ms, KIND_UNSIGNED, 0, 3600000),
    SETTING("MID_CACHE_KB", mid_cache_kb, KIND_SIZE, 0, 4096),
    SETTING("STATS_SIGNAL", stats_signal, KIND_SIGNAL, 0, 0),
    SETTING("STATS_FILE", stats_file, KIND_PATH, 0, 0),
    /* The per-call checks are compiled in (they cost too little to be worth
     * a branch on every call); what the level adds runs on slow paths. */
    SETTING("CHECKS", checks, KIND_UNSIGNED, 1, 2),
};

#define NSETTINGS (sizeof settings / sizeof settings[0])

/* HAKMEM_* names that are not settings of the table but are still ours:
 * the option string itself. */
static const char *const other_names[] = {"CONF"};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n > 0)
    hak_os_write_stderr(msg, (size_t)n < sizeof msg ? (size_t)n
                                                     : sizeof msg - 1);
}

static void *field(struct hak_config *cfg, const struct setting *s) {
  return (char *)cfg + s->offset;
}

static void store(struct hak_config *cfg, const struct setting *s,
                  size_t v) {
  switch (s->kind) {
  case KIND_PATH: break; /* apply copies the text */
  case KIND_UNSIGNED: *(unsigned *)field(cfg, s) = (unsigned)v; break;
  case KIND_SIZE:
  case KIND_SIGNAL: *(size_t *)field(cfg, s) = v; break;
  case KIND_BOOL: *(bool *)field(cfg, s) = v != 0; break;
  case KIND_REPORT: *(int *)field(cfg, s) = (int)v; break;
  }
}

static void describe(struct hak_config *cfg, const struct setting *s,
                     char *out, size_t n) {
  switch (s->kind) {
  case KIND_UNSIGNED:
    snprintf(out, n, "%u", *(unsigned *)field(cfg, s));
    break;
  case KIND_SIZE:
  case KIND_SIGNAL: snprintf(out, n, "%zu", *(size_t *)field(cfg, s)); break;
  case KIND_BOOL: snprintf(out, n, "%d", *(bool *)field(cfg, s)); break;
  case KIND_PATH:
    snprintf(out, n, "\"%s\"", (char *)field(cfg, s));
    break;
  case KIND_REPORT: {
    int r = *(int *)field(cfg, s);
    snprintf(out, n, "%s", r == HAK_REPORT_JSON ? "json" : r ? "text" : "0");
    break;
  }
  }
}

/* 1 true, 0 false, -1 neither. */
static int boolean(const char *v) {
  static const char *const yes[] = {"1", "on", "yes", "true"};
  static const char *const no[] = {"0", "off", "no", "false"};
  for (size_t i = 0; i < 4; i++) {
    if (!strcasecmp(v, yes[i]))
      return 1;
    if (!strcasecmp(v, no[i]))
      return 0;
  }
  return -1;
}

static bool number(const char *v, size_t lo, size_t hi, size_t *out) {
  char *end;
  unsigned long long x = strtoull(v, &end, 10);
  if (*v == '\0' || *v == '-' || *v == '+' || *end != '\0' || x < lo ||
      x > hi)
    return false;
  *out = (size_t)x;
  return true;
}

/* Signals a report must not be printed on: those that cannot be caught,
 * the synchronous faults (a program that crashes would print a report per
 * retry of the faulting instruction instead of dying) and SIGABRT, which
 * hakmem's own misuse reports raise. */
static bool signal_refused(size_t sig) {
  switch (sig) {
  case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS: case SIGILL:
  case SIGFPE: case SIGABRT: case SIGTRAP: case SIGSYS: return true;
  }
  /* glibc keeps the signals between 31 and SIGRTMIN for its threads. */
  return sig > SIGSYS && sig < (size_t)SIGRTMIN;
}

/* Parses v into s; on failure warns, naming where the value came from, and
 * keeps what cfg holds. */
static void apply(struct hak_config *cfg, const struct setting *s,
                  const char *v, const char *origin) {
  size_t x = 0;
  const char *why = "invalid or out of range";
  bool ok = false;
  int b;
  switch (s->kind) {
  case KIND_UNSIGNED:
  case KIND_SIZE: ok = number(v, s->lo, s->hi, &x); break;
  case KIND_BOOL:
    b = boolean(v);
    ok = b >= 0;
    x = (size_t)b;
    break;
  case KIND_REPORT:
    b = boolean(v);
    ok = true;
    if (b >= 0)
      x = b ? HAK_REPORT_TEXT : HAK_REPORT_OFF;
    else if (!strcasecmp(v, "text"))
      x = HAK_REPORT_TEXT;
    else if (!strcasecmp(v, "json"))
      x = HAK_REPORT_JSON;
    else
      ok = false;
    break;
  case KIND_SIGNAL:
    ok = number(v, 0, (size_t)SIGRTMAX, &x);
    if (ok && x && signal_refused(x)) {
      ok = false;
      why = "a signal that cannot carry a report";
    }
    break;
  case KIND_PATH:
    ok = strlen(v) < sizeof cfg->stats_file;
    why = "longer than 255 bytes";
    if (ok)
      strcpy((char *)field(cfg, s), v);
    break;
  }
  if (ok) {
    store(cfg, s, x);
    return;
  }
  char name[64], used[48];
  snprintf(name, sizeof name, "%s%s", origin, s->name);
  describe(cfg, s, used, sizeof used);
  /* A long value is cut, so that the line (and its reason) fits. */
  say("hakmem: ignoring %s=%.80s%s (%s); using %s\n", name, v,
      strlen(v) > 80 ? "..." : "", why, used);
}

static const struct setting *find(const char *name, size_t len) {
  if (len > 7 && !strncasecmp(name, "HAKMEM_", 7)) {
    name += 7;
    len -= 7;
  }
  for (size_t i = 0; i < NSETTINGS; i++)
    if (strlen(settings[i].name) == len &&
        !strncasecmp(settings[i].name, name, len))
      return &settings[i];
  return NULL;
}

/* An option string: "name=value,name=value".  Unknown names and pairs
 * without '=' are reported and skipped; the rest still apply. */
static void apply_string(struct hak_config *cfg, const char *conf,
                         const char *origin) {
  const char *p = conf;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char pair[128];
    if (len > 0 && len < sizeof pair) {
      memcpy(pair, p, len);
      pair[len] = '\0';
      char *eq = strchr(pair, '=');
      const struct setting *s = eq ? find(pair, (size_t)(eq - pair)) : NULL;
      if (s) {
        char where[64];
        snprintf(where, sizeof where, "%s: ", origin);
        apply(cfg, s, eq + 1, where);
      } else {
        say("hakmem: ignoring \"%s\" in %s (%s)\n", pair, origin,
            eq ? "no such setting" : "not name=value");
      }
    } else if (len > 0) {
      say("hakmem: ignoring a pair in %s (too long)\n", origin);
    }
    p += len + (end ? 1 : 0);
  }
}

/* A program may carry its settings: `const char *hakmem_conf = "...";`.
 * Weak, so that programs that do not define it link as before. */
extern const char *hakmem_conf __attribute__((weak, visibility("default")));

extern char **environ;

/* Whether HAKMEM_<name> (name of len bytes) is a variable hakmem reads;
 * the environment's names are case-sensitive, as getenv is. */
static bool known_variable(const char *name, size_t len) {
  for (size_t i = 0; i < NSETTINGS; i++)
    if (strlen(settings[i].name) == len && !memcmp(settings[i].name, name, len))
      return true;
  for (size_t i = 0; i < sizeof other_names / sizeof other_names[0]; i++)
    if (strlen(other_names[i]) == len && !memcmp(other_names[i], name, len))
      return true;
  return false;
}

/* One warning per HAKMEM_* variable that hakmem does not read: a misspelt
 * name would otherwise be ignored without a word. */
static void warn_unknown(void) {
  for (char **e = environ; e && *e; e++) {
    if (strncmp(*e, "HAKMEM_", 7))
      continue;
    const char *name = *e + 7, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    if (!known_variable(name, len))
      say("hakmem: ignoring HAKMEM_%.*s: no such setting\n",
          (int)(len < 64 ? len : 64), name);
  }
}

void hak_config_load(struct hak_config *cfg) {
  if (&hakmem_conf && hakmem_conf)
    apply_string(cfg, hakmem_conf, "hakmem_conf");
  const char *conf = getenv("HAKMEM_CONF");
  if (conf)
    apply_string(cfg, conf, "HAKMEM_CONF");
  for (size_t i = 0; i < NSETTINGS; i++) {
    char name[64];
    snprintf(name, sizeof name, "HAKMEM_%s", settings[i].name);
    const char *v = getenv(name);
    if (v)
      apply(cfg, &settings[i], v, "HAKMEM_");
  }
  warn_unknown();
  if (cfg->checks >= 2)
    cfg->guard_pages = true;
}
#else
/* The fast build has no runtime configuration: the library must not even
 * reference getenv (test/config checks the symbols). */
void hak_config_load(struct hak_config *cfg) { (void)cfg; }
#endif
