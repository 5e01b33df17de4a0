/*
 * A whole consul-rs node inside a C program: start it from Consul-style JSON, register a
 * service on it, get told by a watch callback when the service shows up healthy, then shut
 * everything down so that nothing is left running or allocated (it is run under valgrind by the
 * tests). Needs only <consul_rs.h> and `pkg-config --libs consul-rs`.
 *
 *   ./embed_agent
 */
#define _POSIX_C_SOURCE 200809L
#include <consul_rs.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct state {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  int healthy; /* the callback saw a passing instance of "inventory" */
  int released;
};

static void on_service(void *user_data, const consul_watch_event *ev, const consul_error *err) {
  struct state *s = user_data;
  if (err) {
    fprintf(stderr, "watch error: %s\n", consul_error_message(err));
    return;
  }
  /* Consul's /v1/health/service JSON: look for our instance. */
  const char *json = consul_watch_event_json(ev);
  if (strstr(json, "\"ID\":\"inventory-1\"")) {
    pthread_mutex_lock(&s->mu);
    if (!s->healthy) printf("watch callback: inventory-1 is passing (index %llu)\n",
                            (unsigned long long)consul_watch_event_index(ev));
    s->healthy = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
  }
}

static void on_release(void *user_data) {
  struct state *s = user_data;
  s->released = 1;
}

int main(void) {
  consul_error *err = NULL;
  consul_agent *agent = NULL;
  consul_client *client = NULL;
  consul_registration *reg = NULL;
  consul_watch *watch = NULL;
  struct state s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
  int rc = 1;

  printf("libconsul_rs %s (ABI %u)\n", consul_rs_version(), consul_rs_abi_version());
  /* Consul config-file keys; every port 0 = pick a free one. */
  if (consul_agent_start("{\"node_name\": \"embedded\", \"datacenter\": \"dc1\"}", &agent, &err)) goto out;
  if (consul_agent_wait_for_leader(agent, 30000, &err)) goto out;
  printf("node %s serving HTTP on %s\n", consul_agent_node_name(agent), consul_agent_http_addr(agent));
  if (consul_agent_client(agent, &client, &err)) goto out;

  /* Watch first, then register: the callback reports the change. */
  if (consul_watch_service(client, "inventory", true, &watch, &err)) goto out;
  if (consul_watch_set_callback(watch, on_service, &s, on_release, &err)) goto out;
  if (consul_register(client,
                      "{\"Name\": \"inventory\", \"ID\": \"inventory-1\", \"Port\": 7070,"
                      " \"Check\": {\"TTL\": \"5s\"}}",
                      &reg, &err))
    goto out;

  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 15;
  pthread_mutex_lock(&s.mu);
  while (!s.healthy && pthread_cond_timedwait(&s.cond, &s.mu, &until) == 0) {
  }
  int healthy = s.healthy;
  pthread_mutex_unlock(&s.mu);
  if (!healthy) {
    fprintf(stderr, "no watch callback within 15 s\n");
    goto out;
  }
  if (consul_registration_close(reg, &err)) goto out;
  rc = 0;
out:
  if (err) fprintf(stderr, "error: %s (%s)\n", consul_error_message(err), consul_status_str(consul_error_code(err)));
  consul_error_free(err);
  consul_watch_free(watch);
  consul_registration_free(reg);
  consul_client_free(client);
  if (agent) {
    consul_error *e2 = NULL;
    if (consul_agent_shutdown(agent, &e2)) {
      fprintf(stderr, "shutdown: %s\n", consul_error_message(e2));
      rc = 1;
    }
    consul_error_free(e2);
  }
  consul_agent_free(agent);
  consul_rs_shutdown(); /* the library's own runtime: nothing left behind */
  if (rc == 0 && !s.released) {
    fprintf(stderr, "user_data was not released\n");
    rc = 1;
  }
  if (rc == 0) printf("shut down cleanly\n");
  return rc;
}
