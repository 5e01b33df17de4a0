/*
 * The client against an embedded dev agent: KV (cas, flags, lists, keys, blocking reads),
 * transactions, sessions, events, catalog and health JSON, registration with heartbeated TTL
 * checks, discovery strategies, locks, and one client shared by many threads.
 */
#include "test_util.h"

static consul_agent *agent;
static consul_client *cl;

static int json_has(const char *json, const char *needle) { return json && strstr(json, needle) != NULL; }

TEST(kv_round_trip) {
  consul_error *err = NULL;
  const uint8_t value[] = {'b', 0, 'i', 'n', 0xff};
  bool ok = false;
  consul_put_options po = {.cas = -1, .flags = 42};
  CHECK_OK(consul_kv_put(cl, "rt/key", value, sizeof value, &po, &ok, &err));
  CHECK(ok);
  consul_kv_pair *p = NULL;
  uint64_t index = 0;
  CHECK_OK(consul_kv_get(cl, "rt/key", NULL, &p, &index, &err));
  CHECK(p != NULL && index > 0);
  if (p) {
    size_t len = 0;
    const uint8_t *v = consul_kv_pair_value(p, &len);
    CHECK(len == sizeof value && v && memcmp(v, value, len) == 0);
    CHECK(strcmp(consul_kv_pair_key(p), "rt/key") == 0);
    CHECK(consul_kv_pair_flags(p) == 42);
    CHECK(consul_kv_pair_modify_index(p) > 0 && consul_kv_pair_create_index(p) > 0);
    CHECK(consul_kv_pair_lock_index(p) == 0 && consul_kv_pair_session(p) == NULL);
  }
  consul_kv_pair_free(p);
  /* A missing key is CONSUL_OK with NULL. */
  p = (consul_kv_pair *)1;
  CHECK_OK(consul_kv_get(cl, "rt/missing", NULL, &p, NULL, &err));
  CHECK(p == NULL);
  /* An empty value. */
  CHECK_OK(consul_kv_put(cl, "rt/empty", NULL, 0, NULL, NULL, &err));
  CHECK_OK(consul_kv_get(cl, "rt/empty", NULL, &p, NULL, &err));
  size_t len = 9;
  CHECK(p && consul_kv_pair_value(p, &len) == NULL && len == 0);
  consul_kv_pair_free(p);
  CHECK_OK(consul_kv_delete(cl, "rt/key", false, -1, &ok, &err));
  CHECK(ok);
  CHECK_OK(consul_kv_get(cl, "rt/key", NULL, &p, NULL, &err));
  CHECK(p == NULL);
  /* Keys the agent refuses. */
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT, consul_kv_put(cl, "/lead", NULL, 0, NULL, NULL, &err));
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT, consul_kv_get(cl, "", NULL, &p, NULL, &err));
}

TEST(kv_cas) {
  consul_error *err = NULL;
  bool ok = false;
  consul_put_options only_new = {.cas = 0};
  CHECK_OK(consul_kv_put(cl, "cas/k", (const uint8_t *)"1", 1, &only_new, &ok, &err));
  CHECK(ok);
  CHECK_OK(consul_kv_put(cl, "cas/k", (const uint8_t *)"2", 1, &only_new, &ok, &err));
  CHECK(!ok); /* exists already */
  consul_kv_pair *p = NULL;
  CHECK_OK(consul_kv_get(cl, "cas/k", NULL, &p, NULL, &err));
  uint64_t mi = consul_kv_pair_modify_index(p);
  consul_kv_pair_free(p);
  consul_put_options stale = {.cas = (int64_t)mi - 1};
  CHECK_OK(consul_kv_put(cl, "cas/k", (const uint8_t *)"3", 1, &stale, &ok, &err));
  CHECK(!ok);
  consul_put_options current = {.cas = (int64_t)mi};
  CHECK_OK(consul_kv_put(cl, "cas/k", (const uint8_t *)"4", 1, &current, &ok, &err));
  CHECK(ok);
  CHECK_OK(consul_kv_delete(cl, "cas/k", false, (int64_t)mi, &ok, &err));
  CHECK(!ok); /* the index moved on */
  CHECK_OK(consul_kv_get(cl, "cas/k", NULL, &p, NULL, &err));
  CHECK_OK(consul_kv_delete(cl, "cas/k", false, (int64_t)consul_kv_pair_modify_index(p), &ok, &err));
  CHECK(ok);
  consul_kv_pair_free(p);
}

