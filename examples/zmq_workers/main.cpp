// zmq_workers: a pyzmq PUSH ventilator feeds a PULL port; its owner, the dispatcher, hands each
// job to an idle worker under a one_for_one supervisor, and sends each result through a PUSH
// port to a pyzmq PULL sink. Every seventh job is poison: it crashes its worker, which the
// supervisor logs and restarts; the dispatcher sees the crash (a monitor's Down) and reports
// that job as failed, so the sink can check that no job is missing.
//
// The PULL port's flow is counted: the dispatcher asks for one job per idle worker, so jobs
// wait in the ventilator's socket (its high-water mark), not in a mailbox.
//
//   python3 examples/zmq_workers/sink.py 'tcp://127.0.0.1:5558' 100 &
//   python3 examples/zmq_workers/ventilator.py 'tcp://127.0.0.1:5557' 100 &
//   zmq_workers --jobs tcp://127.0.0.1:5557 --results tcp://127.0.0.1:5558 --workers 4
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>

#include "nodus/nodus.hpp"
#include "nodus/zmq_port.hpp"

using namespace nodus;
namespace zp = nodus::zmq_port;

namespace {
const Atom kDispatcher = atom("dispatcher");

// A worker: tells the dispatcher it is ready, then squares jobs; a poison job throws.
Proc worker(long i) {
  send(kDispatcher, tuple(atom("ready"), i, self()));
  for (;;) {
    Term job = co_await receive<Term>([](const Term& t) { return t.is_tuple(3, "job"); });
    const long n = job[1].as_int();
    if (n % 7 == 0) throw std::runtime_error("job " + std::to_string(n) + " is poison");
    send(job[2].as_pid(), tuple(atom("done"), i, n, n * n));
  }
}

Async<void> put(zp::Port port, std::string text) {
  std::vector<std::string> parts{std::move(text)};
  co_await zp::send(port, std::move(parts));
}

struct Busy {
  long job;
  Ref mref;
};

Proc dispatcher(Pid report, std::string jobs_ep, std::string results_ep) {
  zp::Port jobs = zp::open(zp::Type::pull, {.connect = {jobs_ep}, .flow = zp::Flow::counted}).value();
  zp::Port results = zp::open(zp::Type::push, {.connect = {results_ep}, .linger_ms = 10000}).value();
  std::map<long, Pid> idle;
  std::map<long, std::pair<Pid, Busy>> busy;
  bool ending = false;
  long handled = 0, failed = 0;
  while (!(ending && busy.empty())) {
    Message m = co_await receive_any();
    if (m.is<Term>() && m.get<Term>().is_tuple(3, "ready")) {  // a worker (re)started
      const Term& t = m.get<Term>();
      idle[t[1].as_int()] = t[2].as_pid();
      zp::once(jobs);
    } else if (m.is<ZmqMessage>()) {
      const std::string text = m.get<ZmqMessage>().parts.at(0);
      if (text == "end") {
        ending = true;
        continue;
      }
      auto w = idle.begin();  // (there is one: a job was asked for per idle worker)
      const long n = std::stol(text);
      const Ref mref = monitor(w->second);
      send(w->second, tuple(atom("job"), n, self()));
      busy[w->first] = {w->second, Busy{n, mref}};
      idle.erase(w);
    } else if (m.is<Term>() && m.get<Term>().is_tuple(4, "done")) {
      const Term& t = m.get<Term>();
      auto b = busy.find(t[1].as_int());
      if (b == busy.end()) continue;
      demonitor(b->second.second.mref, true);
      co_await put(results, std::to_string(t[2].as_int()) + " ok " + std::to_string(t[3].as_int()));
      ++handled;
      idle[b->first] = b->second.first;
      busy.erase(b);
      zp::once(jobs);
    } else if (m.is<Down>()) {  // a worker crashed on its job; the supervisor restarts it
      const Down& d = m.get<Down>();
      for (auto b = busy.begin(); b != busy.end(); ++b) {
        if (b->second.second.mref != d.ref) continue;
        co_await put(results, std::to_string(b->second.second.job) + " failed " + d.reason.to_string(200));
        ++handled;
        ++failed;
        busy.erase(b);
        break;
      }
    }
  }
  co_await put(results, "end");
  send(report, tuple(atom("finished"), handled, failed));
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zmq_workers: jobs from a ZeroMQ PUSH, done by supervised workers, results to a ZeroMQ PULL"};
  std::string jobs, results;
  long workers = 4;
  app.add_option("--jobs", jobs, "the ventilator's endpoint (a PULL port connects to it)")->required();
  app.add_option("--results", results, "the sink's endpoint (a PUSH port connects to it)")->required();
  app.add_option("--workers", workers, "workers under the supervisor")->capture_default_str()->check(CLI::Range(1, 64));
  CLI11_PARSE(app, argc, argv);
  try {
    Runtime rt;
    Mailbox mb;
    const Pid d = spawn(dispatcher, mb.pid(), jobs, results);
    register_name(kDispatcher, d);
    std::vector<supervisor::ChildSpec> children;
    for (long i = 1; i <= workers; ++i) children.push_back(supervisor::worker("worker" + std::to_string(i), worker, i));
    // a poison job every seventh: restarts are expected, so the intensity is high
    auto sup = supervisor::start({.strategy = supervisor::Strategy::one_for_one, .max_restarts = 1000},
                                 std::move(children), {.name = atom("Workers")});
    if (!sup) {
      std::fprintf(stderr, "error: %s\n", sup.error().text.c_str());
      return 1;
    }
    auto done = mb.receive<Term>([](const Term& t) { return t.is_tuple(3, "finished"); }, std::chrono::hours(24));
    std::printf("%ld jobs handled, %ld failed (their workers were restarted)\n", (*done)[1].as_int(),
                (*done)[2].as_int());
    // the results port lingers (10 s) until the sink has them: the Runtime's end closes it
    (void)supervisor::stop(mb, ServerRef(*sup));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
