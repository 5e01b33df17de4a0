/*
 * Embedded agents: lifecycle (addresses, shutdown idempotent, calls after shutdown), Consul
 * config keys, signal dispositions left alone, and a 3-server cluster in this one process
 * (bootstrap_expect + retry_join, replication, a server leaving).
 */
#include "test_util.h"

#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>

TEST(lifecycle) {
  consul_error *err = NULL;
  consul_agent *a = NULL;
  CHECK_OK(consul_agent_start("{\"node_name\": \"life\", \"datacenter\": \"DC-Test\", \"log_level\": \"warn\"}", &a, &err));
  if (!a) return;
  CHECK(consul_agent_is_running(a));
  CHECK(strcmp(consul_agent_node_name(a), "life") == 0);
  CHECK(strncmp(consul_agent_http_addr(a), "127.0.0.1:", 10) == 0);
  CHECK(strncmp(consul_agent_serf_addr(a), "127.0.0.1:", 10) == 0);
  CHECK(consul_agent_dns_addr(a) != NULL);
  CHECK(strcmp(consul_agent_http_addr(a), consul_agent_serf_addr(a)) != 0);
  CHECK_OK(consul_agent_wait_for_leader(a, 30000, &err));
  consul_client *c = NULL;
  CHECK_OK(consul_agent_client(a, &c, &err));
  char want[64];
  snprintf(want, sizeof want, "http://%s", consul_agent_http_addr(a));
  CHECK(c && strcmp(consul_client_address(c), want) == 0);
  CHECK_OK(consul_kv_put(c, "life/k", (const uint8_t *)"v", 1, NULL, NULL, &err));
  char *json = NULL;
  CHECK_OK(consul_agent_members_json(a, &json, &err));
  CHECK(json && strstr(json, "\"Name\":\"life\"") && strstr(json, "\"dc\":\"dc-test\""));
  consul_string_free(json);
  CHECK_OK(consul_agent_self(c, &json, &err));
  CHECK(json && strstr(json, "dc-test")); /* datacenter lower-cased, as Consul does */
  consul_string_free(json);

  CHECK_OK(consul_agent_shutdown(a, &err));
  CHECK(!consul_agent_is_running(a));
  CHECK_OK(consul_agent_shutdown(a, &err)); /* idempotent */
  CHECK_OK(consul_agent_leave(a, &err));    /* nothing left to leave */
  /* The handle stays valid: calls answer SHUTDOWN; its old client cannot connect. */
  consul_client *c2 = NULL;
  CHECK_STATUS(CONSUL_E_SHUTDOWN, consul_agent_client(a, &c2, &err));
  CHECK_STATUS(CONSUL_E_SHUTDOWN, consul_agent_wait_for_leader(a, 100, &err));
  CHECK_STATUS(CONSUL_E_SHUTDOWN, consul_agent_join(a, "127.0.0.1:1", &err));
  CHECK_STATUS(CONSUL_E_SHUTDOWN, consul_agent_members_json(a, &json, &err));
  CHECK(consul_agent_http_addr(a) != NULL);
  CHECK_STATUS(CONSUL_E_CONNECTION, consul_kv_put(c, "life/k", NULL, 0, NULL, NULL, &err));
  consul_client_free(c);
  consul_agent_free(a);
}

