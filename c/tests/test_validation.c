/*
 * The shared validation table (bindings/sdk/tests/validation_cases.json) through the C API: every
 * registration, option and call is accepted, or refused with exactly the message the Rust SDK,
 * Python and Node suites expect for it — and always as the one error model, the status
 * CONSUL_E_INVALID_ARGUMENT (also the error object's code, with no HTTP status: nothing was
 * sent). run.sh turns the table into validation_cases.h. No agent needed: calls go to
 * 127.0.0.1:1, where nothing listens, so a value that got through fails with
 * CONSUL_E_CONNECTION instead.
 */
#include "test_util.h"

struct reg_case {
  const char *name;
  const char *spec_json;
  const char *error; /* NULL: accepted */
};

struct opt_case {
  const char *name;
  const char *kind;
  const char *value;
  const char *error;
};

struct call_case {
  const char *name;
  const char *call;
  const char *key;     /* args.key / args.service / args.state / args.address / args.name */
  const char *value;   /* args.value */
  uint32_t ttl_ms;     /* args.ttl_ms */
  const char *spec_json; /* register: args as the neutral registration JSON */
  const char *error;
};

#define NOWHERE "127.0.0.1:1"

#include "validation_cases.h"

/* Compares one outcome with the table; prints the case on a mismatch. `passed` is the status of
 * an input that got through validation (CONSUL_OK for the validators, CONSUL_E_CONNECTION for
 * calls that go on to 127.0.0.1:1). */
static void expect_as(const char *what, const char *name, consul_status s, consul_error *err, const char *want,
                      consul_status passed) {
  if (want == NULL) {
    if (s != passed) {
      fprintf(stderr, "    FAIL %s %s: %s: %s\n", what, name, consul_status_str(s), err ? consul_error_message(err) : "?");
      t_current_failed = 1;
    }
    return;
  }
  if (s != CONSUL_E_INVALID_ARGUMENT || err == NULL) {
    fprintf(stderr, "    FAIL %s %s: %s (%s), want CONSUL_E_INVALID_ARGUMENT \"%s\"\n", what, name, consul_status_str(s),
            err ? consul_error_message(err) : "no error object", want);
    t_current_failed = 1;
  } else if (consul_error_code(err) != CONSUL_E_INVALID_ARGUMENT || consul_error_http_status(err) != 0) {
    fprintf(stderr, "    FAIL %s %s: error object code %d, HTTP status %d\n", what, name, (int)consul_error_code(err),
            (int)consul_error_http_status(err));
    t_current_failed = 1;
  } else if (strcmp(consul_error_message(err), want) != 0) {
    fprintf(stderr, "    FAIL %s %s: \"%s\", want \"%s\"\n", what, name, consul_error_message(err), want);
    t_current_failed = 1;
  }
}

static void expect(const char *what, const char *name, consul_status s, consul_error *err, const char *want) {
  expect_as(what, name, s, err, want, CONSUL_OK);
}

TEST(registrations_match_the_table) {
  CHECK(sizeof REG_CASES / sizeof REG_CASES[0] > 0);
  for (size_t i = 0; i < sizeof REG_CASES / sizeof REG_CASES[0]; i++) {
    consul_error *err = NULL;
    consul_status s = consul_registration_spec_validate(REG_CASES[i].spec_json, &err);
    expect("registration", REG_CASES[i].name, s, err, REG_CASES[i].error);
    consul_error_free(err);
  }
}

TEST(options_match_the_table) {
  CHECK(sizeof OPT_CASES / sizeof OPT_CASES[0] > 0);
  for (size_t i = 0; i < sizeof OPT_CASES / sizeof OPT_CASES[0]; i++) {
    consul_error *err = NULL;
    consul_status s = consul_option_validate(OPT_CASES[i].kind, OPT_CASES[i].value, &err);
    expect("option", OPT_CASES[i].name, s, err, OPT_CASES[i].error);
    consul_error_free(err);
  }
}

