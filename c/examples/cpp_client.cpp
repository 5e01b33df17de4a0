// The C library from C++: RAII handles (std::unique_ptr with the library's free functions),
// errors as exceptions, a lambda-backed watch callback.
//
//   ./cpp_client [agent-address]
#include <consul_rs.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

namespace consul {

template <typename T, void (*Free)(T *)>
struct Deleter {
  void operator()(T *p) const { Free(p); }
};
using Agent = std::unique_ptr<consul_agent, Deleter<consul_agent, consul_agent_free>>;
using Client = std::unique_ptr<consul_client, Deleter<consul_client, consul_client_free>>;
using Pair = std::unique_ptr<consul_kv_pair, Deleter<consul_kv_pair, consul_kv_pair_free>>;
using Watch = std::unique_ptr<consul_watch, Deleter<consul_watch, consul_watch_free>>;

struct Error : std::runtime_error {
  consul_status status;
  Error(consul_status s, const std::string &msg) : std::runtime_error(msg), status(s) {}
};

// Runs a call that takes `consul_error **` last; throws on failure.
template <typename F>
void check(F &&call) {
  consul_error *err = nullptr;
  consul_status s = call(&err);
  if (s != CONSUL_OK) {
    std::string msg = std::string(consul_status_str(s)) + ": " + (err ? consul_error_message(err) : "");
    consul_error_free(err);
    throw Error(s, msg);
  }
}

}  // namespace consul

int main(int argc, char **argv) {
  try {
    consul::Agent agent;
    consul::Client client;
    {
      consul_client *c = nullptr;
      if (argc > 1) {
        consul::check([&](consul_error **e) { return consul_client_new(argv[1], nullptr, &c, e); });
      } else {
        consul_agent *a = nullptr;
        consul::check([&](consul_error **e) { return consul_agent_start(nullptr, &a, e); });
        agent.reset(a);
        consul::check([&](consul_error **e) { return consul_agent_wait_for_leader(a, 30000, e); });
        consul::check([&](consul_error **e) { return consul_agent_client(a, &c, e); });
      }
      client.reset(c);
    }

    // A watch whose callback forwards to a std::function-like lambda held in user_data.
    struct Listener {
      std::atomic<int> changes{0};
      std::atomic<bool> released{false};
    } listener;
    consul::Watch watch;
    {
      consul_watch *w = nullptr;
      consul::check([&](consul_error **e) { return consul_watch_key(client.get(), "cpp/key", &w, e); });
      watch.reset(w);
    }
    consul::check([&](consul_error **e) {
      return consul_watch_set_callback(
          watch.get(),
          [](void *ud, const consul_watch_event *ev, const consul_error *) {
            if (ev && consul_watch_event_kv_pair(ev)) static_cast<Listener *>(ud)->changes++;
          },
          &listener, [](void *ud) { static_cast<Listener *>(ud)->released = true; }, e);
    });

    const std::string value = "written from C++";
    consul::check([&](consul_error **e) {
      return consul_kv_put(client.get(), "cpp/key", reinterpret_cast<const uint8_t *>(value.data()), value.size(),
                           nullptr, nullptr, e);
    });
    consul::Pair pair;
    {
      consul_kv_pair *p = nullptr;
      consul::check([&](consul_error **e) { return consul_kv_get(client.get(), "cpp/key", nullptr, &p, nullptr, e); });
      pair.reset(p);
    }
    size_t len = 0;
    const uint8_t *v = consul_kv_pair_value(pair.get(), &len);
    std::string got(reinterpret_cast<const char *>(v), len);
    std::cout << consul_kv_pair_key(pair.get()) << " = " << got << "\n";
    if (got != value) throw std::runtime_error("value mismatch");

    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (listener.changes == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (listener.changes == 0) throw std::runtime_error("no watch callback");
    std::cout << "watch callback fired " << listener.changes << " time(s)\n";

    try {  // errors carry their status
      consul::check([&](consul_error **e) { return consul_service_deregister(client.get(), "nope", e); });
    } catch (const consul::Error &e) {
      std::cout << "expected error: " << e.what() << "\n";
      if (e.status != CONSUL_E_NOT_FOUND) throw;
    }
    watch.reset();  // waits for a running callback, then releases user_data
    if (!listener.released) throw std::runtime_error("user_data not released");
  } catch (const std::exception &e) {
    std::cerr << "error: " << e.what() << "\n";
    consul_rs_shutdown();
    return 1;
  }
  consul_rs_shutdown();
  return 0;
}