TEST(config_keys) {
  consul_error *err = NULL;
  consul_agent *a = NULL;
  /* DNS off, a service defined in the config (as in a Consul config file). */
  CHECK_OK(consul_agent_start("{\"node_name\": \"cfg\", \"ports\": {\"dns\": -1},"
                              " \"services\": [{\"name\": \"from-config\", \"port\": 4000}],"
                              " \"ui_config\": {\"enabled\": true}, \"telemetry\": {}}",
                              &a, &err));
  if (!a) return;
  CHECK(consul_agent_dns_addr(a) == NULL);
  consul_client *c = NULL;
  CHECK_OK(consul_agent_client(a, &c, &err));
  char *json = NULL;
  CHECK(WAIT_JSON(json, consul_catalog_services(c, NULL, &json, NULL, NULL), json && strstr(json, "from-config")));
  consul_string_free(json);
  consul_client_free(c);
  consul_agent_free(a); /* free shuts a running agent down */
  /* The same address and ports twice: the second cannot bind. */
  CHECK_OK(consul_agent_start("{\"node_name\": \"first\"}", &a, &err));
  if (!a) return;
  const char *http = consul_agent_http_addr(a);
  char cfg[160];
  snprintf(cfg, sizeof cfg, "{\"node_name\": \"second\", \"ports\": {\"http\": %s}}", strchr(http, ':') + 1);
  consul_agent *b = NULL;
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT, consul_agent_start(cfg, &b, &err));
  CHECK(b == NULL);
  consul_agent_free(a);
}

static const int watched_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2};
#define NSIG_WATCHED (sizeof watched_signals / sizeof watched_signals[0])

static void snapshot_signals(struct sigaction *out) {
  for (size_t i = 0; i < NSIG_WATCHED; i++) sigaction(watched_signals[i], NULL, &out[i]);
}