/* Registrations again, through consul_register_spec as a program calls it. */
TEST(registrations_through_register_spec) {
  consul_error *err = NULL;
  consul_client *c = NULL;
  CHECK_OK(consul_client_new_json("{\"address\": \"" NOWHERE "\", \"timeout_ms\": 2000}", &c, &err));
  for (size_t i = 0; c && i < sizeof REG_CASES / sizeof REG_CASES[0]; i++) {
    consul_registration *r = NULL;
    consul_status s = consul_register_spec(c, REG_CASES[i].spec_json, &r, &err);
    expect_as("register_spec", REG_CASES[i].name, s, err, REG_CASES[i].error, CONSUL_E_CONNECTION);
    CHECK(r == NULL);
    consul_registration_free(r);
    consul_error_free(err);
    err = NULL;
  }
  consul_client_free(c);
}

/* One call of the table on the C API. */
static consul_status call(const consul_client *c, const struct call_case *k, consul_error **err) {
  if (strcmp(k->call, "kv_get") == 0) {
    consul_kv_pair *p = NULL;
    consul_status s = consul_kv_get(c, k->key, NULL, &p, NULL, err);
    consul_kv_pair_free(p);
    return s;
  }
  if (strcmp(k->call, "kv_put") == 0) {
    return consul_kv_put(c, k->key, (const uint8_t *)k->value, strlen(k->value), NULL, NULL, err);
  }
  if (strcmp(k->call, "health_state") == 0) {
    char *json = NULL;
    consul_status s = consul_health_state(c, k->key, NULL, &json, NULL, err);
    consul_string_free(json);
    return s;
  }
  if (strcmp(k->call, "lock") == 0) {
    consul_lock *l = NULL;
    consul_status s = consul_lock_acquire(c, k->key, NULL, 0, k->ttl_ms, 1000, &l, err);
    consul_lock_free(l);
    return s;
  }
  if (strcmp(k->call, "discover") == 0) {
    consul_discovery *d = NULL;
    consul_status s = consul_discovery_new(c, k->key, NULL, &d, err);
    if (s == CONSUL_OK) s = consul_discovery_ready(d, 1000, err);
    consul_discovery_free(d);
    return s;
  }
  if (strcmp(k->call, "watch_key") == 0) {
    consul_watch *w = NULL;
    consul_status s = consul_watch_key(c, k->key, &w, err);
    consul_watch_event *ev = NULL;
    if (s == CONSUL_OK) s = consul_watch_next(w, 1000, &ev, err);
    consul_watch_event_free(ev);
    consul_watch_free(w);
    return s;
  }
  if (strcmp(k->call, "client") == 0) {
    consul_client *other = NULL;
    consul_status s = consul_client_new(k->key, NULL, &other, err);
    consul_kv_pair *p = NULL;
    if (s == CONSUL_OK) s = consul_kv_get(other, "k", NULL, &p, NULL, err);
    consul_kv_pair_free(p);
    consul_client_free(other);
    return s;
  }
  if (strcmp(k->call, "register") == 0) {
    consul_registration *r = NULL;
    consul_status s = consul_register_spec(c, k->spec_json, &r, err);
    consul_registration_free(r);
    return s;
  }
  fprintf(stderr, "    unknown call %s in the table\n", k->call);
  t_current_failed = 1;
  return CONSUL_OK;
}

TEST(calls_match_the_table) {
  consul_error *err = NULL;
  consul_client *c = NULL;
  CHECK(sizeof CALL_CASES / sizeof CALL_CASES[0] > 0);
  CHECK_OK(consul_client_new_json("{\"address\": \"" NOWHERE "\", \"timeout_ms\": 2000}", &c, &err));
  for (size_t i = 0; c && i < sizeof CALL_CASES / sizeof CALL_CASES[0]; i++) {
    consul_status s = call(c, &CALL_CASES[i], &err);
    expect_as("call", CALL_CASES[i].name, s, err, CALL_CASES[i].error, CONSUL_E_CONNECTION);
    consul_error_free(err);
    err = NULL;
  }
  consul_client_free(c);
}

int main(int argc, char **argv) {
  TEST_MAIN_INIT(argc, argv);
  RUN(registrations_match_the_table);
  RUN(options_match_the_table);
  RUN(registrations_through_register_spec);
  RUN(calls_match_the_table);
  return test_summary();
}
