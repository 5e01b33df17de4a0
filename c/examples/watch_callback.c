/*
 * Watch a KV prefix with a callback. The callback runs on a thread the library owns; user_data
 * is released by the destructor given with it, exactly once, after the last call.
 *
 *   ./watch_callback [agent-address]
 */
#define _POSIX_C_SOURCE 200809L
#include <consul_rs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct seen {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  size_t keys; /* keys under the prefix in the latest event */
  int calls;
};

static void on_change(void *user_data, const consul_watch_event *ev, const consul_error *err) {
  struct seen *s = user_data;
  if (err) {
    fprintf(stderr, "watch ended: %s\n", consul_error_message(err));
    return;
  }
  const consul_kv_list *list = consul_watch_event_kv_list(ev);
  pthread_mutex_lock(&s->mu);
  s->keys = consul_kv_list_len(list);
  s->calls++;
  printf("event at index %llu: %zu key(s)\n", (unsigned long long)consul_watch_event_index(ev), s->keys);
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->mu);
}

static void release(void *user_data) {
  struct seen *s = user_data;
  printf("user_data released after %d call(s)\n", s->calls);
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int main(int argc, char **argv) {
  consul_error *err = NULL;
  consul_agent *agent = NULL;
  consul_client *client = NULL;
  consul_watch *watch = NULL;
  int rc = 1;

  if (argc > 1) {
    if (consul_client_new(argv[1], NULL, &client, &err)) goto out;
  } else {
    if (consul_agent_start(NULL, &agent, &err)) goto out;
    if (consul_agent_wait_for_leader(agent, 30000, &err)) goto out;
    if (consul_agent_client(agent, &client, &err)) goto out;
  }
  if (consul_watch_prefix(client, "jobs/", &watch, &err)) goto out;
  struct seen *s = calloc(1, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cond, NULL);
  if (consul_watch_set_callback(watch, on_change, s, release, &err)) {
    release(s); /* not taken on failure */
    goto out;
  }
  for (int i = 0; i < 3; i++) {
    char key[32];
    snprintf(key, sizeof key, "jobs/%d", i);
    if (consul_kv_put(client, key, (const uint8_t *)"queued", 6, NULL, NULL, &err)) goto out;
  }
  /* Wait (up to 10 s) until the callback has seen all three keys. */
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  pthread_mutex_lock(&s->mu);
  while (s->keys < 3 && pthread_cond_timedwait(&s->cond, &s->mu, &until) == 0) {
  }
  int done = s->keys == 3;
  pthread_mutex_unlock(&s->mu);
  if (!done) {
    fprintf(stderr, "the callback did not see the three keys\n");
    goto out;
  }
  bool ok;
  if (consul_kv_delete(client, "jobs/", true, -1, &ok, &err)) goto out;
  rc = 0;
out:
  if (err) fprintf(stderr, "error: %s\n", consul_error_message(err));
  consul_error_free(err);
  consul_watch_free(watch); /* waits for a running callback, then calls release() */
  consul_client_free(client);
  consul_agent_free(agent);
  consul_rs_shutdown();
  return rc;
}