TEST(signal_handlers_untouched) {
  struct sigaction before[NSIG_WATCHED], after[NSIG_WATCHED];
  snapshot_signals(before);
  consul_client *c = NULL;
  consul_agent *a = start_dev_agent("signals", &c);
  consul_error *err = NULL;
  CHECK_OK(consul_kv_put(c, "sig/k", (const uint8_t *)"v", 1, NULL, NULL, &err));
  consul_watch *w = NULL;
  CHECK_OK(consul_watch_key(c, "sig/k", &w, &err));
  consul_watch_event *ev = NULL;
  CHECK_OK(consul_watch_next(w, 10000, &ev, &err));
  consul_watch_event_free(ev);
  snapshot_signals(after);
  for (size_t i = 0; i < NSIG_WATCHED; i++) {
    if (before[i].sa_handler != after[i].sa_handler) fprintf(stderr, "    signal %d changed\n", watched_signals[i]);
    CHECK(before[i].sa_handler == after[i].sa_handler);
  }
  consul_watch_free(w);
  consul_client_free(c);
  consul_agent_free(a);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

TEST(three_servers_in_one_process) {
  consul_error *err = NULL;
  char root[] = "/tmp/consul-rs-c-cluster-XXXXXX";
  if (!mkdtemp(root)) {
    CHECK(!"mkdtemp");
    return;
  }
  consul_agent *a[3] = {NULL, NULL, NULL};
  consul_client *c[3] = {NULL, NULL, NULL};
  char cfg[512];
  for (int i = 0; i < 3; i++) {
    /* srv1 finds srv0 through retry_join; srv2 is told to join with consul_agent_join. */
    char join[96] = "";
    if (i == 1) snprintf(join, sizeof join, "\"retry_join\": [\"%s\"],", consul_agent_serf_addr(a[0]));
    snprintf(cfg, sizeof cfg,
             "{\"node_name\": \"srv%d\", \"server\": true, \"bootstrap_expect\": 3, \"data_dir\": \"%s/n%d\","
             " %s \"retry_interval\": \"200ms\", \"performance\": {\"raft_multiplier\": 1}}",
             i, root, i, join);
    CHECK_OK(consul_agent_start(cfg, &a[i], &err));
    if (!a[i]) goto out;
  }
  CHECK_OK(consul_agent_join(a[2], consul_agent_serf_addr(a[0]), &err));
  for (int i = 0; i < 3; i++) {
    CHECK_OK(consul_agent_wait_for_leader(a[i], 60000, &err));
    CHECK_OK(consul_agent_client(a[i], &c[i], &err));
  }
  char *json = NULL;
  CHECK(WAIT_JSON(json, consul_status_peers(c[0], &json, NULL),
                  json && strchr(json, ',') && strchr(strchr(json, ',') + 1, ','))); /* three voters */
  consul_string_free(json);
  CHECK_OK(consul_agent_members_json(a[0], &json, &err));
  CHECK(json && strstr(json, "srv1") && strstr(json, "srv2"));
  consul_string_free(json);
  /* A write through one server is read back, consistently, through another. */
  bool ok = false;
  CHECK_OK(consul_kv_put(c[1], "cluster/k", (const uint8_t *)"replicated", 10, NULL, &ok, &err));
  CHECK(ok);
  consul_query_options q = {.consistency = CONSUL_CONSISTENCY_CONSISTENT};
  consul_kv_pair *p = NULL;
  CHECK_OK(consul_kv_get(c[2], "cluster/k", &q, &p, NULL, &err));
  size_t len = 0;
  CHECK(p && consul_kv_pair_value(p, &len) && len == 10);
  consul_kv_pair_free(p);
  /* One server goes away; the other two keep a quorum and keep serving writes. */
  CHECK_OK(consul_agent_leave(a[2], &err));
  CHECK(!consul_agent_is_running(a[2]));
  double deadline = t_now() + 30;
  ok = false;
  while (!ok && t_now() < deadline) {
    if (consul_kv_put(c[0], "cluster/k", (const uint8_t *)"after", 5, NULL, &ok, NULL) != CONSUL_OK) t_sleep_ms(200);
  }
  CHECK(ok);
out:
  for (int i = 0; i < 3; i++) {
    consul_client_free(c[i]);
    if (a[i]) CHECK_OK(consul_agent_shutdown(a[i], &err));
    consul_agent_free(a[i]);
  }
  rm_rf(root);
}

TEST(client_agent_joins_a_server) {
  consul_error *err = NULL;
  char root[] = "/tmp/consul-rs-c-client-XXXXXX";
  if (!mkdtemp(root)) {
    CHECK(!"mkdtemp");
    return;
  }
  consul_client *sc = NULL, *cc = NULL;
  consul_agent *srv = start_dev_agent("srv", &sc);
  consul_agent *cli = NULL;
  char cfg[512];
  /* A client agent (server false; Consul requires a data_dir) that finds the server. */
  snprintf(cfg, sizeof cfg,
           "{\"node_name\": \"cli\", \"server\": false, \"data_dir\": \"%s\", \"retry_join\": [\"%s\"],"
           " \"retry_interval\": \"200ms\"}",
           root, srv ? consul_agent_serf_addr(srv) : "127.0.0.1:1");
  CHECK_OK(consul_agent_start(cfg, &cli, &err));
  if (!srv || !cli) goto out;
  CHECK_OK(consul_agent_wait_for_leader(cli, 30000, &err));
  CHECK_OK(consul_agent_client(cli, &cc, &err));
  /* Writes through the client agent are forwarded to the server. */
  CHECK_OK(consul_kv_put(cc, "via/client", (const uint8_t *)"x", 1, NULL, NULL, &err));
  consul_kv_pair *p = NULL;
  CHECK_OK(consul_kv_get(sc, "via/client", NULL, &p, NULL, &err));
  CHECK(p != NULL);
  consul_kv_pair_free(p);
  char *json = NULL;
  CHECK(WAIT_JSON(json, consul_agent_members_json(srv, &json, NULL), json && strstr(json, "\"Name\":\"cli\"")));
  consul_string_free(json);
  /* A graceful leave: the server sees the client as left (serf status 3), not failed. */
  CHECK_OK(consul_agent_leave(cli, &err));
  CHECK(!consul_agent_is_running(cli));
  CHECK(WAIT_JSON(json, consul_agent_members_json(srv, &json, NULL),
                  json && strstr(json, "\"Name\":\"cli\"") && strstr(strstr(json, "\"Name\":\"cli\""), "\"Status\":3")));
  consul_string_free(json);
out:
  consul_client_free(cc);
  consul_client_free(sc);
  consul_agent_free(cli);
  consul_agent_free(srv);
  rm_rf(root);
}

/* A one-shot HTTP fixture: accepts one request on a loopback port, keeps its head, answers
 * `status` with `body`. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct fixture {
  int fd;
  int port;
  const char *answer;
  char head[4096];
};

static void *fixture_serve(void *arg) {
  struct fixture *f = arg;
  int c = accept(f->fd, NULL, NULL);
  if (c < 0) return NULL;
  size_t n = 0;
  while (n < sizeof f->head - 1) {
    ssize_t r = read(c, f->head + n, sizeof f->head - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
    f->head[n] = 0;
    if (strstr(f->head, "\r\n\r\n")) break;
  }
  if (write(c, f->answer, strlen(f->answer)) < 0) { /* the test sees the failure */ }
  close(c);
  return NULL;
}

