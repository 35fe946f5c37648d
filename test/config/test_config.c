/* SPDX-License-Identifier: MIT */
/* test_config.c - HAKMEM_* variables: each parsed when valid, and an
 * invalid or out-of-range value ignored with one warning line naming the
 * variable, the value and the setting used instead.  In the fast build the
 * variables have no effect at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core_internal.h"

/* Runs hak_config_load on defaults with one variable set; returns the
 * result and what was written to stderr. */
static struct hak_config load_with(const char *name, const char *value,
                                   char *err, size_t errlen) {
  struct hak_config cfg;
  hak_config_defaults(&cfg);
  setenv(name, value, 1);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  int saved = dup(2);
  dup2(fds[1], 2);
  hak_config_load(&cfg);
  dup2(saved, 2);
  close(saved);
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  ssize_t n = read(fds[0], err, errlen - 1);
  err[n > 0 ? n : 0] = 0;
  close(fds[0]);
  unsetenv(name);
  return cfg;
}

static int lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

struct uint_var {
  const char *name;
  size_t (*get)(const struct hak_config *);
  size_t lo, hi;
};

static size_t get_ss_cache(const struct hak_config *c) {
  return c->superslab_cache;
}
static size_t get_ss_reserve(const struct hak_config *c) {
  return c->superslab_reserve;
}
static size_t get_huge(const struct hak_config *c) { return c->huge_cache_mb; }
static size_t get_dirty(const struct hak_config *c) {
  return c->tiny_dirty_slabs;
}
static size_t get_mid(const struct hak_config *c) { return c->mid_cache_kb; }
static size_t get_purge(const struct hak_config *c) {
  return c->purge_delay_ms;
}
static size_t get_checks(const struct hak_config *c) { return c->checks; }

static const struct uint_var uint_vars[] = {
    {"HAKMEM_SUPERSLAB_CACHE", get_ss_cache, 0, HAK_OS_SUPERSLAB_SLOTS},
    {"HAKMEM_SUPERSLAB_RESERVE", get_ss_reserve, 0, HAK_OS_SUPERSLAB_SLOTS},
    {"HAKMEM_HUGE_CACHE_MB", get_huge, 0, 65536},
    {"HAKMEM_TINY_DIRTY_SLABS", get_dirty, 0, 4096},
    {"HAKMEM_MID_CACHE_KB", get_mid, 0, 4096},
    {"HAKMEM_PURGE_DELAY_MS", get_purge, 0, 3600000},
    {"HAKMEM_CHECKS", get_checks, 1, 2},
};

static void test_numbers(void **state) {
  (void)state;
  struct hak_config def;
  hak_config_defaults(&def);
  char err[512], val[32];
  for (size_t i = 0; i < sizeof uint_vars / sizeof uint_vars[0]; i++) {
    const struct uint_var *v = &uint_vars[i];
    size_t dflt = v->get(&def);
    /* Valid: both ends of the range and a middle value. */
    size_t good[] = {v->lo, v->hi, (v->lo + v->hi) / 2};
    for (int k = 0; k < 3; k++) {
      snprintf(val, sizeof val, "%zu", good[k]);
      struct hak_config c = load_with(v->name, val, err, sizeof err);
      if (HAK_GATE_ENV_CONFIG) {
        assert_int_equal(v->get(&c), good[k]);
        assert_string_equal(err, "");
      } else {
        assert_int_equal(v->get(&c), dflt); /* fast: no effect */
      }
    }
    /* Invalid or out of range: default kept, one warning line. */
    snprintf(val, sizeof val, "%zu", v->hi + 1);
    const char *bad[] = {"banana", "",  "-1",
                         "12x",    val, "99999999999999999999999"};
    for (int k = 0; k < 6; k++) {
      struct hak_config c = load_with(v->name, bad[k], err, sizeof err);
      assert_int_equal(v->get(&c), dflt);
      if (HAK_GATE_ENV_CONFIG) {
        assert_int_equal(lines(err), 1);
        assert_non_null(strstr(err, v->name));
        char expect[96];
        snprintf(expect, sizeof expect, "=%s ", bad[k]);
        assert_non_null(strstr(err, expect));
        snprintf(expect, sizeof expect, "using %zu\n", dflt);
        assert_non_null(strstr(err, expect));
      } else {
        assert_string_equal(err, "");
      }
    }
  }
}

