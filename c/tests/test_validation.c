/*
 * The shared validation table (bindings/sdk/tests/validation_cases.json) through the C API: every
 * registration and option is accepted, or refused with exactly the message the Rust SDK, Python
 * and Node suites expect for it. run.sh turns the table into validation_cases.h. No agent needed:
 * nothing here is sent.
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

#include "validation_cases.h"

/* Compares one outcome with the table; prints the case on a mismatch. */
static void expect(const char *what, const char *name, consul_status s, consul_error *err, const char *want) {
  if (want == NULL) {
    if (s != CONSUL_OK) {
      fprintf(stderr, "    FAIL %s %s: refused: %s\n", what, name, err ? consul_error_message(err) : "?");
      t_current_failed = 1;
    }
    return;
  }
  if (s == CONSUL_OK || err == NULL) {
    fprintf(stderr, "    FAIL %s %s: accepted, want \"%s\"\n", what, name, want);
    t_current_failed = 1;
  } else if (strcmp(consul_error_message(err), want) != 0) {
    fprintf(stderr, "    FAIL %s %s: \"%s\", want \"%s\"\n", what, name, consul_error_message(err), want);
    t_current_failed = 1;
  }
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

int main(int argc, char **argv) {
  TEST_MAIN_INIT(argc, argv);
  RUN(registrations_match_the_table);
  RUN(options_match_the_table);
  return test_summary();
}
