/*
 * Watches: pulled with `consul_watch_next` (timeouts, poll 0, a pollable fd, close waking a
 * blocked reader) and pushed to callbacks (user_data and its destructor, many watches and
 * writer threads at once, callbacks calling back into the library, close and free while a
 * callback runs, free from inside the callback, errors delivered to the callback).
 */
#include "test_util.h"

#include <poll.h>

static consul_agent *agent;
static consul_client *cl;

static void put(const char *key, const char *value) {
  consul_error *err = NULL;
  CHECK_OK(consul_kv_put(cl, key, (const uint8_t *)value, strlen(value), NULL, NULL, &err));
}

/* The value of a key event as a C string in `buf` ("" when absent). */
static const char *event_value(const consul_watch_event *ev, char *buf, size_t n) {
  const consul_kv_pair *p = consul_watch_event_kv_pair(ev);
  size_t len = 0;
  const uint8_t *v = p ? consul_kv_pair_value(p, &len) : NULL;
  if (len >= n) len = n - 1;
  if (v) memcpy(buf, v, len);
  buf[len] = 0;
  return buf;
}

TEST(pull_key_events) {
  consul_error *err = NULL;
  consul_watch *w = NULL;
  CHECK_OK(consul_watch_key(cl, "pw/k", &w, &err));
  consul_watch_event *ev = NULL;
  /* The first result is the current state: the key is absent. */
  CHECK_OK(consul_watch_next(w, 10000, &ev, &err));
  CHECK(ev && consul_watch_event_kind(ev) == CONSUL_WATCH_KEY && consul_watch_event_kv_pair(ev) == NULL);
  CHECK(ev && strcmp(consul_watch_event_json(ev), "null") == 0);
  CHECK(consul_watch_event_kv_list(ev) == NULL);
  consul_watch_event_free(ev);
  put("pw/k", "one");
  ev = NULL;
  CHECK_OK(consul_watch_next(w, 10000, &ev, &err));
  char buf[64];
  CHECK(ev && strcmp(event_value(ev, buf, sizeof buf), "one") == 0);
  CHECK(ev && consul_watch_event_index(ev) > 0);
  /* "b25l" is base64 for "one". */
  CHECK(ev && strstr(consul_watch_event_json(ev), "\"Value\":\"b25l\"") != NULL);
  consul_watch_event_free(ev);
  consul_watch_free(w);
}

TEST(next_timeouts) {
  consul_error *err = NULL;
  consul_watch *w = NULL;
  CHECK_OK(consul_watch_key(cl, "to/k", &w, &err));
  consul_watch_event *ev = NULL;
  CHECK_OK(consul_watch_next(w, 10000, &ev, &err));
  consul_watch_event_free(ev);
  ev = NULL;
  CHECK_STATUS(CONSUL_E_TIMEOUT, consul_watch_next(w, 0, &ev, &err));
  double t0 = t_now();
  CHECK_STATUS(CONSUL_E_TIMEOUT, consul_watch_next(w, 200, &ev, &err));
  double waited = t_now() - t0;
  CHECK(waited >= 0.19 && waited < 5.0);
  CHECK(ev == NULL);
  consul_watch_free(w);
}

TEST(prefix_events_and_fd) {
  consul_error *err = NULL;
  consul_watch *w = NULL;
  CHECK_OK(consul_watch_prefix(cl, "fdw/", &w, &err));
  int fd = consul_watch_fd(w);
  CHECK(fd >= 0);
  CHECK(consul_watch_fd(w) == fd); /* the same descriptor every time */
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  CHECK(poll(&pfd, 1, 10000) == 1); /* the initial state */
  consul_watch_event *ev = NULL;
  CHECK_OK(consul_watch_next(w, 0, &ev, &err));
  CHECK(ev && consul_watch_event_kind(ev) == CONSUL_WATCH_KEY_PREFIX);
  CHECK(consul_kv_list_len(consul_watch_event_kv_list(ev)) == 0);
  consul_watch_event_free(ev);
  CHECK(poll(&pfd, 1, 0) == 0); /* drained once taken */
  put("fdw/a", "1");
  put("fdw/b", "2");
  /* Coalescing: the latest state arrives, not necessarily one event per write. */
  int seen_both = 0;
  double deadline = t_now() + 10;
  while (!seen_both && t_now() < deadline) {
    if (poll(&pfd, 1, 10000) != 1) break;
    ev = NULL;
    CHECK_OK(consul_watch_next(w, 0, &ev, &err));
    const consul_kv_list *l = consul_watch_event_kv_list(ev);
    seen_both = consul_kv_list_len(l) == 2 && strcmp(consul_kv_pair_key(consul_kv_list_get(l, 1)), "fdw/b") == 0;
    if (seen_both) CHECK(strstr(consul_watch_event_json(ev), "\"Key\":\"fdw/a\"") != NULL);
    consul_watch_event_free(ev);
  }
  CHECK(seen_both);
  /* Closing makes the fd readable and next answer NULL. */
  consul_watch_close(w);
  CHECK(poll(&pfd, 1, 1000) == 1);
  ev = (consul_watch_event *)1;
  CHECK_OK(consul_watch_next(w, 0, &ev, &err));
  CHECK(ev == NULL);
  consul_watch_close(w); /* idempotent */
  consul_watch_free(w);
}

