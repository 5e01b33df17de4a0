/*
 * HTTPS: an embedded node serving HTTPS only (`"ports": {"http": -1, "https": 0}` and a `tls`
 * block with `verify_incoming`), reached by `consul_client_new_json` with a CA and a client
 * certificate and by `consul_agent_client`; an untrusted CA, a missing client certificate and
 * unusable files fail with errors that say why. Certificates are made with the openssl tool.
 */
#include "test_util.h"

#include <ftw.h>
#include <sys/stat.h>

static char dir[] = "/tmp/consul-rs-c-https-XXXXXX";
static int have_pki;
static consul_agent *agent;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* A CA and, signed by it, a server certificate (server.dc1.consul, localhost, 127.0.0.1) and a
 * client one; and a second, unrelated CA. EC P-256 keys, valid two days. */
static const char *PKI_SCRIPT =
    "set -e; cd \"$0\"\n"
    "cat > ca.cnf <<'EOF'\n"
    "[req]\ndistinguished_name = dn\nx509_extensions = v3\nprompt = no\n"
    "[dn]\nCN = consul-rs C test CA\n"
    "[v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign,digitalSignature\n"
    "subjectKeyIdentifier = hash\n"
    "[server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth,clientAuth\n"
    "subjectAltName = DNS:server.dc1.consul,DNS:localhost,IP:127.0.0.1\n"
    "[cli]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\nsubjectAltName = DNS:cli.dc1.consul\n"
    "EOF\n"
    "ca() { openssl ecparam -name prime256v1 -genkey -noout -out $1-key.pem;"
    " openssl req -x509 -new -key $1-key.pem -config ca.cnf -days 2 -sha256 -out $1.pem; }\n"
    "leaf() { openssl ecparam -name prime256v1 -genkey -noout -out $1-key.pem;"
    " openssl req -new -key $1-key.pem -config ca.cnf -subj /CN=$1 -out $1.csr;"
    " openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -sha256"
    " -extfile ca.cnf -extensions $1 -out $1.pem; }\n"
    "ca ca; ca other-ca; leaf server; leaf cli\n";

static void path(char *out, size_t n, const char *file) { snprintf(out, n, "%s/%s", dir, file); }

/* Client config JSON for the agent's address with the given CA file (NULL: none) and client
 * certificate (or none). */
static void client_json(char *out, size_t n, const char *ca, int with_cert) {
  char ca_path[256], cert[256], key[256];
  path(ca_path, sizeof ca_path, ca ? ca : "");
  path(cert, sizeof cert, "cli.pem");
  path(key, sizeof key, "cli-key.pem");
  int k = snprintf(out, n, "{\"address\": \"https://%s\", \"timeout_ms\": 5000", consul_agent_http_addr(agent));
  if (ca) k += snprintf(out + k, n - (size_t)k, ", \"ca_file\": \"%s\"", ca_path);
  if (with_cert) k += snprintf(out + k, n - (size_t)k, ", \"client_cert\": \"%s\", \"client_key\": \"%s\"", cert, key);
  snprintf(out + k, n - (size_t)k, "}");
}

/* Starts the HTTPS-only node once (each test may run alone: the valgrind pass picks tests). */
static int ensure_agent(void) {
  consul_error *err = NULL;
  if (agent) return 1;
  if (!have_pki) {
    printf("    skip: the openssl tool is needed to make certificates\n");
    return 0;
  }
  char cfg[1024], ca[256], cert[256], key[256];
  path(ca, sizeof ca, "ca.pem");
  path(cert, sizeof cert, "server.pem");
  path(key, sizeof key, "server-key.pem");
  snprintf(cfg, sizeof cfg,
           "{\"node_name\": \"tls\", \"ports\": {\"http\": -1, \"https\": 0}, \"tls\": {\"defaults\": "
           "{\"ca_file\": \"%s\", \"cert_file\": \"%s\", \"key_file\": \"%s\", \"verify_incoming\": true}}}",
           ca, cert, key);
  CHECK_OK(consul_agent_start(cfg, &agent, &err));
  if (!agent) return 0;
  CHECK_OK(consul_agent_wait_for_leader(agent, 30000, &err));
  return 1;
}