static void test_stats_choice(void **state) {
  (void)state;
  struct hak_config def;
  hak_config_defaults(&def);
  char err[512];
  struct {
    const char *value;
    int expect;
  } ok[] = {{"0", HAK_REPORT_OFF},   {"off", HAK_REPORT_OFF},
            {"1", HAK_REPORT_TEXT},  {"text", HAK_REPORT_TEXT},
            {"on", HAK_REPORT_TEXT}, {"json", HAK_REPORT_JSON},
            {"JSON", HAK_REPORT_JSON}, {"Text", HAK_REPORT_TEXT},
            {"No", HAK_REPORT_OFF}};
  for (int k = 0; k < 9; k++) {
    struct hak_config c =
        load_with("HAKMEM_STATS", ok[k].value, err, sizeof err);
    assert_int_equal(c.stats, HAK_GATE_ENV_CONFIG ? ok[k].expect : def.stats);
    assert_string_equal(err, "");
  }
  struct hak_config c = load_with("HAKMEM_STATS", "yaml", err, sizeof err);
  assert_int_equal(c.stats, def.stats);
  if (HAK_GATE_ENV_CONFIG) {
    assert_int_equal(lines(err), 1);
    assert_non_null(strstr(err, "HAKMEM_STATS=yaml"));
  }
}

static void test_booleans(void **state) {
  (void)state;
  char err[512];
  const char *yes[] = {"1", "on", "yes", "true", "ON", "Yes", "TRUE"};
  const char *no[] = {"0", "off", "no", "false", "OFF", "No", "False"};
  for (int k = 0; k < 7; k++) {
    struct hak_config c = load_with("HAKMEM_THP", yes[k], err, sizeof err);
    assert_int_equal(c.thp, HAK_GATE_ENV_CONFIG ? true : false);
    c = load_with("HAKMEM_VERBOSE", yes[k], err, sizeof err);
    assert_int_equal(c.verbose, HAK_GATE_ENV_CONFIG ? 1 : 0);
    c = load_with("HAKMEM_THP", no[k], err, sizeof err);
    assert_false(c.thp);
    assert_string_equal(err, "");
  }
  struct hak_config c = load_with("HAKMEM_THP", "maybe", err, sizeof err);
  assert_false(c.thp);
  if (HAK_GATE_ENV_CONFIG) {
    assert_int_equal(lines(err), 1);
    assert_non_null(strstr(err, "HAKMEM_THP=maybe"));
    assert_non_null(strstr(err, "using 0"));
  }
}

/* The checks level: 1 is the default of the checked builds; the per-call
 * checks cannot be switched off at run time (0 is refused: that is the fast
 * build); 2 adds the audits and guard pages. */
static void test_checks_level(void **state) {
  (void)state;
  struct hak_config def;
  hak_config_defaults(&def);
  assert_int_equal(def.checks, HAK_GATE_CHECKS ? 1 : 0);
  char err[512];
  struct hak_config c = load_with("HAKMEM_CHECKS", "0", err, sizeof err);
  assert_int_equal(c.checks, def.checks);
  if (HAK_GATE_ENV_CONFIG) {
    assert_int_equal(lines(err), 1);
    assert_non_null(strstr(err, "HAKMEM_CHECKS=0 "));
    assert_non_null(strstr(err, "using 1\n"));
  }
  c = load_with("HAKMEM_CHECKS", "2", err, sizeof err);
  assert_int_equal(c.guard_pages, HAK_GATE_ENV_CONFIG ? true : false);
  c = load_with("HAKMEM_CHECKS", "1", err, sizeof err);
  assert_false(c.guard_pages);
}

/* HAKMEM_STATS_SIGNAL: 0 (none) or a signal that can carry a report.  The
 * ones that cannot be caught, the synchronous faults (a crashing program
 * would print a report per retry), SIGABRT and glibc's own are refused. */
static void test_stats_signal(void **state) {
  (void)state;
  char err[512], val[16];
  const int ok[] = {0, SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGWINCH, SIGRTMIN,
                    SIGRTMAX};
  for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
    snprintf(val, sizeof val, "%d", ok[k]);
    struct hak_config c = load_with("HAKMEM_STATS_SIGNAL", val, err, sizeof err);
    assert_int_equal(c.stats_signal, HAK_GATE_ENV_CONFIG ? (size_t)ok[k] : 0);
    assert_string_equal(err, "");
  }
  const int refused[] = {SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGILL, SIGFPE,
                         SIGABRT, SIGTRAP, 32,      33,     SIGRTMAX + 1};
  for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
    snprintf(val, sizeof val, "%d", refused[k]);
    struct hak_config c = load_with("HAKMEM_STATS_SIGNAL", val, err, sizeof err);
    assert_int_equal(c.stats_signal, 0);
    if (HAK_GATE_ENV_CONFIG) {
      assert_int_equal(lines(err), 1);
      assert_non_null(strstr(err, "HAKMEM_STATS_SIGNAL="));
      assert_non_null(strstr(err, "using 0\n"));
    }
  }
}

/* HAKMEM_STATS_FILE: a path kept as given (the report expands %p); one too
 * long for the setting is refused with a warning. */
