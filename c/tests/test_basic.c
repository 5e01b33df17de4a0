/*
 * libconsul_rs without an agent: versions, status strings, the error object, NULL and garbage
 * arguments for every call, wrong handle types, the panic boundary, connection errors.
 */
#include "test_util.h"

/* A client for a port nobody listens on: argument checks happen before any request. */
static consul_client *dead_client(void) {
  consul_error *err = NULL;
  consul_client *c = NULL;
  CHECK_OK(consul_client_new("127.0.0.1:1", NULL, &c, &err));
  return c;
}

TEST(version_and_abi) {
  CHECK(strcmp(consul_rs_version(), CONSUL_RS_VERSION_STRING) == 0);
  CHECK(consul_rs_abi_version() == CONSUL_RS_ABI_VERSION);
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", CONSUL_RS_VERSION_MAJOR, CONSUL_RS_VERSION_MINOR, CONSUL_RS_VERSION_PATCH);
  CHECK(strcmp(consul_rs_version(), want) == 0);
}

TEST(status_strings) {
  CHECK(strcmp(consul_status_str(CONSUL_OK), "CONSUL_OK") == 0);
  CHECK(strcmp(consul_status_str(CONSUL_E_NOT_FOUND), "CONSUL_E_NOT_FOUND") == 0);
  CHECK(strcmp(consul_status_str(CONSUL_E_NULL_ARG), "CONSUL_E_NULL_ARG") == 0);
  CHECK(strcmp(consul_status_str(CONSUL_E_PANIC), "CONSUL_E_PANIC") == 0);
  CHECK(strcmp(consul_status_str(12345), "CONSUL_E_UNKNOWN") == 0);
  CHECK(strcmp(consul_status_str(-1), "CONSUL_E_UNKNOWN") == 0);
}

TEST(error_object) {
  consul_error *err = NULL;
  consul_client *c = NULL;
  consul_status s = consul_client_new("", NULL, &c, &err);
  CHECK(s == CONSUL_E_INVALID_ARGUMENT);
  CHECK(c == NULL); /* out-pointers are written only on success */
  CHECK(err != NULL);
  CHECK(consul_error_code(err) == CONSUL_E_INVALID_ARGUMENT);
  CHECK(strstr(consul_error_message(err), "address") != NULL);
  CHECK(consul_error_http_status(err) == 0);
  consul_error_free(err);
  /* NULL-safe accessors and frees */
  CHECK(consul_error_code(NULL) == CONSUL_E_INVALID_ARGUMENT);
  CHECK(consul_error_message(NULL) != NULL);
  CHECK(consul_error_http_status(NULL) == 0);
  consul_error_free(NULL);
  consul_string_free(NULL);
  /* err may be NULL: the status alone comes back */
  CHECK(consul_client_new("", NULL, &c, NULL) == CONSUL_E_INVALID_ARGUMENT);
}