TEST(https_only_agent_with_client_certificates) {
  consul_error *err = NULL;
  if (!ensure_agent()) return;
  char ca[256];
  path(ca, sizeof ca, "ca.pem");

  char json[1024];
  client_json(json, sizeof json, "ca.pem", 1);
  consul_client *c = NULL;
  CHECK_OK(consul_client_new_json(json, &c, &err));
  if (!c) return;
  char want[128];
  snprintf(want, sizeof want, "https://%s", consul_agent_http_addr(agent));
  CHECK(strcmp(consul_client_address(c), want) == 0);
  CHECK_OK(consul_kv_put(c, "https/k", (const uint8_t *)"over tls", 8, NULL, NULL, &err));
  consul_kv_pair *p = NULL;
  CHECK_OK(consul_kv_get(c, "https/k", NULL, &p, NULL, &err));
  size_t len = 0;
  const uint8_t *v = p ? consul_kv_pair_value(p, &len) : NULL;
  CHECK(v && len == 8 && memcmp(v, "over tls", 8) == 0);
  consul_kv_pair_free(p);
  consul_client_free(c);

  /* The node's own client speaks HTTPS with its CA and certificate; so do its own calls. */
  consul_client *own = NULL;
  CHECK_OK(consul_agent_client(agent, &own, &err));
  CHECK(own && strcmp(consul_client_address(own), want) == 0);
  CHECK_OK(consul_kv_put(own, "https/own", (const uint8_t *)"1", 1, NULL, NULL, &err));
  consul_client_free(own);
  char *members = NULL;
  CHECK_OK(consul_agent_members_json(agent, &members, &err));
  CHECK(members && strstr(members, "\"Name\":\"tls\""));
  consul_string_free(members);

  /* A bare host:port with "https": true, the server name checked instead of the host. */
  char cli_cert[256], cli_key[256];
  path(cli_cert, sizeof cli_cert, "cli.pem");
  path(cli_key, sizeof cli_key, "cli-key.pem");
  snprintf(json, sizeof json,
           "{\"address\": \"%s\", \"https\": true, \"ca_file\": \"%s\", \"client_cert\": \"%s\", "
           "\"client_key\": \"%s\", \"tls_server_name\": \"server.dc1.consul\"}",
           consul_agent_http_addr(agent), ca, cli_cert, cli_key);
  c = NULL;
  CHECK_OK(consul_client_new_json(json, &c, &err));
  CHECK(c && strcmp(consul_client_address(c), want) == 0);
  if (c) CHECK_OK(consul_kv_put(c, "https/named", (const uint8_t *)"1", 1, NULL, NULL, &err));
  consul_client_free(c);
}

TEST(untrusted_ca_and_missing_client_certificate) {
  consul_error *err = NULL;
  if (!ensure_agent()) return;
  char json[1024];
  consul_client *c = NULL;
  consul_kv_pair *p = NULL;

  client_json(json, sizeof json, "other-ca.pem", 1);
  CHECK_OK(consul_client_new_json(json, &c, &err));
  if (c) CHECK_ERR_MSG(CONSUL_E_CONNECTION, "certificate signed by unknown authority", consul_kv_get(c, "https/k", NULL, &p, NULL, &err));
  consul_client_free(c);

  c = NULL;
  client_json(json, sizeof json, "ca.pem", 0);
  CHECK_OK(consul_client_new_json(json, &c, &err));
  if (c) CHECK_ERR_MSG(CONSUL_E_CONNECTION, "client certificate", consul_kv_get(c, "https/k", NULL, &p, NULL, &err));
  consul_client_free(c);

  /* Unusable files and values are refused when the client is made, naming them. */
  c = NULL;
  client_json(json, sizeof json, "missing.pem", 0);
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "Error loading CA File: open ", consul_client_new_json(json, &c, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "missing.pem", consul_client_new_json(json, &c, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "both client cert and client key must be provided",
                consul_client_new_json("{\"client_cert\": \"/x.pem\"}", &c, &err));
  CHECK_ERR_MSG(CONSUL_E_INVALID_ARGUMENT, "insecure_skip_verify",
                consul_client_new_json("{\"insecure_skip_verify\": \"yes\"}", &c, &err));
  CHECK(c == NULL);
}

int main(int argc, char **argv) {
  TEST_MAIN_INIT(argc, argv);
  if (mkdtemp(dir)) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sh -c '%s' '%s' >/dev/null 2>&1", "eval \"$PKI\"", dir);
    setenv("PKI", PKI_SCRIPT, 1);
    have_pki = system(cmd) == 0;
  }
  RUN(https_only_agent_with_client_certificates);
  RUN(untrusted_ca_and_missing_client_certificate);
  if (agent) {
    consul_error *err = NULL;
    CHECK_OK(consul_agent_shutdown(agent, &err));
    consul_agent_free(agent);
  }
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return test_summary();
}
