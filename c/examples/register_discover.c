/*
 * Register a service with a TTL check the library keeps passing, then discover it and pick an
 * instance to connect to — locally, without a request per pick.
 *
 *   ./register_discover [agent-address]
 */
#define _POSIX_C_SOURCE 200809L
#include <consul_rs.h>
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
  consul_error *err = NULL;
  consul_agent *agent = NULL;
  consul_client *client = NULL;
  consul_registration *reg = NULL;
  consul_discovery *disc = NULL;
  int rc = 1;

  if (argc > 1) {
    if (consul_client_new(argv[1], NULL, &client, &err)) goto out;
  } else {
    if (consul_agent_start("{\"node_name\": \"example\"}", &agent, &err)) goto out;
    if (consul_agent_wait_for_leader(agent, 30000, &err)) goto out;
    if (consul_agent_client(agent, &client, &err)) goto out;
  }

  /* Consul's own registration JSON; the TTL check is reported passing in the background. */
  if (consul_register(client,
                      "{\"Name\": \"billing\", \"ID\": \"billing-1\", \"Address\": \"127.0.0.1\", \"Port\": 9090,"
                      " \"Tags\": [\"v1\"], \"Check\": {\"TTL\": \"10s\"}}",
                      &reg, &err))
    goto out;
  printf("registered %s\n", consul_registration_service_id(reg));

  if (consul_discovery_new(client, "billing", NULL, &disc, &err)) goto out;
  if (consul_discovery_ready(disc, 10000, &err)) goto out;
  consul_instance *inst = NULL;
  for (int tries = 0; tries < 100 && !inst; tries++) {
    if (consul_discovery_pick(disc, CONSUL_PICK_ROUND_ROBIN, NULL, &inst, &err)) goto out;
    if (!inst) {
      struct timespec ts = {0, 50 * 1000000L};
      nanosleep(&ts, NULL); /* the catalog catches up with the registration */
    }
  }
  if (!inst) {
    fprintf(stderr, "no passing instance of billing\n");
    goto out;
  }
  printf("picked %s at %s:%u\n", consul_instance_id(inst), consul_instance_address(inst), consul_instance_port(inst));
  consul_instance_free(inst);
  if (consul_registration_close(reg, &err)) goto out; /* deregisters */
  rc = 0;
out:
  if (err) fprintf(stderr, "error: %s (%s)\n", consul_error_message(err), consul_status_str(consul_error_code(err)));
  consul_error_free(err);
  consul_discovery_free(disc);
  consul_registration_free(reg);
  consul_client_free(client);
  consul_agent_free(agent);
  consul_rs_shutdown();
  return rc;
}
