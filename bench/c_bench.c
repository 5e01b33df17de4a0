/*
 * libconsul_rs benchmark (issue #8 item 6): KV PUT/GET ops/s and latency from C, closed loop,
 * from 1 thread and from N threads sharing one client; the cost of a watch delivery (PUT → the
 * callback runs, against PUT → a pulled consul_watch_next returns); and Discovery pick().
 * Run by bench/c_bench.sh against the same agent as the Python figures.
 *
 *   c_bench HOST:PORT [seconds] [threads]
 */
#define _GNU_SOURCE 1
#include <consul_rs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NKEYS 1000
#define VALUE_LEN 128

static consul_client *client;
static char keys[NKEYS][32];
static uint8_t value[VALUE_LEN];
static double seconds = 5.0;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void die(const char *what, consul_error *err) {
  fprintf(stderr, "%s: %s\n", what, err ? consul_error_message(err) : "failed");
  exit(1);
}

struct worker {
  int id, stride, put;
  double start;
  double *lat;
  size_t n, cap;
};

static void *work(void *arg) {
  struct worker *w = arg;
  for (int i = w->id;; i += w->stride) {
    double t = now();
    if (t - w->start >= seconds) break;
    consul_error *err = NULL;
    if (w->put) {
      if (consul_kv_put(client, keys[i % NKEYS], value, VALUE_LEN, NULL, NULL, &err)) die("put", err);
    } else {
      consul_kv_pair *p = NULL;
      if (consul_kv_get(client, keys[i % NKEYS], NULL, &p, NULL, &err)) die("get", err);
      consul_kv_pair_free(p);
    }
    if (w->n == w->cap) {
      w->cap = w->cap ? w->cap * 2 : 4096;
      w->lat = realloc(w->lat, w->cap * sizeof(double));
    }
    w->lat[w->n++] = now() - t;
  }
  return NULL;
}

static void run(const char *name, int put, int threads) {
  struct worker *w = calloc((size_t)threads, sizeof *w);
  pthread_t *t = calloc((size_t)threads, sizeof *t);
  double start = now();
  for (int i = 0; i < threads; i++) {
    w[i] = (struct worker){.id = i, .stride = threads, .put = put, .start = start};
    pthread_create(&t[i], NULL, work, &w[i]);
  }
  size_t total = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    total += w[i].n;
  }
  double elapsed = now() - start;
  double *all = malloc(total * sizeof(double));
  size_t k = 0;
  for (int i = 0; i < threads; i++) {
    memcpy(all + k, w[i].lat, w[i].n * sizeof(double));
    k += w[i].n;
    free(w[i].lat);
  }
  qsort(all, total, sizeof(double), cmp_double);
  printf("%-26s %9.0f %8.2f %8.2f\n", name, (double)total / elapsed, all[total / 2] * 1e3,
         all[(size_t)((double)total * 0.99)] * 1e3);
  free(all);
  free(w);
  free(t);
}

/* ---- watch delivery ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long seen_round = -1;
static double seen_at;

static void on_event(void *ud, const consul_watch_event *ev, const consul_error *err) {
  (void)ud;
  double t = now();
  if (err) return;
  const consul_kv_pair *p = consul_watch_event_kv_pair(ev);
  if (!p) return;
  size_t len = 0;
  const uint8_t *v = consul_kv_pair_value(p, &len);
  char buf[32] = {0};
  memcpy(buf, v, len < 31 ? len : 31);
  pthread_mutex_lock(&mu);
  seen_round = atol(buf);
  seen_at = t;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&mu);
}

static void print_dist(const char *name, double *d, int n) {
  qsort(d, (size_t)n, sizeof(double), cmp_double);
  printf("%-44s median %7.3f ms   p90 %7.3f ms   max %7.3f ms\n", name, d[n / 2] * 1e3, d[(n * 9) / 10] * 1e3,
         d[n - 1] * 1e3);
}

#define ROUNDS 50

static void watch_delivery(void) {
  consul_error *err = NULL;
  double put_to_cb[ROUNDS], after_put_cb[ROUNDS], put_to_next[ROUNDS], after_put_next[ROUNDS];
  char v[32];

  /* Pushed: a callback on the library's thread. */
  consul_watch *w = NULL;
  if (consul_watch_key(client, "cbench/watch", &w, &err)) die("watch", err);
  if (consul_watch_set_callback(w, on_event, NULL, NULL, &err)) die("callback", err);
  sleep_ms(300);
  for (int i = 0; i < ROUNDS; i++) {
    sleep_ms(150); /* let the watch settle into its blocking query */
    snprintf(v, sizeof v, "%d", i);
    double t0 = now();
    if (consul_kv_put(client, "cbench/watch", (const uint8_t *)v, strlen(v), NULL, NULL, &err)) die("put", err);
    double t1 = now();
    pthread_mutex_lock(&mu);
    while (seen_round != i) pthread_cond_wait(&cond, &mu);
    double t2 = seen_at;
    pthread_mutex_unlock(&mu);
    put_to_cb[i] = t2 - t0;
    after_put_cb[i] = t2 - t1;
  }
  consul_watch_free(w);

  /* Pulled: consul_watch_next on this thread, for comparison. */
  if (consul_watch_key(client, "cbench/watch", &w, &err)) die("watch", err);
  consul_watch_event *ev = NULL;
  if (consul_watch_next(w, 10000, &ev, &err)) die("next", err);
  consul_watch_event_free(ev);
  for (int i = 0; i < ROUNDS; i++) {
    sleep_ms(150);
    snprintf(v, sizeof v, "%d", ROUNDS + i);
    double t0 = now();
    if (consul_kv_put(client, "cbench/watch", (const uint8_t *)v, strlen(v), NULL, NULL, &err)) die("put", err);
    double t1 = now();
    ev = NULL;
    if (consul_watch_next(w, 10000, &ev, &err)) die("next", err);
    double t2 = now();
    consul_watch_event_free(ev);
    put_to_next[i] = t2 - t0;
    after_put_next[i] = t2 - t1;
  }
  consul_watch_free(w);
  print_dist("watch: PUT -> callback runs (incl. the PUT)", put_to_cb, ROUNDS);
  print_dist("watch: PUT returned -> callback runs", after_put_cb, ROUNDS);
  print_dist("watch: PUT -> next() returns (incl. the PUT)", put_to_next, ROUNDS);
  print_dist("watch: PUT returned -> next() returns", after_put_next, ROUNDS);
}