TEST(null_arguments) {
  consul_error *err = NULL;
  consul_client *c = dead_client();
  char *s = NULL;
  uint64_t idx = 0;
  bool ok = false;
  consul_kv_pair *pair = NULL;
  consul_kv_list *list = NULL;
  consul_string_list *keys = NULL;
  consul_watch *w = NULL;
  consul_discovery *d = NULL;
  consul_lock *l = NULL;
  consul_registration *r = NULL;
  consul_agent *a = NULL;
  consul_client *c2 = NULL;
  const uint8_t v[] = "x";

  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_client_new(NULL, NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "config_json", consul_client_new_json(NULL, &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_client_new_json("{}", NULL, &err));

  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_kv_get(NULL, "k", NULL, &pair, &idx, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "key", consul_kv_get(c, NULL, NULL, &pair, &idx, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_kv_get(c, "k", NULL, NULL, &idx, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_kv_get_prefix(NULL, "", NULL, &list, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "prefix", consul_kv_get_prefix(c, NULL, NULL, &list, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_kv_get_prefix(c, "", NULL, NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_kv_keys(NULL, "", NULL, NULL, &keys, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "prefix", consul_kv_keys(c, NULL, "/", NULL, &keys, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_kv_keys(c, "", NULL, NULL, NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_kv_put(NULL, "k", v, 1, NULL, &ok, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "key", consul_kv_put(c, NULL, v, 1, NULL, &ok, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "value", consul_kv_put(c, "k", NULL, 5, NULL, &ok, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_kv_delete(NULL, "k", false, -1, &ok, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "key", consul_kv_delete(c, NULL, false, -1, &ok, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_txn(NULL, "[]", &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "ops_json", consul_txn(c, NULL, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_json", consul_txn(c, "[]", NULL, &err));

  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_status_leader(NULL, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_status_leader(c, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_status_peers(NULL, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_json", consul_status_peers(c, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_health_service(NULL, "web", false, NULL, NULL, &s, &idx, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "service", consul_health_service(c, NULL, false, NULL, NULL, &s, &idx, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_json", consul_health_service(c, "web", false, NULL, NULL, NULL, &idx, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_health_checks(NULL, "web", NULL, &s, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "service", consul_health_checks(c, NULL, NULL, &s, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_json", consul_health_checks(c, "web", NULL, NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_health_state(NULL, "any", NULL, &s, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "state", consul_health_state(c, NULL, NULL, &s, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_catalog_services(NULL, NULL, &s, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_json", consul_catalog_services(c, NULL, NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_catalog_nodes(NULL, NULL, &s, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_json", consul_catalog_nodes(c, NULL, NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_catalog_register(NULL, "{}", &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "registration_json", consul_catalog_register(c, NULL, &err));

  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_service_register(NULL, "{}", &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "registration_json", consul_service_register(c, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_service_deregister(NULL, "web", &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "service_id", consul_service_deregister(c, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_check_update_ttl(NULL, "c", "pass", NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "check_id", consul_check_update_ttl(c, NULL, "pass", NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "status", consul_check_update_ttl(c, "c", NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_agent_self(NULL, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_json", consul_agent_self(c, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_agent_members(NULL, false, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_json", consul_agent_members(c, false, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_agent_join_address(NULL, "x", false, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "address", consul_agent_join_address(c, NULL, false, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_agent_force_leave(NULL, "n", false, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "node", consul_agent_force_leave(c, NULL, false, &err));

  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_session_create(NULL, "{}", &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "body_json", consul_session_create(c, NULL, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_id", consul_session_create(c, "{}", NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_session_destroy(NULL, "id", &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "session_id", consul_session_destroy(c, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_session_renew(NULL, "id", &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "session_id", consul_session_renew(c, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_event_fire(NULL, "e", NULL, 0, NULL, NULL, NULL, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "name", consul_event_fire(c, NULL, NULL, 0, NULL, NULL, NULL, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "payload", consul_event_fire(c, "e", NULL, 3, NULL, NULL, NULL, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_event_list(NULL, NULL, NULL, &s, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out_json", consul_event_list(c, NULL, NULL, NULL, NULL, &err));

  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_watch_new(NULL, CONSUL_WATCH_NODES, NULL, NULL, &w, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_watch_new(c, CONSUL_WATCH_NODES, NULL, NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "target", consul_watch_new(c, CONSUL_WATCH_KEY, NULL, NULL, &w, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "target", consul_watch_key(c, NULL, &w, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "target", consul_watch_prefix(c, NULL, &w, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "target", consul_watch_service(c, NULL, true, &w, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_watch_key(NULL, "k", &w, &err));
  CHECK(w == NULL);
  consul_watch_event *ev = NULL;
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "watch", consul_watch_next(NULL, 0, &ev, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "watch", consul_watch_set_callback(NULL, NULL, NULL, NULL, &err));
  CHECK(consul_watch_fd(NULL) == -1);

  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_discovery_new(NULL, "web", NULL, &d, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "service", consul_discovery_new(c, NULL, NULL, &d, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_discovery_new(c, "web", NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "discovery", consul_discovery_ready(NULL, 10, &err));
  consul_instance *inst = NULL;
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "discovery", consul_discovery_pick(NULL, 0, NULL, &inst, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "discovery", consul_discovery_instances(NULL, &s, NULL, &err));

  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "client", consul_lock_acquire(NULL, "k", NULL, 0, 0, 0, &l, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "key", consul_lock_acquire(c, NULL, NULL, 0, 0, 0, &l, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_lock_acquire(c, "k", NULL, 0, 0, 0, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "lock", consul_lock_release(NULL, &err));
  /* A NULL client is the local agent (test_agent.c); the registration is still checked first. */
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "Name", consul_register(NULL, "{}", &r, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "registration_json", consul_register(NULL, NULL, &r, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "registration_json", consul_register(c, NULL, &r, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_register(c, "{\"Name\":\"x\"}", NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "registration", consul_registration_close(NULL, &err));

  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "out", consul_agent_start(NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "agent", consul_agent_client(NULL, &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "agent", consul_agent_wait_for_leader(NULL, 10, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "agent", consul_agent_join(NULL, "127.0.0.1:1", &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "agent", consul_agent_members_json(NULL, &s, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "agent", consul_agent_leave(NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_NULL_ARG, "agent", consul_agent_shutdown(NULL, &err));
  CHECK(a == NULL && c2 == NULL && s == NULL && pair == NULL && list == NULL && keys == NULL);
  CHECK(d == NULL && l == NULL && r == NULL && inst == NULL && ev == NULL);

  /* Accessors answer neutral values for NULL; every free and close accepts NULL. */
  size_t len = 7;
  CHECK(consul_client_address(NULL) == NULL);
  CHECK(consul_kv_pair_key(NULL) == NULL);
  CHECK(consul_kv_pair_value(NULL, &len) == NULL && len == 0);
  CHECK(consul_kv_pair_value(NULL, NULL) == NULL);
  CHECK(consul_kv_pair_flags(NULL) == 0 && consul_kv_pair_modify_index(NULL) == 0);
  CHECK(consul_kv_pair_create_index(NULL) == 0 && consul_kv_pair_lock_index(NULL) == 0);
  CHECK(consul_kv_pair_session(NULL) == NULL);
  CHECK(consul_kv_list_len(NULL) == 0 && consul_kv_list_get(NULL, 0) == NULL);
  CHECK(consul_string_list_len(NULL) == 0 && consul_string_list_get(NULL, 0) == NULL);
  CHECK(consul_instance_id(NULL) == NULL && consul_instance_service(NULL) == NULL);
  CHECK(consul_instance_address(NULL) == NULL && consul_instance_node(NULL) == NULL);
  CHECK(consul_instance_port(NULL) == 0 && consul_instance_json(NULL) == NULL);
  CHECK(consul_watch_event_index(NULL) == 0 && consul_watch_event_kind(NULL) == UINT32_MAX);
  CHECK(consul_watch_event_json(NULL) == NULL && consul_watch_event_kv_pair(NULL) == NULL);
  CHECK(consul_watch_event_kv_list(NULL) == NULL);
  CHECK(!consul_lock_is_held(NULL) && consul_lock_key(NULL) == NULL && consul_lock_session(NULL) == NULL);
  CHECK(consul_registration_service_id(NULL) == NULL);
  CHECK(consul_agent_http_addr(NULL) == NULL && consul_agent_serf_addr(NULL) == NULL);
  CHECK(consul_agent_dns_addr(NULL) == NULL && consul_agent_node_name(NULL) == NULL);
  CHECK(!consul_agent_is_running(NULL));
  consul_client_free(NULL);
  consul_kv_pair_free(NULL);
  consul_kv_list_free(NULL);
  consul_string_list_free(NULL);
  consul_instance_free(NULL);
  consul_watch_event_free(NULL);
  consul_watch_close(NULL);
  consul_watch_free(NULL);
  consul_discovery_free(NULL);
  consul_lock_free(NULL);
  consul_registration_free(NULL);
  consul_agent_free(NULL);
  consul_client_free(c);
}

TEST(invalid_utf8) {
  consul_error *err = NULL;
  consul_client *c = dead_client();
  consul_kv_pair *pair = NULL;
  consul_client *c2 = NULL;
  consul_agent *a = NULL;
  const char bad[] = {'k', (char)0xff, (char)0xfe, 0};
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "key", consul_kv_get(c, bad, NULL, &pair, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "UTF-8", consul_kv_put(c, bad, NULL, 0, NULL, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "address", consul_client_new(bad, NULL, &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "token", consul_client_new("127.0.0.1:1", bad, &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "config_json", consul_agent_start(bad, &a, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "service", consul_health_service(c, bad, false, NULL, NULL, &(char *){0}, NULL, &err));
  consul_query_options q = {0};
  q.datacenter = bad;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "options.datacenter", consul_kv_get(c, "k", &q, &pair, NULL, &err));
  CHECK(pair == NULL && c2 == NULL && a == NULL);
  consul_client_free(c);
}

TEST(garbage_json_and_values) {
  consul_error *err = NULL;
  consul_client *c = dead_client();
  consul_client *c2 = NULL;
  consul_agent *a = NULL;
  consul_registration *r = NULL;
  char *s = NULL;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "ops_json", consul_txn(c, "{not json", &s, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "array", consul_txn(c, "{}", &s, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "registration_json", consul_service_register(c, "nope", &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "registration", consul_service_register(c, "[]", &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "registration_json", consul_register(c, "[1,2]", &r, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "Name", consul_register(c, "{\"Port\": 80}", &r, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "body_json", consul_session_create(c, "{", &s, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "registration_json", consul_catalog_register(c, "", &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "bogus", consul_client_new_json("{\"bogus\": 1}", &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "timeout_ms", consul_client_new_json("{\"timeout_ms\": -5}", &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "address", consul_client_new_json("{\"address\": 5}", &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "config_json", consul_client_new_json("[]", &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "address", consul_client_new("http://[::1", NULL, &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "portz", consul_agent_start("{\"portz\": {}}", &a, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "ports.http", consul_agent_start("{\"ports\": {\"http\": \"x\"}}", &a, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "dev", consul_agent_start("{\"dev\": \"yes\"}", &a, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "data_dir", consul_agent_start("{\"dev\": false}", &a, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "config_json", consul_agent_start("{", &a, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "bind_addr", consul_agent_start("{\"bind_addr\": \"not-an-ip\"}", &a, &err));
  CHECK(s == NULL && c2 == NULL && a == NULL && r == NULL);

  /* Enum values and numbers out of range are errors naming the field, never UB. */
  consul_kv_pair *pair = NULL;
  consul_query_options q = {0};
  q.consistency = 7;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "options.consistency", consul_kv_get(c, "k", &q, &pair, NULL, &err));
  consul_put_options po = {0};
  po.cas = -5;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "options.cas", consul_kv_put(c, "k", NULL, 0, &po, NULL, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "cas", consul_kv_delete(c, "k", false, -2, NULL, &err));
  consul_watch *w = NULL;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "kind", consul_watch_new(c, 99, "x", NULL, &w, &err));
  consul_watch_options wo = {0};
  wo.consistency = 5;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "options.consistency", consul_watch_new(c, CONSUL_WATCH_KEY, "k", &wo, &w, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "key: must not be empty", consul_watch_key(c, "", &w, &err));
  CHECK(w == NULL);
  consul_discovery *d = NULL;
  CHECK_OK(consul_discovery_new(c, "web", NULL, &d, &err));
  consul_instance *inst = NULL;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "strategy", consul_discovery_pick(d, 9, NULL, &inst, &err));
  CHECK(inst == NULL);
  consul_discovery_free(d);
  consul_lock *l = NULL;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "ttl", consul_lock_acquire(c, "k", NULL, 0, 1000, 0, &l, &err));
  CHECK(l == NULL);
  consul_client_free(c);
}

TEST(wrong_handle_types) {
  consul_error *err = NULL;
  consul_client *c = dead_client();
  /* A client where an agent, a watch, a discovery, an error or a pair is expected. */
  consul_agent *fake_agent = (consul_agent *)(void *)c;
  consul_watch *fake_watch = (consul_watch *)(void *)c;
  consul_client *c2 = NULL;
  consul_watch_event *ev = NULL;
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "consul_agent", consul_agent_client(fake_agent, &c2, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "consul_watch", consul_watch_next(fake_watch, 0, &ev, &err));
  CHECK(consul_agent_http_addr(fake_agent) == NULL);
  CHECK(consul_kv_pair_key((consul_kv_pair *)(void *)c) == NULL);
  CHECK(consul_error_code((consul_error *)(void *)c) == CONSUL_E_INVALID_ARGUMENT);
  CHECK(consul_watch_fd(fake_watch) == -1);
  /* Freeing through the wrong type leaves the handle alone... */
  consul_agent_free(fake_agent);
  consul_watch_free(fake_watch);
  consul_kv_list_free((consul_kv_list *)(void *)c);
  /* ...so it still works and is freed properly here. */
  CHECK(strcmp(consul_client_address(c), "http://127.0.0.1:1") == 0);
  consul_client_free(c);
}

TEST(connection_refused) {
  consul_error *err = NULL;
  consul_client *c = NULL;
  CHECK_OK(consul_client_new_json("{\"address\": \"127.0.0.1:1\", \"timeout_ms\": 2000}", &c, &err));
  consul_kv_pair *pair = NULL;
  CHECK_STATUS(CONSUL_E_CONNECTION, consul_kv_get(c, "k", NULL, &pair, NULL, &err));
  bool ok = true;
  consul_status s = consul_kv_put(c, "k", (const uint8_t *)"v", 1, NULL, &ok, &err);
  CHECK(s == CONSUL_E_CONNECTION);
  CHECK(err && consul_error_http_status(err) == 0);
  CHECK(ok == true); /* not written on failure */
  consul_error_free(err);
  err = NULL;
  CHECK(pair == NULL);
  consul_client_free(c);
}

TEST(panic_boundary) {
  consul_error *err = NULL;
  CHECK_ERR_MSG(CONSUL_E_PANIC, "deliberate", consul_rs_selftest_panic(&err));
  CHECK(consul_rs_selftest_panic(NULL) == CONSUL_E_PANIC);
  /* The library still works after a caught panic. */
  consul_client *c = dead_client();
  consul_client_free(c);
}

TEST(runtime_shutdown_and_restart) {
  consul_error *err = NULL;
  consul_client *c = NULL;
  CHECK_OK(consul_client_new_json("{\"address\": \"127.0.0.1:1\", \"timeout_ms\": 1000}", &c, &err));
  consul_kv_pair *pair = NULL;
  CHECK_STATUS(CONSUL_E_CONNECTION, consul_kv_get(c, "k", NULL, &pair, NULL, &err));
  consul_rs_shutdown();
  consul_rs_shutdown();
  /* A later call starts a fresh runtime. */
  CHECK_STATUS(CONSUL_E_CONNECTION, consul_kv_get(c, "k", NULL, &pair, NULL, &err));
  consul_client_free(c);
}

int main(int argc, char **argv) {
  TEST_MAIN_INIT(argc, argv);
  RUN(version_and_abi);
  RUN(status_strings);
  RUN(error_object);
  RUN(null_arguments);
  RUN(invalid_utf8);
  RUN(garbage_json_and_values);
  RUN(wrong_handle_types);
  RUN(connection_refused);
  RUN(panic_boundary);
  RUN(runtime_shutdown_and_restart);
  return test_summary();
}