static int fixture_start(struct fixture *f, pthread_t *t) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  f->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&sa, sizeof sa) || listen(f->fd, 1) ||
      getsockname(f->fd, (struct sockaddr *)&sa, &len))
    return -1;
  f->port = ntohs(sa.sin_port);
  f->head[0] = 0;
  return pthread_create(t, NULL, fixture_serve, f);
}

TEST(acl_token_header_and_permission_denied) {
  consul_error *err = NULL;
  struct fixture f = {.answer = "HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\nConnection: close\r\n\r\nACL not found"};
  pthread_t t;
  CHECK(fixture_start(&f, &t) == 0);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", f.port);
  consul_client *c = NULL, *c2 = NULL;
  CHECK_OK(consul_client_new(addr, "first", &c, &err));
  CHECK_OK(consul_client_with_token(c, "s3cret", &c2, &err));
  consul_kv_pair *p = NULL;
  consul_status s = consul_kv_get(c2, "k", NULL, &p, NULL, &err);
  CHECK(s == CONSUL_E_PERMISSION_DENIED);
  CHECK(err && strstr(consul_error_message(err), "ACL not found"));
  consul_error_free(err);
  err = NULL;
  pthread_join(t, NULL);
  close(f.fd);
  CHECK(strstr(f.head, "x-consul-token: s3cret\r\n") || strstr(f.head, "X-Consul-Token: s3cret\r\n"));
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT, consul_client_with_token(c, "bad\ntoken", &c2, &err));
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT,
               consul_client_new_json("{\"token_file\": \"/nonexistent/consul-token\"}", &c2, &err));
  consul_client_free(c2);
  consul_client_free(c);
}

TEST(acl_config) {
  consul_error *err = NULL;
  consul_agent *a = NULL;
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT,
               consul_agent_start("{\"acl\": {\"enabled\": true, \"default_policy\": \"maybe\"}}", &a, &err));
  CHECK_STATUS(CONSUL_E_INVALID_ARGUMENT, consul_agent_start("{\"acl\": {\"enabeld\": true}}", &a, &err));
  CHECK_OK(consul_agent_start("{\"node_name\": \"acl\", \"acl\": {\"enabled\": true, \"default_policy\": \"deny\","
                              " \"tokens\": {\"initial_management\": \"root\", \"agent\": \"root\"}}}",
                              &a, &err));
  if (!a) return;
  CHECK_OK(consul_agent_wait_for_leader(a, 30000, &err));
  consul_client *anon = NULL, *root = NULL;
  CHECK_OK(consul_agent_client(a, &anon, &err));
  CHECK_OK(consul_client_with_token(anon, "root", &root, &err));
  CHECK_OK(consul_kv_put(root, "acl/k", (const uint8_t *)"v", 1, NULL, NULL, &err));
  consul_client_free(root);
  consul_client_free(anon);
  CHECK_OK(consul_agent_shutdown(a, &err));
  consul_agent_free(a);
}

/* Whether something listens on 127.0.0.1:`port` (the default agent address must be free for the
 * last step of the test below, so no other agent gets a registration). */
