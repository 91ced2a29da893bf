// Runs one rank of a tensor-parallel group through every collective of the CPU communicator and checks each
// result exactly: the data are small integers, whose float sums are exact in any order. test/communicator.test.ts
// starts one process per rank.
//
//   loraserve_comm_checks --world N --rank R --master-addr A --master-port P [--timeout S] [--die-after-rendezvous]
//
// Prints one PASS or FAIL line per check and exits 0 only when all pass; 2 when a collective throws (a dead
// peer, a timeout). --die-after-rendezvous kills this rank once the group has met, so the others must report
// the failure within their timeout rather than hang.
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "../src/comm/create_communicator.h"

namespace {

using loraserve::CommConfig;
using loraserve::Communicator;

struct Options {
  CommConfig comm;
  bool dieAfterRendezvous = false;
};

Options parseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--die-after-rendezvous") {
      options.dieAfterRendezvous = true;
      continue;
    }
    if (i + 1 >= argc) throw std::runtime_error(flag + " needs a value");
    std::string value = argv[++i];
    if (flag == "--world") {
      options.comm.world = std::stoi(value);
    } else if (flag == "--rank") {
      options.comm.rank = std::stoi(value);
    } else if (flag == "--master-addr") {
      options.comm.masterAddr = value;
    } else if (flag == "--master-port") {
      options.comm.masterPort = std::stoi(value);
    } else if (flag == "--timeout") {
      options.comm.rendezvousTimeoutSeconds = std::stod(value);
      options.comm.collectiveTimeoutSeconds = std::stod(value);
    } else {
      throw std::runtime_error("unknown flag " + flag);
    }
  }
  return options;
}

class Checks {
 public:
  explicit Checks(int rank) : rank_(rank) {}

  // Compares element by element and reports the first difference, so a FAIL line says where it went wrong.
  template <typename T>
  void expectEqual(const std::string& name, const std::vector<T>& got, const std::vector<T>& want) {
    ++total_;
    for (size_t i = 0; i < want.size(); ++i) {
      if (got[i] != want[i]) {
        ++failed_;
        std::printf("rank %d FAIL %s: element %zu of %zu is %g, want %g\n", rank_, name.c_str(), i, want.size(),
                    static_cast<double>(got[i]), static_cast<double>(want[i]));
        return;
      }
    }
    std::printf("rank %d PASS %s\n", rank_, name.c_str());
  }

  void pass(const std::string& name) {
    ++total_;
    std::printf("rank %d PASS %s\n", rank_, name.c_str());
  }

  int finish() const {
    std::printf("rank %d: %d communicator checks, %d failing\n", rank_, total_, failed_);
    return failed_ == 0 ? 0 : 1;
  }

 private:
  int rank_;
  int total_ = 0;
  int failed_ = 0;
};

// Rank r's i-th float: distinct per rank and element, and every sum over ranks stays an exact float.
float contribution(int rank, size_t i) { return static_cast<float>(i % 1021) + 1024.0f * static_cast<float>(rank); }

void checkAllReduce(Communicator& comm, Checks& checks, size_t count) {
  std::vector<float> data(count);
  std::vector<float> want(count);
  for (size_t i = 0; i < count; ++i) {
    data[i] = contribution(comm.rank(), i);
    for (int rank = 0; rank < comm.world(); ++rank) want[i] += contribution(rank, i);
  }
  comm.allReduceSum(data.data(), count);
  checks.expectEqual("all-reduce sum of " + std::to_string(count) + " floats", data, want);
}

void checkBroadcast(Communicator& comm, Checks& checks, int root, size_t size) {
  auto rootByte = [root](size_t i) { return static_cast<uint8_t>((i * 7 + static_cast<size_t>(root) * 31) % 251); };
  std::vector<uint8_t> bytes(size, 0xEE);
  std::vector<uint8_t> want(size);
  for (size_t i = 0; i < size; ++i) want[i] = rootByte(i);
  if (comm.rank() == root) bytes = want;
  comm.broadcast(bytes.data(), size, root);
  checks.expectEqual("broadcast of " + std::to_string(size) + " bytes from rank " + std::to_string(root), bytes, want);
}

void checkAllGather(Communicator& comm, Checks& checks, size_t count) {
  std::vector<float> mine(count);
  for (size_t i = 0; i < count; ++i) mine[i] = contribution(comm.rank(), i);
  std::vector<float> all(count * static_cast<size_t>(comm.world()), -1.0f);
  std::vector<float> want(all.size());
  for (int rank = 0; rank < comm.world(); ++rank) {
    for (size_t i = 0; i < count; ++i) want[static_cast<size_t>(rank) * count + i] = contribution(rank, i);
  }
  comm.allGather(mine.data(), count, all.data());
  checks.expectEqual("all-gather of " + std::to_string(count) + " floats per rank", all, want);
}

}  // namespace

int main(int argc, char** argv) {
  // Unbuffered, so a rank that is killed or stuck has already shown how far it got.
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  int rank = -1;
  try {
    Options options = parseOptions(argc, argv);
    rank = options.comm.rank;
    std::unique_ptr<Communicator> comm = loraserve::createCpuCommunicator(options.comm);
    std::printf("rank %d of %d: rendezvous done\n", comm->rank(), comm->world());
    if (options.dieAfterRendezvous) ::kill(::getpid(), SIGKILL);  // as abrupt as a crash: no goodbye to peers

    Checks checks(comm->rank());
    for (size_t count : {size_t{1}, size_t{7}, size_t{4097}, size_t{1} << 20}) checkAllReduce(*comm, checks, count);
    checkBroadcast(*comm, checks, 0, 1001);
    checkBroadcast(*comm, checks, comm->world() - 1, 1001);
    checkAllGather(*comm, checks, 1);
    checkAllGather(*comm, checks, 1001);
    comm->barrier();
    checks.pass("barrier");
    return checks.finish();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "rank %d: error: %s\n", rank, error.what());
    return 2;
  }
}