static void *blocked_next(void *arg) {
  consul_watch *w = arg;
  consul_watch_event *ev = (consul_watch_event *)1;
  consul_status s = consul_watch_next(w, -1, &ev, NULL);
  return (void *)(intptr_t)(s == CONSUL_OK && ev == NULL);
}

TEST(close_wakes_blocked_next) {
  consul_error *err = NULL;
  consul_watch *w = NULL;
  CHECK_OK(consul_watch_key(cl, "wake/k", &w, &err));
  consul_watch_event *ev = NULL;
  CHECK_OK(consul_watch_next(w, 10000, &ev, &err));
  consul_watch_event_free(ev);
  pthread_t t;
  pthread_create(&t, NULL, blocked_next, w);
  t_sleep_ms(200);
  double t0 = t_now();
  consul_watch_close(w);
  void *woke = NULL;
  pthread_join(t, &woke);
  CHECK(woke == (void *)1);
  CHECK(t_now() - t0 < 2.0);
  consul_watch_free(w);
}

TEST(other_kinds) {
  consul_error *err = NULL;
  CHECK_OK(consul_service_register(cl, "{\"Name\":\"watched\",\"ID\":\"watched-1\",\"Port\":1234}", &err));
  struct {
    uint32_t kind;
    const char *target;
    const char *needle;
  } cases[] = {
      {CONSUL_WATCH_SERVICE, "watched", "watched-1"},
      {CONSUL_WATCH_CHECKS, "watched", "["},
      {CONSUL_WATCH_SERVICES, NULL, "\"watched\""},
      {CONSUL_WATCH_NODES, NULL, "c-watch"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    consul_watch *w = NULL;
    consul_watch_options o = {.wait_ms = 2000, .passing_only = true};
    CHECK_OK(consul_watch_new(cl, cases[i].kind, cases[i].target, &o, &w, &err));
    int found = 0;
    double deadline = t_now() + 10;
    while (!found && t_now() < deadline) {
      consul_watch_event *ev = NULL;
      if (consul_watch_next(w, 10000, &ev, NULL) != CONSUL_OK || !ev) break;
      CHECK(consul_watch_event_kind(ev) == cases[i].kind);
      found = strstr(consul_watch_event_json(ev), cases[i].needle) != NULL;
      consul_watch_event_free(ev);
    }
    if (!found) fprintf(stderr, "    watch kind %u did not show %s\n", cases[i].kind, cases[i].needle);
    CHECK(found);
    consul_watch_free(w);
  }
  consul_watch *w = NULL;
  CHECK_OK(consul_watch_new(cl, CONSUL_WATCH_EVENTS, NULL, NULL, &w, &err));
  consul_watch_free(w);
  CHECK_OK(consul_service_deregister(cl, "watched-1", &err));
}

/* ---- callbacks ---- */

struct counter {
  atomic_int calls;
  atomic_int errors;
  atomic_int freed;
  atomic_int in_callback;
  atomic_int finished;
  int last_error_code;
  int sleep_ms;
  int reenter;
  int free_self;
  int close_self;
  consul_watch *self;
  char last[64];
  pthread_mutex_t mu;
};

static void counter_init(struct counter *c) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
}