static int port_in_use(int port) {
  consul_client *c = NULL;
  consul_error *err = NULL;
  char cfg[96];
  snprintf(cfg, sizeof cfg, "{\"address\": \"127.0.0.1:%d\", \"timeout_ms\": 2000}", port);
  if (consul_client_new_json(cfg, &c, &err) != CONSUL_OK) {
    consul_error_free(err);
    return 1;
  }
  char *leader = NULL;
  consul_status s = consul_status_leader(c, &leader, &err);
  consul_string_free(leader);
  consul_error_free(err);
  consul_client_free(c);
  return s != CONSUL_E_CONNECTION;
}

/* consul_register with no client registers with the local agent, in the order the Python and
 * Node packages use: the node embedded in this process, then $CONSUL_HTTP_ADDR, then
 * 127.0.0.1:8500; with two nodes and no client it refuses, asking for one. */
TEST(register_without_a_client) {
  consul_error *err = NULL;
  consul_registration *r = NULL;
  consul_client *c = NULL;
  consul_agent *b = NULL;
  char *json = NULL;
  char *saved = getenv("CONSUL_HTTP_ADDR") ? strdup(getenv("CONSUL_HTTP_ADDR")) : NULL;
  /* Another agent's address, as most Consul users have exported (nothing listens there). */
  setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1", 1);
  consul_agent *a = start_dev_agent("local-first", &c);
  if (!a) goto out;
  CHECK_OK(consul_register(NULL, "{\"Name\": \"local-first\", \"Port\": 1, \"Check\": {\"TTL\": \"10s\"}}", &r,
                           &err));
  /* The agent copies a registration into the catalog a moment after it answers. */
  for (int i = 0; i < 200; i++) {
    consul_string_free(json);
    json = NULL;
    CHECK_OK(consul_health_service(c, "local-first", false, NULL, NULL, &json, NULL, &err));
    if (json && strstr(json, "\"local-first\"")) break;
    t_sleep_ms(50);
  }
  CHECK(json && strstr(json, "\"local-first\""));
  consul_string_free(json);
  json = NULL;
  CHECK_OK(consul_registration_close(r, &err));
  consul_registration_free(r);
  r = NULL;

  b = start_dev_agent("local-second", NULL);
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "pass the client", consul_register(NULL, "{\"Name\": \"x\"}", &r, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "pass the client", consul_register_spec(NULL, "{\"name\": \"x\"}", &r, &err));
  CHECK(r == NULL);
  CHECK_OK(consul_agent_shutdown(b, &err)); /* a stopped node no longer counts */
  CHECK_OK(consul_register_spec(NULL, "{\"name\": \"local-spec\"}", &r, &err));
  consul_registration_free(r);
  r = NULL;
  consul_agent_free(b);
  consul_client_free(c);
  c = NULL;
  consul_agent_free(a);

  /* No node in the process: $CONSUL_HTTP_ADDR, then 127.0.0.1:8500. Bad values are refused
   * before either is tried. */
  CHECK_ERR_MSG(CONSUL_E_CONNECTION, "127.0.0.1:1", consul_register(NULL, "{\"Name\": \"x\"}", &r, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "port", consul_register_spec(NULL, "{\"name\": \"x\", \"port\": 70000}", &r, &err));
  unsetenv("CONSUL_HTTP_ADDR");
  if (!port_in_use(8500)) {
    CHECK_ERR_MSG(CONSUL_E_CONNECTION, "127.0.0.1:8500", consul_register(NULL, "{\"Name\": \"x\"}", &r, &err));
  } else {
    printf("     (127.0.0.1:8500 is in use: its step skipped)\n");
  }
  CHECK(r == NULL);
out:
  consul_client_free(c);
  if (saved) {
    setenv("CONSUL_HTTP_ADDR", saved, 1);
    free(saved);
  } else {
    unsetenv("CONSUL_HTTP_ADDR");
  }
}

int main(int argc, char **argv) {
  TEST_MAIN_INIT(argc, argv);
  RUN(lifecycle);
  RUN(config_keys);
  RUN(signal_handlers_untouched);
  RUN(three_servers_in_one_process);
  RUN(client_agent_joins_a_server);
  RUN(acl_token_header_and_permission_denied);
  RUN(acl_config);
  RUN(register_without_a_client);
  return test_summary();
}