TEST(kv_lists_and_keys) {
  consul_error *err = NULL;
  const char *names[] = {"ls/a", "ls/b", "ls/sub/c"};
  for (int i = 0; i < 3; i++) CHECK_OK(consul_kv_put(cl, names[i], (const uint8_t *)"v", 1, NULL, NULL, &err));
  consul_kv_list *l = NULL;
  uint64_t index = 0;
  CHECK_OK(consul_kv_get_prefix(cl, "ls/", NULL, &l, &index, &err));
  CHECK(consul_kv_list_len(l) == 3 && index > 0);
  for (size_t i = 0; i < consul_kv_list_len(l); i++) CHECK(strcmp(consul_kv_pair_key(consul_kv_list_get(l, i)), names[i]) == 0);
  CHECK(consul_kv_list_get(l, 3) == NULL);
  consul_kv_list_free(l);
  consul_string_list *keys = NULL;
  CHECK_OK(consul_kv_keys(cl, "ls/", "/", NULL, &keys, NULL, &err));
  CHECK(consul_string_list_len(keys) == 3);
  if (consul_string_list_len(keys) == 3) CHECK(strcmp(consul_string_list_get(keys, 2), "ls/sub/") == 0);
  consul_string_list_free(keys);
  /* An empty prefix result is an empty list, not NULL. */
  CHECK_OK(consul_kv_get_prefix(cl, "nothing-here/", NULL, &l, NULL, &err));
  CHECK(l != NULL && consul_kv_list_len(l) == 0);
  consul_kv_list_free(l);
  bool ok = false;
  CHECK_OK(consul_kv_delete(cl, "ls/", true, -1, &ok, &err));
  CHECK(ok);
  CHECK_OK(consul_kv_get_prefix(cl, "ls/", NULL, &l, NULL, &err));
  CHECK(consul_kv_list_len(l) == 0);
  consul_kv_list_free(l);
}

static void *put_later(void *arg) {
  (void)arg;
  t_sleep_ms(300);
  consul_kv_put(cl, "block/k", (const uint8_t *)"new", 3, NULL, NULL, NULL);
  return NULL;
}

TEST(kv_blocking_read_and_consistency) {
  consul_error *err = NULL;
  CHECK_OK(consul_kv_put(cl, "block/k", (const uint8_t *)"old", 3, NULL, NULL, &err));
  consul_kv_pair *p = NULL;
  uint64_t index = 0;
  CHECK_OK(consul_kv_get(cl, "block/k", NULL, &p, &index, &err));
  consul_kv_pair_free(p);
  pthread_t t;
  pthread_create(&t, NULL, put_later, NULL);
  consul_query_options q = {.index = index, .wait_ms = 10000};
  double t0 = t_now();
  uint64_t index2 = 0;
  CHECK_OK(consul_kv_get(cl, "block/k", &q, &p, &index2, &err));
  double waited = t_now() - t0;
  pthread_join(t, NULL);
  CHECK(waited > 0.2 && waited < 9.0);
  CHECK(index2 > index);
  size_t len = 0;
  CHECK(p && len == 0 && memcmp(consul_kv_pair_value(p, &len), "new", 3) == 0 && len == 3);
  consul_kv_pair_free(p);
  consul_query_options stale = {.consistency = CONSUL_CONSISTENCY_STALE, .datacenter = "dc1"};
  CHECK_OK(consul_kv_get(cl, "block/k", &stale, &p, NULL, &err));
  consul_kv_pair_free(p);
  consul_query_options consistent = {.consistency = CONSUL_CONSISTENCY_CONSISTENT};
  CHECK_OK(consul_kv_get(cl, "block/k", &consistent, &p, NULL, &err));
  CHECK(p != NULL);
  consul_kv_pair_free(p);
  consul_query_options other_dc = {.datacenter = "nope"};
  p = NULL;
  consul_status s = consul_kv_get(cl, "block/k", &other_dc, &p, NULL, &err);
  CHECK(s != CONSUL_OK && p == NULL);
  consul_error_free(err);
}