static void test_stats_file(void **state) {
  (void)state;
  char err[512];
  struct hak_config c =
      load_with("HAKMEM_STATS_FILE", "/tmp/hakmem.%p.json", err, sizeof err);
  assert_string_equal(c.stats_file,
                      HAK_GATE_ENV_CONFIG ? "/tmp/hakmem.%p.json" : "");
  assert_string_equal(err, "");
  char longer[400];
  memset(longer, 'a', sizeof longer - 1);
  longer[sizeof longer - 1] = 0;
  c = load_with("HAKMEM_STATS_FILE", longer, err, sizeof err);
  assert_string_equal(c.stats_file, "");
  if (HAK_GATE_ENV_CONFIG) {
    assert_int_equal(lines(err), 1);
    assert_non_null(strstr(err, "longer than 255 bytes"));
  }
  /* In an option string too, and a known name (no "no such setting"). */
  c = load_with("HAKMEM_CONF", "stats_file=/tmp/r.%p", err, sizeof err);
  assert_string_equal(c.stats_file, HAK_GATE_ENV_CONFIG ? "/tmp/r.%p" : "");
  assert_string_equal(err, "");
}

/* A HAKMEM_* name that hakmem does not read gets one warning naming it; a
 * known one none. */
static void test_unknown_name(void **state) {
  (void)state;
  char err[512];
  load_with("HAKMEM_STAT", "1", err, sizeof err);
  if (HAK_GATE_ENV_CONFIG) {
    assert_int_equal(lines(err), 1);
    assert_non_null(strstr(err, "HAKMEM_STAT:"));
    assert_non_null(strstr(err, "no such setting"));
  } else {
    assert_string_equal(err, "");
  }
  /* Names are case-sensitive, as the environment is. */
  load_with("HAKMEM_thp", "1", err, sizeof err);
  assert_int_equal(lines(err), HAK_GATE_ENV_CONFIG ? 1 : 0);
  load_with("HAKMEM_CONF", "", err, sizeof err);
  assert_string_equal(err, "");
}

/* The option string, from a program's hakmem_conf and from HAKMEM_CONF:
 * pairs apply in order, bad pairs warn and are skipped, and the individual
 * variables win over both. */
const char *hakmem_conf;

static void test_option_string(void **state) {
  (void)state;
  char err[512];
  struct hak_config def;
  hak_config_defaults(&def);
  struct hak_config c = load_with(
      "HAKMEM_CONF", "purge_delay_ms=77,THP=On,Superslab_Cache=5", err,
      sizeof err);
  assert_string_equal(err, "");
  assert_int_equal(c.purge_delay_ms, HAK_GATE_ENV_CONFIG ? 77 : def.purge_delay_ms);
  assert_int_equal(c.thp, HAK_GATE_ENV_CONFIG ? true : false);
  assert_int_equal(c.superslab_cache, HAK_GATE_ENV_CONFIG ? 5 : def.superslab_cache);

  c = load_with("HAKMEM_CONF", "stats=json,nosuch=1,purge_delay_ms,mid_cache_kb=9x",
                err, sizeof err);
  assert_int_equal(c.stats, HAK_GATE_ENV_CONFIG ? HAK_REPORT_JSON : def.stats);
  assert_int_equal(c.mid_cache_kb, def.mid_cache_kb);
  if (HAK_GATE_ENV_CONFIG) {
    assert_int_equal(lines(err), 3);
    assert_non_null(strstr(err, "\"nosuch=1\" in HAKMEM_CONF (no such setting)"));
    assert_non_null(strstr(err, "\"purge_delay_ms\" in HAKMEM_CONF (not name=value)"));
    assert_non_null(strstr(err, "HAKMEM_CONF: MID_CACHE_KB=9x"));
  }

  /* Precedence: hakmem_conf < HAKMEM_CONF < HAKMEM_<NAME>. */
  hakmem_conf = "purge_delay_ms=11,tiny_dirty_slabs=12,mid_cache_kb=13";
  setenv("HAKMEM_PURGE_DELAY_MS", "31", 1);
  c = load_with("HAKMEM_CONF", "purge_delay_ms=21,tiny_dirty_slabs=22", err,
                sizeof err);
  unsetenv("HAKMEM_PURGE_DELAY_MS");
  hakmem_conf = NULL;
  assert_string_equal(err, "");
  if (HAK_GATE_ENV_CONFIG) {
    assert_int_equal(c.mid_cache_kb, 13);
    assert_int_equal(c.tiny_dirty_slabs, 22);
    assert_int_equal(c.purge_delay_ms, 31);
  } else {
    assert_int_equal(c.purge_delay_ms, def.purge_delay_ms);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_stats_choice),
      cmocka_unit_test(test_booleans),
      cmocka_unit_test(test_checks_level),
      cmocka_unit_test(test_stats_signal),
      cmocka_unit_test(test_stats_file),
      cmocka_unit_test(test_unknown_name),
      cmocka_unit_test(test_option_string),
  };
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
