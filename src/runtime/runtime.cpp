// Runtime start and orderly shutdown; the node's I/O server.
#include "nodus/runtime.hpp"

#include <cxxabi.h>
#include <execinfo.h>
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>

#include "context.hpp"
#include "nodus/io.hpp"
#include "nodus/process.hpp"

namespace nodus {
namespace runtime {
namespace {
std::atomic<Context*> g_ctx{nullptr};

void write_out(const io::Request& r) { std::fwrite(r.text.data(), 1, r.text.size(), stdout); }

// The node's standard output, every process's default group leader (Erlang's `user`).
Proc io_server() {
  for (;;) {
    auto r = co_await receive<io::Request>();
    write_out(r);
    std::fflush(stdout);
  }
}
// std::terminate (an exception that left a thread's function, a noexcept function or a
// destructor) says what and where before the previous handler aborts: a node that dies this way
// leaves its cause on stderr, not only "Aborted".
std::terminate_handler g_previous_terminate = nullptr;
[[noreturn]] void on_terminate() {
  char line[512];
  int n = 0;
  if (std::exception_ptr e = std::current_exception()) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    int status = 0;
    char* name = type != nullptr ? abi::__cxa_demangle(type->name(), nullptr, nullptr, &status) : nullptr;
    const char* what = "";
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
    n = std::snprintf(line, sizeof line, "nodus: std::terminate: uncaught %s: %.300s\n",
                      name != nullptr ? name : (type != nullptr ? type->name() : "exception"), what);
    std::free(name);
  } else {
    n = std::snprintf(line, sizeof line, "nodus: std::terminate with no exception\n");
  }
  if (n > 0) (void)!::write(2, line, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof line - 1));
  void* frames[48];
  const int depth = ::backtrace(frames, 48);
  ::backtrace_symbols_fd(frames, depth, 2);
  if (g_previous_terminate != nullptr) g_previous_terminate();
  std::abort();
}
}  // namespace

Context& ctx() {
  Context* c = g_ctx.load(std::memory_order_acquire);
  if (c == nullptr) throw std::logic_error("nodus: no Runtime is running");
  return *c;
}

Context* ctx_if() noexcept { return g_ctx.load(std::memory_order_acquire); }

void on_stop(std::function<void()> hook) {
  Context& c = ctx();
  std::lock_guard lock(c.stop_mu);
  c.stop_hooks.push_back(std::move(hook));
}
}  // namespace runtime

Runtime::Runtime(RuntimeOptions opts) {
  auto* c = new runtime::Context(opts);
  runtime::Context* expected = nullptr;
  if (!runtime::g_ctx.compare_exchange_strong(expected, c)) {
    delete c;
    throw std::logic_error("nodus: a Runtime is already running in this OS process");
  }
  static std::once_flag terminate_once;
  std::call_once(terminate_once, [] { runtime::g_previous_terminate = std::set_terminate(runtime::on_terminate); });
  c->sched.start();
  c->io_server = spawn(runtime::io_server);
  register_name(Atom("user"), c->io_server);
}

Runtime::~Runtime() {
  runtime::Context* c = runtime::g_ctx.load();
  c->stopping.store(true);
  for (;;) {  // (a hook may add another)
    std::function<void()> hook;
    {
      std::lock_guard lock(c->stop_mu);
      if (c->stop_hooks.empty()) break;
      hook = std::move(c->stop_hooks.back());
      c->stop_hooks.pop_back();
    }
    hook();
  }
  c->sched.stop();
  c->timers.stop();
  c->shutting_down.store(true);
  // output already handed to the I/O server is written, not lost
  if (runtime::Process* io = c->table.lookup(c->io_server)) {
    for (auto& m : runtime::take_all(io)) {
      if (m.is<io::Request>()) runtime::write_out(m.get<io::Request>());
    }
    std::fflush(stdout);
  }
  // everything still alive goes without running exit notifications (the node is going away)
  for (runtime::Process* p : c->table.snapshot()) {
    runtime::set_current(p);
    if (p->root) p->root.destroy();
    p->root = {};
    runtime::drain(p);
    delete std::exchange(p->exit_reason, nullptr);
    if (runtime::Extras* e = std::exchange(p->extras, nullptr)) {
      if (e->closure.destroy) e->closure.destroy(e->closure.object);
      delete e;
    }
    runtime::set_current(nullptr);
  }
  runtime::g_ctx.store(nullptr);
  delete c;
}

unsigned Runtime::schedulers() const { return runtime::ctx().sched.workers(); }
std::size_t Runtime::process_count() const { return runtime::ctx().table.count(); }
bool Runtime::running() { return runtime::ctx_if() != nullptr; }

}  // namespace nodus