TEST(txn) {
  consul_error *err = NULL;
  char *out = NULL;
  /* "MQ==" is base64 for "1". */
  CHECK_OK(consul_txn(cl,
                      "[{\"KV\":{\"Verb\":\"set\",\"Key\":\"txn/a\",\"Value\":\"MQ==\"}},"
                      " {\"KV\":{\"Verb\":\"set\",\"Key\":\"txn/b\",\"Value\":\"MQ==\"}}]",
                      &out, &err));
  CHECK(json_has(out, "\"Results\"") && json_has(out, "txn/b"));
  consul_string_free(out);
  out = NULL;
  CHECK_STATUS(CONSUL_E_CONFLICT,
               consul_txn(cl, "[{\"KV\":{\"Verb\":\"check-not-exists\",\"Key\":\"txn/a\"}}]", &out, &err));
  CHECK(out == NULL);
}

TEST(status_sessions_events) {
  consul_error *err = NULL;
  char *s = NULL;
  CHECK_OK(consul_status_leader(cl, &s, &err));
  CHECK(s && strlen(s) > 0);
  consul_string_free(s);
  CHECK_OK(consul_status_peers(cl, &s, &err));
  CHECK(json_has(s, "127.0.0.1"));
  consul_string_free(s);

  char *session = NULL;
  CHECK_OK(consul_session_create(cl, "{\"TTL\": \"30s\"}", &session, &err));
  CHECK(session && strlen(session) == 36);
  bool ok = false;
  consul_put_options acq = {.cas = -1, .acquire = session};
  CHECK_OK(consul_kv_put(cl, "sess/lock", (const uint8_t *)"me", 2, &acq, &ok, &err));
  CHECK(ok);
  consul_kv_pair *p = NULL;
  CHECK_OK(consul_kv_get(cl, "sess/lock", NULL, &p, NULL, &err));
  CHECK(p && consul_kv_pair_session(p) && strcmp(consul_kv_pair_session(p), session) == 0);
  CHECK(p && consul_kv_pair_lock_index(p) == 1);
  consul_kv_pair_free(p);
  consul_put_options both = {.cas = 0, .acquire = session};
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT, consul_kv_put(cl, "sess/lock", NULL, 0, &both, &ok, &err));
  consul_put_options rel = {.cas = -1, .release = session};
  CHECK_OK(consul_kv_put(cl, "sess/lock", NULL, 0, &rel, &ok, &err));
  CHECK(ok);
  CHECK_OK(consul_session_renew(cl, session, &err));
  CHECK_OK(consul_session_destroy(cl, session, &err));
  CHECK_STATUS(CONSUL_E_NOT_FOUND, consul_session_renew(cl, session, &err));
  consul_string_free(session);

  char *id = NULL;
  CHECK_OK(consul_event_fire(cl, "deploy", (const uint8_t *)"v2", 2, NULL, NULL, NULL, &id, &err));
  CHECK(id && strlen(id) == 36);
  char *list = NULL;
  CHECK_OK(consul_event_list(cl, "deploy", NULL, &list, NULL, &err));
  CHECK(json_has(list, id) && json_has(list, "\"Payload\":\"djI=\""));
  consul_string_free(list);
  consul_string_free(id);
  CHECK_OK(consul_event_fire(cl, "other", NULL, 0, ".*", NULL, NULL, NULL, &err));
}

