#include "rank_commands.h"

#include <cstring>
#include <stdexcept>
#include <type_traits>

namespace loraserve {

namespace {

// The blob's name in an AdapterPayload's refs: no file has it, so nothing is ever opened for it.
const char* const kBlobName = "<adapter bytes from the group's leader>";

class ByteWriter {
 public:
  template <typename T>
  void put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* raw = reinterpret_cast<const uint8_t*>(&value);
    bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
  }
  template <typename T>
  void putVector(const std::vector<T>& values) {
    put<uint64_t>(values.size());
    const auto* raw = reinterpret_cast<const uint8_t*>(values.data());
    bytes_.insert(bytes_.end(), raw, raw + values.size() * sizeof(T));
  }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(const std::vector<uint8_t>& bytes) : bytes_(bytes) {}
  template <typename T>
  T get() {
    T value;
    std::memcpy(&value, take(sizeof(T)), sizeof(T));
    return value;
  }
  template <typename T>
  std::vector<T> getVector() {
    const uint64_t count = get<uint64_t>();
    if (count > (bytes_.size() - at_) / sizeof(T)) fail();
    std::vector<T> values(count);
    std::memcpy(values.data(), take(count * sizeof(T)), count * sizeof(T));
    return values;
  }
  void expectEnd() const {
    if (at_ != bytes_.size()) fail();
  }

 private:
  const uint8_t* take(size_t size) {
    if (size > bytes_.size() - at_) fail();
    const uint8_t* data = bytes_.data() + at_;
    at_ += size;
    return data;
  }
  [[noreturn]] static void fail() {
    throw std::runtime_error("tensor parallelism: a command from the group's leader is malformed (another build?)");
  }

  const std::vector<uint8_t>& bytes_;
  size_t at_ = 0;
};

void putTensor(ByteWriter& out, const TensorRef& ref, uint64_t blobOffset) {
  out.put<uint8_t>(static_cast<uint8_t>(ref.dtype));
  out.putVector(ref.shape);
  out.put<uint64_t>(blobOffset);
  out.put<uint64_t>(ref.nbytes);
}

TensorRef getTensor(ByteReader& in, size_t blobSize) {
  TensorRef ref;
  ref.file = kBlobName;
  const uint8_t dtype = in.get<uint8_t>();
  if (dtype >= kNumDTypes) throw std::runtime_error("tensor parallelism: unknown dtype code in an adapter command");
  ref.dtype = static_cast<DType>(dtype);
  ref.shape = in.getVector<int64_t>();
  ref.offset = in.get<uint64_t>();
  ref.nbytes = in.get<uint64_t>();
  if (ref.offset > blobSize || ref.nbytes > blobSize - ref.offset) {
    throw std::runtime_error("tensor parallelism: an adapter command's tensor lies outside its bytes");
  }
  return ref;
}

}  // namespace

AdapterRefs AdapterPayload::refs() const {
  AdapterRefs refs;
  refs.rank = rank;
  refs.scaling = scaling;
  refs.pairs = pairs;
  refs.fileBytes[kBlobName] = BorrowedBytes{blob.data(), blob.size()};
  return refs;
}

std::vector<uint8_t> encodeStep(const std::vector<SeqStep>& seqs) {
  ByteWriter out;
  out.put(RankCommandKind::Step);
  out.put<uint64_t>(seqs.size());
  for (const SeqStep& seq : seqs) {
    out.putVector(seq.tokens);
    out.put<int64_t>(seq.startPos);
    out.putVector(seq.blockTable);
    out.put<int32_t>(seq.adapterSlot);
    out.put<uint8_t>(seq.sample);
    out.put<int32_t>(seq.topN);
    out.putVector(seq.logprobTargets);
    out.put<uint8_t>(seq.returnLogits);
  }
  return out.take();
}

