/*
 * KV round trip: put, get, list, compare-and-set, delete.
 *
 *   ./kv                 # against an embedded dev node started for the occasion
 *   ./kv 127.0.0.1:8500  # against a running agent
 *
 * Build: cc kv.c $(pkg-config --cflags --libs consul-rs) -o kv
 */
#include <consul_rs.h>
#include <stdio.h>
#include <string.h>

static int fail(const char *what, consul_error *err) {
  fprintf(stderr, "%s: %s\n", what, err ? consul_error_message(err) : "failed");
  consul_error_free(err);
  return 1;
}

int main(int argc, char **argv) {
  consul_error *err = NULL;
  consul_agent *agent = NULL;
  consul_client *client = NULL;
  int rc = 1;

  if (argc > 1) {
    if (consul_client_new(argv[1], NULL, &client, &err) != CONSUL_OK) return fail("client", err);
  } else {
    if (consul_agent_start(NULL, &agent, &err) != CONSUL_OK) return fail("agent", err);
    if (consul_agent_wait_for_leader(agent, 30000, &err) != CONSUL_OK) goto out;
    if (consul_agent_client(agent, &client, &err) != CONSUL_OK) goto out;
  }

  const char *greeting = "hello from C";
  bool ok = false;
  if (consul_kv_put(client, "example/greeting", (const uint8_t *)greeting, strlen(greeting), NULL, &ok, &err)) goto out;

  consul_kv_pair *pair = NULL;
  if (consul_kv_get(client, "example/greeting", NULL, &pair, NULL, &err)) goto out;
  size_t len = 0;
  const uint8_t *value = consul_kv_pair_value(pair, &len);
  printf("%s = %.*s (modify index %llu)\n", consul_kv_pair_key(pair), (int)len, (const char *)value,
         (unsigned long long)consul_kv_pair_modify_index(pair));

  /* Compare-and-set: only succeeds against the index we read. */
  consul_put_options cas = {.cas = (int64_t)consul_kv_pair_modify_index(pair)};
  consul_kv_pair_free(pair);
  if (consul_kv_put(client, "example/greeting", (const uint8_t *)"v2", 2, &cas, &ok, &err)) goto out;
  printf("cas with the current index: %s\n", ok ? "written" : "refused");
  if (consul_kv_put(client, "example/greeting", (const uint8_t *)"v3", 2, &cas, &ok, &err)) goto out;
  printf("cas with a stale index: %s\n", ok ? "written" : "refused");

  consul_kv_list *list = NULL;
  if (consul_kv_get_prefix(client, "example/", NULL, &list, NULL, &err)) goto out;
  printf("%zu key(s) under example/\n", consul_kv_list_len(list));
  consul_kv_list_free(list);

  if (consul_kv_delete(client, "example/", true, -1, &ok, &err)) goto out;
  rc = 0;
out:
  if (err) fail("kv", err);
  consul_client_free(client);
  consul_agent_free(agent);
  consul_rs_shutdown();
  return rc;
}