TEST(catalog_and_health) {
  consul_error *err = NULL;
  char *json = NULL;
  uint64_t index = 0;
  CHECK_OK(consul_service_register(cl, "{\"Name\":\"web\",\"ID\":\"web-1\",\"Port\":8080,\"Tags\":[\"v1\"],"
                                       "\"Check\":{\"TTL\":\"30s\"}}", &err));
  CHECK(WAIT_JSON(json, consul_catalog_services(cl, NULL, &json, &index, NULL), json_has(json, "\"web\":[\"v1\"]")));
  CHECK(index > 0);
  consul_string_free(json);
  CHECK_OK(consul_health_service(cl, "web", false, "v1", NULL, &json, NULL, &err));
  CHECK(json_has(json, "\"ID\":\"web-1\"") && json_has(json, "critical"));
  consul_string_free(json);
  CHECK_OK(consul_health_service(cl, "web", true, NULL, NULL, &json, NULL, &err));
  CHECK(json && strcmp(json, "[]") == 0); /* its TTL check starts critical */
  consul_string_free(json);
  CHECK_OK(consul_check_update_ttl(cl, "service:web-1", "pass", "all good", &err));
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT, consul_check_update_ttl(cl, "service:web-1", "maybe", NULL, &err));
  CHECK(WAIT_JSON(json, consul_health_checks(cl, "web", NULL, &json, NULL, NULL),
                  json_has(json, "\"Status\":\"passing\"") && json_has(json, "all good")));
  consul_string_free(json);
  CHECK(WAIT_JSON(json, consul_health_service(cl, "web", true, NULL, NULL, &json, NULL, NULL), json_has(json, "web-1")));
  consul_string_free(json);
  CHECK_OK(consul_health_state(cl, "passing", NULL, &json, NULL, &err));
  CHECK(json_has(json, "service:web-1"));
  consul_string_free(json);
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT, consul_health_state(cl, "bogus", NULL, &json, NULL, &err));
  CHECK(WAIT_JSON(json, consul_catalog_nodes(cl, NULL, &json, NULL, NULL), json_has(json, "c-client")));
  consul_string_free(json);
  CHECK_OK(consul_catalog_register(cl, "{\"Node\":\"ext\",\"Address\":\"10.0.0.9\","
                                       "\"Service\":{\"Service\":\"db\",\"Port\":5432}}", &err));
  CHECK(WAIT_JSON(json, consul_health_service(cl, "db", false, NULL, NULL, &json, NULL, NULL), json_has(json, "10.0.0.9")));
  consul_string_free(json);
  CHECK_OK(consul_agent_self(cl, &json, &err));
  CHECK(json_has(json, "\"NodeName\":\"c-client\""));
  consul_string_free(json);
  CHECK_OK(consul_agent_members(cl, false, &json, &err));
  CHECK(json_has(json, "c-client"));
  consul_string_free(json);
  CHECK_OK(consul_service_deregister(cl, "web-1", &err));
  CHECK_STATUS(CONSUL_E_NOT_FOUND, consul_service_deregister(cl, "web-1", &err));
}

TEST(registration_keeps_ttl_passing) {
  consul_error *err = NULL;
  consul_registration *r = NULL;
  CHECK_OK(consul_register(cl, "{\"Name\":\"api\",\"ID\":\"api-1\",\"Port\":9000,\"Check\":{\"TTL\":\"2s\"}}", &r, &err));
  CHECK(r && strcmp(consul_registration_service_id(r), "api-1") == 0);
  char *json = NULL;
  CHECK(WAIT_JSON(json, consul_health_service(cl, "api", true, NULL, NULL, &json, NULL, NULL), json_has(json, "api-1")));
  consul_string_free(json);
  /* More than two TTLs: only the heartbeats (every TTL/3) keep it passing. A 2 s TTL leaves room
   * for a heartbeat delayed by valgrind on a busy machine. */
  t_sleep_ms(5000);
  CHECK_OK(consul_health_service(cl, "api", true, NULL, NULL, &json, NULL, &err));
  CHECK(json_has(json, "api-1"));
  consul_string_free(json);
  CHECK_OK(consul_registration_close(r, &err));
  CHECK_OK(consul_registration_close(r, &err)); /* idempotent */
  CHECK(WAIT_JSON(json, consul_health_service(cl, "api", false, NULL, NULL, &json, NULL, NULL), json && !strcmp(json, "[]")));
  consul_string_free(json);
  consul_registration_free(r);
  /* Freeing an open registration deregisters it. */
  CHECK_OK(consul_register(cl, "{\"Name\":\"api2\",\"Checks\":[{\"TTL\":\"5s\"},{\"CheckID\":\"own\",\"TTL\":\"5s\"}]}",
                           &r, &err));
  CHECK(WAIT_JSON(json, consul_health_checks(cl, "api2", NULL, &json, NULL, NULL),
                  json_has(json, "\"CheckID\":\"own\",") && json_has(json, "service:api2:1") &&
                      !json_has(json, "critical")));
  consul_string_free(json);
  consul_registration_free(r);
  CHECK(WAIT_JSON(json, consul_health_service(cl, "api2", false, NULL, NULL, &json, NULL, NULL), json && !strcmp(json, "[]")));
  consul_string_free(json);
}