static void on_event(void *user_data, const consul_watch_event *ev, const consul_error *err) {
  struct counter *c = user_data;
  atomic_store(&c->in_callback, 1);
  if (err) {
    c->last_error_code = consul_error_code(err);
    atomic_fetch_add(&c->errors, 1);
  } else {
    char buf[64];
    pthread_mutex_lock(&c->mu);
    if (consul_watch_event_kind(ev) == CONSUL_WATCH_KEY) {
      snprintf(c->last, sizeof c->last, "%s", event_value(ev, buf, sizeof buf));
    } else {
      const consul_kv_list *l = consul_watch_event_kv_list(ev);
      size_t n = consul_kv_list_len(l);
      if (n > 0) {
        const consul_kv_pair *p = consul_kv_list_get(l, n - 1);
        size_t len = 0;
        const uint8_t *v = consul_kv_pair_value(p, &len);
        snprintf(c->last, sizeof c->last, "%.*s", (int)len, v ? (const char *)v : "");
      }
    }
    pthread_mutex_unlock(&c->mu);
    if (c->reenter) {
      /* Callbacks may call back into the library, blocking calls included. */
      consul_kv_pair *p = NULL;
      consul_kv_get(cl, "cb/reenter", NULL, &p, NULL, NULL);
      consul_kv_pair_free(p);
    }
    if (c->sleep_ms) t_sleep_ms(c->sleep_ms);
    atomic_fetch_add(&c->calls, 1);
    if (c->close_self) consul_watch_close(c->self);
    if (c->free_self) consul_watch_free(c->self);
  }
  atomic_store(&c->in_callback, 0);
  atomic_fetch_add(&c->finished, 1);
}

static void on_free(void *user_data) {
  struct counter *c = user_data;
  atomic_fetch_add(&c->freed, 1);
}

static int last_is(struct counter *c, const char *want) {
  pthread_mutex_lock(&c->mu);
  int same = strcmp(c->last, want) == 0;
  pthread_mutex_unlock(&c->mu);
  return same;
}

TEST(callback_delivery) {
  consul_error *err = NULL;
  struct counter c;
  counter_init(&c);
  consul_watch *w = NULL;
  CHECK_OK(consul_watch_key(cl, "cb/k", &w, &err));
  CHECK_OK(consul_watch_set_callback(w, on_event, &c, on_free, &err));
  CHECK(WAIT_FOR(atomic_load(&c.calls) >= 1, 10)); /* the initial state */
  put("cb/k", "v1");
  CHECK(WAIT_FOR(last_is(&c, "v1"), 10));
  put("cb/k", "v2");
  CHECK(WAIT_FOR(last_is(&c, "v2"), 10));
  /* Callback mode excludes pulling, and a watch takes one callback. */
  consul_watch_event *ev = NULL;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "callback", consul_watch_next(w, 0, &ev, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "already", consul_watch_set_callback(w, on_event, &c, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "cb", consul_watch_set_callback(w, NULL, &c, NULL, &err));
  CHECK(atomic_load(&c.freed) == 0);
  consul_watch_free(w);
  /* Freed exactly once, after the last callback, before free returned. */
  CHECK(atomic_load(&c.freed) == 1);
  CHECK(atomic_load(&c.errors) == 0);
  int calls = atomic_load(&c.calls);
  put("cb/k", "v3");
  t_sleep_ms(200);
  CHECK(atomic_load(&c.calls) == calls);
  pthread_mutex_destroy(&c.mu);
}

TEST(callback_gets_errors) {
  consul_error *err = NULL;
  struct counter c;
  counter_init(&c);
  consul_watch *w = NULL;
  /* A key the agent refuses: the watch cannot ride that out, so it ends with the error. */
  CHECK_OK(consul_watch_key(cl, "/bad", &w, &err));
  CHECK_OK(consul_watch_set_callback(w, on_event, &c, on_free, &err));
  CHECK(WAIT_FOR(atomic_load(&c.errors) == 1, 10));
  CHECK(c.last_error_code == CONSUL_E_INVALID_ARGUMENT);
  CHECK(WAIT_FOR(atomic_load(&c.freed) == 1, 10)); /* ended: user_data released */
  consul_watch_free(w);
  CHECK(atomic_load(&c.freed) == 1 && atomic_load(&c.calls) == 0);
  /* The same error pulled: next reports it once, then the end. */
  CHECK_OK(consul_watch_key(cl, "/bad", &w, &err));
  consul_watch_event *ev = NULL;
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT, consul_watch_next(w, 10000, &ev, &err));
  CHECK_OK(consul_watch_next(w, 1000, &ev, &err));
  CHECK(ev == NULL);
  consul_watch_free(w);
  pthread_mutex_destroy(&c.mu);
}

#define WATCHES 8
#define WRITERS 4
#define ROUNDS 25

static void *writer(void *arg) {
  long id = (long)arg;
  char key[32], val[32];
  for (int r = 0; r < ROUNDS; r++) {
    for (int w = (int)id; w < WATCHES; w += WRITERS) {
      snprintf(key, sizeof key, "many/%d/k", w);
      snprintf(val, sizeof val, "%d", r);
      consul_kv_put(cl, key, (const uint8_t *)val, strlen(val), NULL, NULL, NULL);
    }
  }
  return NULL;
}

