/* SPDX-License-Identifier: MIT */
/* test_child.h - running part of a test in a forked child, and how it
 * ended.
 *
 * Tests fork for what must not happen in the test process itself: a case
 * that has to be the process's first allocation, misuse that must abort, a
 * lowered address-space limit, a fork in the middle of other threads' work.
 * The child runs a function and exits with what it returns; it never goes
 * back into the test runner (a cmocka failure there would unwind into the
 * child's copy of the runner and go on running the other tests there), so
 * the parent learns what happened from how the child ended.
 *
 * No cmocka here either: a child may fork children of its own with these
 * helpers and pass their status up.
 */
#ifndef HAK_TEST_CHILD_H
#define HAK_TEST_CHILD_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

typedef int (*child_fn)(void *arg);

struct child_opts {
  unsigned alarm;      /* seconds until SIGALRM ends a hung child; 0: none */
  bool capture_stderr; /* the child's stderr goes to child_end.err */
  bool no_core;        /* an expected crash: no core file */
  /* For the tests of a layer's own fork handlers, called as
   * pthread_atfork's would be: before the fork, in the parent after it
   * (whether a child was started or not), first thing in the child. */
  void (*prepare)(void);
  void (*parent)(void);
  void (*child)(void);
};

/* A child started by child_start, to be waited for by child_wait. */
struct child {
  pid_t pid;
  int err_fd; /* the read end of the child's stderr, or -1 */
};

enum child_how {
  CHILD_EXITED, /* code: its exit status */
  CHILD_KILLED, /* code: the signal that ended it */
  CHILD_LOST,   /* code: errno of the fork, pipe or waitpid that failed */
};

struct child_end {
  enum child_how how;
  int code;
  char err[4096]; /* what it wrote to stderr, when captured; "" otherwise */
};

/* Forks a child that runs fn(arg) and exits with its result.  Returns
 * false, with errno set, if no child was started. */
static inline bool child_start(struct child *c, child_fn fn, void *arg,
                               const struct child_opts *o) {
  int fds[2] = {-1, -1};
  c->pid = -1;
  c->err_fd = -1;
  if (o->capture_stderr && pipe(fds) != 0)
    return false;
  /* The child leaves by _exit, so buffered output is not written twice;
   * flushed here so that what the parent printed comes before what the
   * child writes. */
  fflush(stdout);
  fflush(stderr);
  if (o->prepare)
    o->prepare();
  pid_t pid = fork();
  int fork_errno = errno;
  if (pid != 0 && o->parent)
    o->parent();
  if (pid < 0) {
    if (fds[0] >= 0) {
      close(fds[0]);
      close(fds[1]);
    }
    errno = fork_errno;
    return false;
  }
  if (pid == 0) {
    if (o->child)
      o->child();
    if (fds[0] >= 0) {
      close(fds[0]);
      if (dup2(fds[1], 2) < 0)
        _exit(98);
      close(fds[1]);
    }
    if (o->no_core) {
      struct rlimit none = {0, 0};
      setrlimit(RLIMIT_CORE, &none);
    }
    if (o->alarm)
      alarm(o->alarm);
    _exit(fn(arg));
  }
  if (fds[0] >= 0)
    close(fds[1]);
  c->pid = pid;
  c->err_fd = fds[0];
  return true;
}

/* Reads what the child writes to stderr (when captured) until it closes
 * it, then waits for the child to end. */
static inline void child_wait(struct child *c, struct child_end *e) {
  size_t len = 0;
  if (c->err_fd >= 0) {
    char rest[512]; /* beyond the buffer: read and dropped, never blocking
                       the child on a full pipe */
    for (;;) {
      bool room = len < sizeof e->err - 1;
      ssize_t r = room ? read(c->err_fd, e->err + len, sizeof e->err - 1 - len)
                       : read(c->err_fd, rest, sizeof rest);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        break;
      if (room)
        len += (size_t)r;
    }
    close(c->err_fd);
    c->err_fd = -1;
  }
  e->err[len] = 0;
  int status;
  pid_t w;
  do
    w = waitpid(c->pid, &status, 0);
  while (w < 0 && errno == EINTR);
  if (w != c->pid) {
    e->how = CHILD_LOST;
    e->code = w < 0 ? errno : 0;
  } else if (WIFSIGNALED(status)) {
    e->how = CHILD_KILLED;
    e->code = WTERMSIG(status);
  } else {
    e->how = CHILD_EXITED;
    e->code = WEXITSTATUS(status);
  }
}

/* child_start and child_wait in one. */
static inline void child_run(child_fn fn, void *arg, const struct child_opts *o,
                             struct child_end *e) {
  struct child c;
  if (!child_start(&c, fn, arg, o)) {
    e->how = CHILD_LOST;
    e->code = errno;
    e->err[0] = 0;
    return;
  }
  child_wait(&c, e);
}

static inline bool child_ok(const struct child_end *e) {
  return e->how == CHILD_EXITED && e->code == 0;
}

/* How the child ended, in words ("exited with status 11", "was killed by
 * signal 14 (SIGALRM: ...)"), for a failure message. */
static inline const char *child_end_text(const struct child_end *e, char *buf,
                                         size_t len) {
  if (e->how == CHILD_EXITED)
    snprintf(buf, len, "exited with status %d", e->code);
  else if (e->how == CHILD_KILLED)
    snprintf(buf, len, "was killed by signal %d%s", e->code,
             e->code == SIGALRM ? " (SIGALRM: its alarm, so it hung: a "
                                  "deadlock or a loop)"
                                : "");
  else
    snprintf(buf, len, "was lost: fork, pipe or waitpid failed (errno %d)",
             e->code);
  return buf;
}

#endif