TEST(discovery_pick) {
  consul_error *err = NULL;
  for (int i = 0; i < 3; i++) {
    char reg[160];
    snprintf(reg, sizeof reg, "{\"Name\":\"pool\",\"ID\":\"pool-%d\",\"Port\":%d,\"Address\":\"127.0.0.%d\"}", i, 7000 + i,
             i + 1);
    CHECK_OK(consul_service_register(cl, reg, &err));
  }
  consul_discovery *d = NULL;
  CHECK_OK(consul_discovery_new(cl, "pool", NULL, &d, &err));
  CHECK_OK(consul_discovery_ready(d, 10000, &err));
  CHECK(WAIT_FOR(({
                   char *j = NULL;
                   consul_discovery_instances(d, &j, NULL, NULL);
                   int n = json_has(j, "pool-0") && json_has(j, "pool-1") && json_has(j, "pool-2");
                   consul_string_free(j);
                   n;
                 }),
                 10));
  char seen[3] = {0};
  for (int i = 0; i < 3; i++) {
    consul_instance *inst = NULL;
    CHECK_OK(consul_discovery_pick(d, CONSUL_PICK_ROUND_ROBIN, NULL, &inst, &err));
    CHECK(inst != NULL);
    if (!inst) continue;
    int n = consul_instance_id(inst)[5] - '0';
    if (n >= 0 && n < 3) seen[n] = 1;
    CHECK(consul_instance_port(inst) == 7000 + n);
    char addr[16];
    snprintf(addr, sizeof addr, "127.0.0.%d", n + 1);
    CHECK(strcmp(consul_instance_address(inst), addr) == 0);
    CHECK(strcmp(consul_instance_service(inst), "pool") == 0);
    CHECK(strcmp(consul_instance_node(inst), "c-client") == 0);
    CHECK(json_has(consul_instance_json(inst), "\"Service\""));
    consul_instance_free(inst);
  }
  CHECK(seen[0] && seen[1] && seen[2]);
  consul_instance *a = NULL, *b = NULL;
  CHECK_OK(consul_discovery_pick(d, CONSUL_PICK_CONSISTENT_HASH, "user-42", &a, &err));
  CHECK_OK(consul_discovery_pick(d, CONSUL_PICK_CONSISTENT_HASH, "user-42", &b, &err));
  CHECK(a && b && strcmp(consul_instance_id(a), consul_instance_id(b)) == 0);
  consul_instance_free(a);
  consul_instance_free(b);
  consul_instance *x = NULL;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "key", consul_discovery_pick(d, CONSUL_PICK_CONSISTENT_HASH, NULL, &x, &err));
  for (uint32_t s = CONSUL_PICK_RANDOM; s <= CONSUL_PICK_LEAST_LATENCY; s++) {
    if (s == CONSUL_PICK_CONSISTENT_HASH) continue;
    CHECK_OK(consul_discovery_pick(d, s, NULL, &x, &err));
    CHECK(x != NULL);
    consul_instance_free(x);
    x = NULL;
  }
  /* Least latency follows reported latencies: pool-0 answers in 2 ms, the others in 20/40. */
  int fast = 0;
  for (int i = 0; i < 1300; i++) {
    CHECK_OK(consul_discovery_pick(d, CONSUL_PICK_LEAST_LATENCY, NULL, &x, &err));
    if (!x) break;
    int n = consul_instance_id(x)[5] - '0';
    if (i >= 300 && n == 0) fast++;
    CHECK_OK(consul_discovery_report(d, x, n == 0 ? 2.0 : n == 1 ? 20.0 : 40.0, 1, &err));
    consul_instance_free(x);
    x = NULL;
  }
  CHECK(fast >= 800);
  /* Failures eject (the share cap keeps the rest in); bad settings are refused by name. */
  CHECK_OK(consul_discovery_configure_balancer(d, "{\"consecutive_failures\": 2, \"base_ejection_ms\": 60000}", &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "max_ejected_share",
                consul_discovery_configure_balancer(d, "{\"max_ejected_share\": 3}", &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "warp", consul_discovery_configure_balancer(d, "{\"warp\": 1}", &err));
  consul_instance *victim = NULL;
  CHECK_OK(consul_discovery_pick(d, CONSUL_PICK_CONSISTENT_HASH, "user-42", &victim, &err));
  CHECK(victim != NULL);
  if (victim) {
    int ejected = -1;
    CHECK_OK(consul_discovery_report(d, victim, 1.0, 0, &err));
    CHECK_OK(consul_discovery_is_ejected(d, victim, &ejected, &err));
    CHECK(ejected == 0);
    CHECK_OK(consul_discovery_report(d, victim, 1.0, 0, &err));
    CHECK_OK(consul_discovery_is_ejected(d, victim, &ejected, &err));
    CHECK(ejected == 1);
    for (int i = 0; i < 20; i++) {
      CHECK_OK(consul_discovery_pick(d, CONSUL_PICK_ROUND_ROBIN, NULL, &x, &err));
      CHECK(x && strcmp(consul_instance_id(x), consul_instance_id(victim)) != 0);
      consul_instance_free(x);
      x = NULL;
    }
    CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "latency_ms", consul_discovery_report(d, victim, -5.0, 1, &err));
    consul_instance_free(victim);
  }
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "inst", consul_discovery_report(d, NULL, 1.0, 1, &err));
  consul_discovery_free(d);
  /* Nothing passing: pick answers NULL. */
  CHECK_OK(consul_discovery_new(cl, "no-such-service", NULL, &d, &err));
  CHECK_OK(consul_discovery_ready(d, 10000, &err));
  x = (consul_instance *)1;
  CHECK_OK(consul_discovery_pick(d, CONSUL_PICK_RANDOM, NULL, &x, &err));
  CHECK(x == NULL);
  consul_discovery_free(d);
  for (int i = 0; i < 3; i++) {
    char id[32];
    snprintf(id, sizeof id, "pool-%d", i);
    CHECK_OK(consul_service_deregister(cl, id, &err));
  }
}