TEST(callbacks_from_many_threads) {
  consul_error *err = NULL;
  struct counter c[WATCHES];
  consul_watch *w[WATCHES];
  for (int i = 0; i < WATCHES; i++) {
    counter_init(&c[i]);
    c[i].reenter = 1;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "many/%d/", i);
    w[i] = NULL;
    CHECK_OK(consul_watch_prefix(cl, prefix, &w[i], &err));
    CHECK_OK(consul_watch_set_callback(w[i], on_event, &c[i], on_free, &err));
  }
  pthread_t t[WRITERS];
  for (long i = 0; i < WRITERS; i++) pthread_create(&t[i], NULL, writer, (void *)i);
  for (int i = 0; i < WRITERS; i++) pthread_join(t[i], NULL);
  char want[16];
  snprintf(want, sizeof want, "%d", ROUNDS - 1);
  for (int i = 0; i < WATCHES; i++) CHECK(WAIT_FOR(last_is(&c[i], want), 15));
  for (int i = 0; i < WATCHES; i++) {
    consul_watch_free(w[i]);
    CHECK(atomic_load(&c[i].freed) == 1);
    CHECK(atomic_load(&c[i].errors) == 0);
    pthread_mutex_destroy(&c[i].mu);
  }
  bool ok = false;
  CHECK_OK(consul_kv_delete(cl, "many/", true, -1, &ok, &err));
}

struct closer {
  consul_watch *w;
  int use_free;
};

static void *close_from_other_thread(void *arg) {
  struct closer *cl2 = arg;
  if (cl2->use_free)
    consul_watch_free(cl2->w);
  else
    consul_watch_close(cl2->w);
  return NULL;
}

TEST(close_while_callback_runs) {
  consul_error *err = NULL;
  for (int use_free = 0; use_free <= 1; use_free++) {
    struct counter c;
    counter_init(&c);
    c.sleep_ms = 400;
    consul_watch *w = NULL;
    CHECK_OK(consul_watch_key(cl, "slow/k", &w, &err));
    CHECK_OK(consul_watch_set_callback(w, on_event, &c, on_free, &err));
    CHECK(WAIT_FOR(atomic_load(&c.in_callback) == 1, 10));
    /* Close (or free) from another thread while the callback sleeps inside. */
    struct closer arg = {w, use_free};
    pthread_t t;
    double t0 = t_now();
    pthread_create(&t, NULL, close_from_other_thread, &arg);
    pthread_join(t, NULL);
    /* It returned only after the callback had finished and user_data was released. */
    CHECK(atomic_load(&c.in_callback) == 0);
    CHECK(atomic_load(&c.finished) == 1);
    CHECK(atomic_load(&c.freed) == 1);
    CHECK(t_now() - t0 > 0.1);
    if (!use_free) consul_watch_free(w);
    pthread_mutex_destroy(&c.mu);
  }
}

TEST(close_and_free_from_inside_the_callback) {
  consul_error *err = NULL;
  struct counter c;
  counter_init(&c);
  c.free_self = 1;
  CHECK_OK(consul_watch_key(cl, "selffree/k", &c.self, &err));
  CHECK_OK(consul_watch_set_callback(c.self, on_event, &c, on_free, &err));
  CHECK(WAIT_FOR(atomic_load(&c.freed) == 1, 10));
  CHECK(atomic_load(&c.calls) == 1);
  pthread_mutex_destroy(&c.mu);

  struct counter d;
  counter_init(&d);
  d.close_self = 1;
  CHECK_OK(consul_watch_key(cl, "selfclose/k", &d.self, &err));
  CHECK_OK(consul_watch_set_callback(d.self, on_event, &d, on_free, &err));
  CHECK(WAIT_FOR(atomic_load(&d.freed) == 1, 10));
  put("selfclose/k", "after");
  t_sleep_ms(200);
  CHECK(atomic_load(&d.calls) == 1);
  consul_watch_free(d.self);
  CHECK(atomic_load(&d.freed) == 1);
  pthread_mutex_destroy(&d.mu);
}

int main(int argc, char **argv) {
  TEST_MAIN_INIT(argc, argv);
  agent = start_dev_agent("c-watch", &cl);
  if (!agent || !cl) {
    printf("0 passed, 1 failed\n");
    return 1;
  }
  RUN(pull_key_events);
  RUN(next_timeouts);
  RUN(prefix_events_and_fd);
  RUN(close_wakes_blocked_next);
  RUN(other_kinds);
  RUN(callback_delivery);
  RUN(callback_gets_errors);
  RUN(callbacks_from_many_threads);
  RUN(close_while_callback_runs);
  RUN(close_and_free_from_inside_the_callback);
  consul_client_free(cl);
  consul_agent_free(agent);
  return test_summary();
}