static void pick_cost(void) {
  consul_error *err = NULL;
  for (int i = 0; i < 5; i++) {
    char reg[200];
    snprintf(reg, sizeof reg,
             "{\"Node\":\"cb%d\",\"Address\":\"10.8.0.%d\",\"Service\":{\"Service\":\"cbench-web\",\"Port\":80}}", i, i);
    if (consul_catalog_register(client, reg, &err)) die("catalog register", err);
  }
  consul_discovery *d = NULL;
  if (consul_discovery_new(client, "cbench-web", NULL, &d, &err)) die("discovery", err);
  if (consul_discovery_ready(d, 10000, &err)) die("ready", err);
  for (int tries = 0; tries < 200; tries++) {
    char *json = NULL;
    consul_discovery_instances(d, &json, NULL, NULL);
    int n = 0;
    for (const char *p = json; p && (p = strstr(p, "\"cbench-web\"")); p++) n++;
    consul_string_free(json);
    if (n >= 5) break;
    sleep_ms(50);
  }
  const int n = 200000;
  const struct {
    uint32_t s;
    const char *key, *name;
  } cases[] = {{CONSUL_PICK_ROUND_ROBIN, NULL, "round_robin"}, {CONSUL_PICK_CONSISTENT_HASH, "user-1", "consistent_hash"}};
  for (int c = 0; c < 2; c++) {
    double t = now();
    for (int i = 0; i < n; i++) {
      consul_instance *inst = NULL;
      if (consul_discovery_pick(d, cases[c].s, cases[c].key, &inst, &err)) die("pick", err);
      consul_instance_free(inst);
    }
    printf("pick(%s) over 5 instances: %.2f us per call\n", cases[c].name, (now() - t) / n * 1e6);
  }
  consul_discovery_free(d);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s HOST:PORT [seconds] [threads]\n", argv[0]);
    return 2;
  }
  if (argc > 2) seconds = atof(argv[2]);
  int threads = argc > 3 ? atoi(argv[3]) : 16;
  consul_error *err = NULL;
  if (consul_client_new(argv[1], NULL, &client, &err)) die("client", err);
  memset(value, 'v', sizeof value);
  for (int i = 0; i < NKEYS; i++) {
    snprintf(keys[i], sizeof keys[i], "cbench/%d", i);
    if (consul_kv_put(client, keys[i], value, VALUE_LEN, NULL, NULL, &err)) die("seed", err);
  }
  printf("%-26s %9s %8s %8s\n", "run (libconsul_rs)", "ops/s", "p50 ms", "p99 ms");
  run("C PUT 1 thread", 1, 1);
  run("C GET 1 thread", 0, 1);
  char name[64];
  snprintf(name, sizeof name, "C PUT %d threads", threads);
  run(name, 1, threads);
  snprintf(name, sizeof name, "C GET %d threads", threads);
  run(name, 0, threads);
  watch_delivery();
  pick_cost();
  consul_client_free(client);
  consul_rs_shutdown();
  return 0;
}