static consul_status loc_register(const char *node, const char *status, const char *region, const char *zone) {
  char reg[512];
  snprintf(reg, sizeof reg,
           "{\"Node\":\"%s\",\"Address\":\"10.9.1.1\",\"Service\":{\"Service\":\"zoned\",\"ID\":\"zoned\","
           "\"Port\":80,\"Locality\":{\"Region\":\"%s\",\"Zone\":\"%s\"}},\"Checks\":[{\"CheckID\":\"zoned-%s\","
           "\"Name\":\"c\",\"Status\":\"%s\",\"ServiceID\":\"zoned\"}]}",
           node, region, zone, node, status);
  return consul_catalog_register(cl, reg, NULL);
}

static int instance_count(consul_discovery *d) {
  char *j = NULL;
  consul_discovery_instances(d, &j, NULL, NULL);
  int n = 0;
  for (const char *p = j; p && (p = strstr(p, "\"ServiceID\":\"zoned\"")); p++) n++;
  consul_string_free(j);
  return n;
}

/* Picks from `d` by locality (key "k") 20 times: whether every one was on `node`. */
static int locality_picks_only(consul_discovery *d, const char *node) {
  int all = 1;
  for (int i = 0; i < 20; i++) {
    consul_instance *x = NULL;
    if (consul_discovery_pick(d, CONSUL_PICK_LOCALITY, "k", &x, NULL) != CONSUL_OK || !x) return 0;
    all &= strcmp(consul_instance_node(x), node) == 0;
    consul_instance_free(x);
  }
  return all;
}

