/*
 * A tiny test harness for the libconsul_rs C tests.
 *
 *   TEST(name) { ... CHECK(x); CHECK_OK(consul_kv_put(..., &err)); ... }
 *   int main(int argc, char **argv) { RUN(name); ...; return test_summary(); }
 *
 * Each binary takes optional test names on the command line (run only those: the valgrind pass
 * runs a focused subset) and ends with "N passed, N failed". `err` in CHECK_OK/CHECK_STATUS is
 * a `consul_error *err = NULL;` the test declares; it is freed and reset after each check.
 */
#ifndef CONSUL_RS_TEST_UTIL_H
#define CONSUL_RS_TEST_UTIL_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "consul_rs.h"

static int t_passed, t_failed, t_current_failed;
static int t_argc;
static char **t_argv;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "    FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
      t_current_failed = 1;                                                          \
    }                                                                                \
  } while (0)

/* Expects `call` to return `want`; on a mismatch prints the error object. Frees `err`. */
#define CHECK_STATUS(want, call)                                                     \
  do {                                                                               \
    consul_status s_ = (call);                                                       \
    if (s_ != (want)) {                                                              \
      fprintf(stderr, "    FAIL %s:%d: %s\n      got %s, want %s: %s\n", __FILE__,   \
              __LINE__, #call, consul_status_str(s_), consul_status_str(want),       \
              err ? consul_error_message(err) : "(no error object)");               \
      t_current_failed = 1;                                                          \
    } else if ((want) != CONSUL_OK && err == NULL) {                                 \
      fprintf(stderr, "    FAIL %s:%d: %s: no error object\n", __FILE__, __LINE__,   \
              #call);                                                                \
      t_current_failed = 1;                                                          \
    } else if ((want) != CONSUL_OK && consul_error_code(err) != (want)) {            \
      fprintf(stderr, "    FAIL %s:%d: error object code %d != status\n", __FILE__,  \
              __LINE__, (int)consul_error_code(err));                                \
      t_current_failed = 1;                                                          \
    }                                                                                \
    consul_error_free(err);                                                          \
    err = NULL;                                                                      \
  } while (0)

#define CHECK_OK(call) CHECK_STATUS(CONSUL_OK, call)

/* Like CHECK_STATUS, and the error message must contain `needle` (it names the argument). */
#define CHECK_ERR_MSG(want, needle, call)                                            \
  do {                                                                               \
    consul_status s2_ = (call);                                                      \
    if (s2_ != (want) || err == NULL || !strstr(consul_error_message(err), (needle))) { \
      fprintf(stderr, "    FAIL %s:%d: %s\n      got %s (%s), want %s naming %s\n",  \
              __FILE__, __LINE__, #call, consul_status_str(s2_),                     \
              err ? consul_error_message(err) : "no error object",                   \
              consul_status_str(want), (needle));                                    \
      t_current_failed = 1;                                                          \
    }                                                                                \
    consul_error_free(err);                                                          \
    err = NULL;                                                                      \
  } while (0)

#define TEST(name) static void name(void)

static inline int t_selected(const char *name) {
  if (t_argc <= 1) return 1;
  for (int i = 1; i < t_argc; i++)
    if (strcmp(t_argv[i], name) == 0) return 1;
  return 0;
}

static inline double t_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void t_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

#define RUN(name)                                                                    \
  do {                                                                               \
    if (t_selected(#name)) {                                                         \
      double t0_ = t_now();                                                          \
      t_current_failed = 0;                                                          \
      name();                                                                        \
      if (t_current_failed) {                                                        \
        t_failed++;                                                                  \
        printf("FAIL %s (%.2fs)\n", #name, t_now() - t0_);                           \
      } else {                                                                       \
        t_passed++;                                                                  \
        printf("ok   %s (%.2fs)\n", #name, t_now() - t0_);                           \
      }                                                                              \
      fflush(stdout);                                                                \
    }                                                                                \
  } while (0)

#define TEST_MAIN_INIT(argc, argv) (t_argc = (argc), t_argv = (argv))

/* Prints the binary's summary and releases the library's runtime (so valgrind sees no leaks). */
static inline int test_summary(void) {
  consul_rs_shutdown();
  printf("%d passed, %d failed\n", t_passed, t_failed);
  return t_failed ? 1 : 0;
}

/* Polls `cond` (an expression) every 20 ms until it holds or `secs` pass; evaluates to it. */
#define WAIT_FOR(cond, secs)                                                         \
  ({                                                                                 \
    double d_ = t_now() + (secs);                                                    \
    while (!(cond) && t_now() < d_) t_sleep_ms(20);                                  \
    (cond);                                                                          \
  })

/* Repeats `query` (which sets the char * `json`) until `pred` holds or 30 s pass (generous: under
 * valgrind on a loaded two-core CI machine gossip and anti-entropy run many times slower; a
 * passing run returns as soon as `pred` holds); evaluates to whether it held. The agent syncs its local services and checks to the catalog in the
 * background (Consul's anti-entropy), so catalog and health reads may lag a registration. The
 * last answer stays in `json` (free it). */
#define WAIT_JSON(json, query, pred)                                                 \
  ({                                                                                 \
    int ok_ = 0;                                                                     \
    double dl_ = t_now() + 30;                                                       \
    for (;;) {                                                                       \
      (json) = NULL;                                                                 \
      (void)(query);                                                                 \
      ok_ = (pred);                                                                  \
      if (ok_ || t_now() > dl_) break;                                               \
      consul_string_free(json);                                                      \
      t_sleep_ms(50);                                                                \
    }                                                                                \
    ok_;                                                                             \
  })

/* A dev agent on free ports, and a client for it; NULL on failure (the test fails). */
static inline consul_agent *start_dev_agent(const char *node_name, consul_client **client) {
  consul_error *err = NULL;
  consul_agent *a = NULL;
  char cfg[256];
  snprintf(cfg, sizeof cfg, "{\"node_name\": \"%s\"}", node_name);
  CHECK_OK(consul_agent_start(cfg, &a, &err));
  if (!a) return NULL;
  CHECK_OK(consul_agent_wait_for_leader(a, 30000, &err));
  if (client) CHECK_OK(consul_agent_client(a, client, &err));
  return a;
}

#endif