std::vector<uint8_t> encodeLoadAdapter(int slot, const CheckedAdapter& adapter) {
  // Whole tensors: each follower cuts its own slice, as the leader did from the same bytes.
  std::vector<uint8_t> blob;
  ByteWriter pairs;
  uint64_t count = 0;
  auto append = [&](const MappedFile& file, const TensorRef& ref) {
    const uint64_t offset = blob.size();
    blob.insert(blob.end(), file.data() + ref.offset, file.data() + ref.offset + ref.nbytes);
    return offset;
  };
  for (size_t layer = 0; layer < adapter.layers.size(); ++layer) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const std::optional<LoraPairSource>& pair = adapter.layers[layer][static_cast<size_t>(t)];
      if (!pair) continue;
      ++count;
      pairs.put<int32_t>(static_cast<int32_t>(layer));
      pairs.put<int32_t>(t);
      putTensor(pairs, pair->a, append(*pair->aFile, pair->a));
      putTensor(pairs, pair->b, append(*pair->bFile, pair->b));
    }
  }
  ByteWriter out;
  out.put(RankCommandKind::LoadAdapter);
  out.put<int32_t>(slot);
  out.put<int32_t>(adapter.rank);
  out.put<double>(adapter.scaling);
  out.putVector(blob);
  out.put<uint64_t>(count);
  std::vector<uint8_t> bytes = out.take();
  const std::vector<uint8_t> pairBytes = pairs.take();
  bytes.insert(bytes.end(), pairBytes.begin(), pairBytes.end());
  return bytes;
}

std::vector<uint8_t> encodeUnloadAdapter(int slot) {
  ByteWriter out;
  out.put(RankCommandKind::UnloadAdapter);
  out.put<int32_t>(slot);
  return out.take();
}

std::vector<uint8_t> encodeStop() {
  ByteWriter out;
  out.put(RankCommandKind::Stop);
  return out.take();
}

std::vector<uint8_t> encodeHeartbeat() {
  ByteWriter out;
  out.put(RankCommandKind::Heartbeat);
  return out.take();
}

std::vector<uint8_t> encodeResumeFromIdle() {
  ByteWriter out;
  out.put(RankCommandKind::ResumeFromIdle);
  return out.take();
}

void sendRankCommand(Communicator& communicator, std::vector<uint8_t> command) {
  uint64_t size = command.size();
  communicator.broadcast(&size, sizeof(size), 0);
  communicator.broadcast(command.data(), command.size(), 0);
}

std::vector<uint8_t> receiveRankCommand(Communicator& communicator) {
  uint64_t size = 0;
  communicator.broadcast(&size, sizeof(size), 0);
  std::vector<uint8_t> command(size);
  communicator.broadcast(command.data(), command.size(), 0);
  return command;
}

RankCommand decodeRankCommand(const std::vector<uint8_t>& bytes) {
  ByteReader in(bytes);
  RankCommand command;
  command.kind = in.get<RankCommandKind>();
  switch (command.kind) {
    case RankCommandKind::Step: {
      const uint64_t count = in.get<uint64_t>();
      if (count > bytes.size()) throw std::runtime_error("tensor parallelism: a step command is malformed");
      command.seqs.resize(count);
      for (SeqStep& seq : command.seqs) {
        seq.tokens = in.getVector<int32_t>();
        seq.startPos = in.get<int64_t>();
        seq.blockTable = in.getVector<int32_t>();
        seq.adapterSlot = in.get<int32_t>();
        seq.sample = in.get<uint8_t>() != 0;
        seq.topN = in.get<int32_t>();
        seq.logprobTargets = in.getVector<int32_t>();
        seq.returnLogits = in.get<uint8_t>() != 0;
      }
      break;
    }
    case RankCommandKind::LoadAdapter: {
      command.slot = in.get<int32_t>();
      command.adapter.rank = in.get<int32_t>();
      command.adapter.scaling = in.get<double>();
      command.adapter.blob = in.getVector<uint8_t>();
      const uint64_t count = in.get<uint64_t>();
      if (count > bytes.size()) throw std::runtime_error("tensor parallelism: an adapter command is malformed");
      command.adapter.pairs.resize(count);
      for (LoraPairRef& pair : command.adapter.pairs) {
        pair.layer = in.get<int32_t>();
        const int32_t target = in.get<int32_t>();
        if (target < 0 || target >= kNumLoraTargets) {
          throw std::runtime_error("tensor parallelism: unknown LoRA target in an adapter command");
        }
        pair.target = static_cast<LoraTarget>(target);
        pair.a = getTensor(in, command.adapter.blob.size());
        pair.b = getTensor(in, command.adapter.blob.size());
      }
      break;
    }
    case RankCommandKind::UnloadAdapter:
      command.slot = in.get<int32_t>();
      break;
    case RankCommandKind::Stop:
    case RankCommandKind::Heartbeat:
    case RankCommandKind::ResumeFromIdle:
      break;
    default:
      throw std::runtime_error("tensor parallelism: unknown command from the group's leader");
  }
  in.expectEnd();
  return command;
}

}  // namespace loraserve