/* Issue #20: the caller's zone first, the region when the zone has no passing instance. */
TEST(discovery_locality) {
  consul_error *err = NULL;
  CHECK_OK(loc_register("zn1", "passing", "eu", "eu-a"));
  CHECK_OK(loc_register("rn2", "passing", "eu", "eu-b"));
  CHECK_OK(loc_register("on3", "passing", "us", "us-a"));
  consul_discovery *d = NULL;
  CHECK_OK(consul_discovery_new(cl, "zoned", NULL, &d, &err));
  CHECK_OK(consul_discovery_ready(d, 10000, &err));
  CHECK(WAIT_FOR(instance_count(d) == 3, 10));
  CHECK_OK(consul_discovery_set_locality_policy(
      d, "{\"locality\": {\"region\": \"eu\", \"zone\": \"eu-a\"}, \"region_strategy\": \"consistent_hash\"}", &err));
  CHECK(locality_picks_only(d, "zn1"));
  CHECK_OK(loc_register("zn1", "critical", "eu", "eu-a"));
  CHECK(WAIT_FOR(instance_count(d) == 2, 10));
  CHECK(locality_picks_only(d, "rn2"));
  CHECK_OK(loc_register("rn2", "critical", "eu", "eu-b"));
  CHECK(WAIT_FOR(instance_count(d) == 1, 10));
  CHECK(locality_picks_only(d, "on3"));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "min_healthy",
                consul_discovery_set_locality_policy(d, "{\"min_healthy\": 0}", &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "zone",
                consul_discovery_set_locality_policy(d, "{\"zone_strategy\": \"locality\"}", &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "locality.zone",
                consul_discovery_set_locality_policy(d, "{\"locality\": {\"zone\": 3}}", &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "warp", consul_discovery_set_locality_policy(d, "{\"warp\": 1}", &err));
  consul_discovery_free(d);
}

TEST(locks) {
  consul_error *err = NULL;
  consul_lock *l = NULL;
  CHECK_OK(consul_lock_acquire(cl, "locks/leader", (const uint8_t *)"me", 2, 10000, -1, &l, &err));
  CHECK(l && consul_lock_is_held(l));
  CHECK(l && strcmp(consul_lock_key(l), "locks/leader") == 0 && strlen(consul_lock_session(l)) == 36);
  consul_kv_pair *p = NULL;
  CHECK_OK(consul_kv_get(cl, "locks/leader", NULL, &p, NULL, &err));
  CHECK(p && consul_kv_pair_session(p) && strcmp(consul_kv_pair_session(p), consul_lock_session(l)) == 0);
  consul_kv_pair_free(p);
  consul_lock *l2 = NULL;
  double t0 = t_now();
  CHECK_STATUS(CONSUL_E_TIMEOUT, consul_lock_acquire(cl, "locks/leader", NULL, 0, 0, 500, &l2, &err));
  CHECK(l2 == NULL && t_now() - t0 >= 0.45);
  CHECK_OK(consul_lock_release(l, &err));
  CHECK(!consul_lock_is_held(l));
  CHECK_OK(consul_lock_release(l, &err)); /* idempotent */
  consul_lock_free(l);
  /* Free releases a held lock: a second holder gets it right after (lock-delay 0 on release). */
  CHECK_OK(consul_lock_acquire(cl, "locks/other", NULL, 0, 0, 5000, &l, &err));
  consul_lock_free(l);
  CHECK_OK(consul_lock_acquire(cl, "locks/other", NULL, 0, 0, 5000, &l2, &err));
  CHECK(l2 && consul_lock_is_held(l2));
  consul_lock_free(l2);
}

#define THREADS 8
#define OPS 40

static atomic_int thread_failures;

static void *hammer(void *arg) {
  long id = (long)arg;
  char key[32], val[32];
  for (int i = 0; i < OPS; i++) {
    snprintf(key, sizeof key, "mt/%ld/%d", id, i % 4);
    snprintf(val, sizeof val, "%ld-%d", id, i);
    bool ok = false;
    if (consul_kv_put(cl, key, (const uint8_t *)val, strlen(val), NULL, &ok, NULL) != CONSUL_OK || !ok)
      atomic_fetch_add(&thread_failures, 1);
    consul_kv_pair *p = NULL;
    size_t len = 0;
    if (consul_kv_get(cl, key, NULL, &p, NULL, NULL) != CONSUL_OK || !p ||
        memcmp(consul_kv_pair_value(p, &len), val, strlen(val)) != 0)
      atomic_fetch_add(&thread_failures, 1);
    consul_kv_pair_free(p);
  }
  return NULL;
}

TEST(one_client_many_threads) {
  pthread_t t[THREADS];
  for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, hammer, (void *)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  CHECK(atomic_load(&thread_failures) == 0);
  consul_error *err = NULL;
  bool ok = false;
  CHECK_OK(consul_kv_delete(cl, "mt/", true, -1, &ok, &err));
}

int main(int argc, char **argv) {
  TEST_MAIN_INIT(argc, argv);
  agent = start_dev_agent("c-client", &cl);
  if (!agent || !cl) {
    printf("0 passed, 1 failed\n");
    return 1;
  }
  RUN(kv_round_trip);
  RUN(kv_cas);
  RUN(kv_lists_and_keys);
  RUN(kv_blocking_read_and_consistency);
  RUN(txn);
  RUN(status_sessions_events);
  RUN(catalog_and_health);
  RUN(registration_keeps_ttl_passing);
  RUN(discovery_pick);
  RUN(discovery_locality);
  RUN(locks);
  RUN(one_client_many_threads);
  consul_client_free(cl);
  consul_error *err = NULL;
  CHECK_OK(consul_agent_shutdown(agent, &err));
  consul_agent_free(agent);
  return test_summary();
}
